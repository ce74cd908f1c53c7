"""`vittle-bench run` end to end on the built-in world with a tiny random checkpoint: the run-directory
contract, caching, and one-line errors for bad names."""

from __future__ import annotations

import json
import subprocess
import sys
import threading

import pandas as pd
import pytest

from vittle_bench.cli import main
from vittle_bench.schema import RESULT_COLUMNS

SHIFTS = "gaussian_noise@5,keyboard@3,defocus_blur@2+keyboard@1"


@pytest.fixture(scope="module")
def finished_run(tiny_random_checkpoint, world_cache, tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    code = main(["run", "--model", f"hf:{tiny_random_checkpoint}", "--tasks", "builtin", "--shifts", SHIFTS,
                 "--limit", "6", "--batch-size", "4", "--output", str(out), "--cache-dir", str(world_cache)])
    assert code == 0
    return out


def test_run_directory_contract(finished_run):
    manifest = json.loads((finished_run / "manifest.json").read_text())
    assert {"command_line", "versions", "seed", "models", "tasks", "shifts"} <= set(manifest)
    assert manifest["models"][0]["fingerprint"]
    assert [s["label"] for s in manifest["shifts"]] == ["clean", "gaussian_noise@5", "keyboard@3",
                                                        "defocus_blur@2+keyboard@1"]
    records = [json.loads(line) for line in (finished_run / "samples.jsonl").read_text().splitlines()]
    assert len(records) == 5 * 4 * 6  # tasks x conditions x samples
    assert {"model", "task", "shift", "shift_kind", "severity", "sample_id", "prompt", "raw_output", "parsed",
            "parse_ok", "score", "input_hash", "cache_key"} <= set(records[0])
    assert not (finished_run / "samples.jsonl.partial").exists()
    results = pd.read_csv(finished_run / "results.csv")
    assert list(results.columns) == RESULT_COLUMNS
    assert set(results["shift_kind"]) == {"clean", "image", "text", "joint"}
    assert set(results["task"]) == {"shapes_pope_random", "shapes_pope_popular", "shapes_pope_adversarial",
                                    "shapes_mc", "shapes_open"}
    pope = results[(results.task == "shapes_pope_random") & (results["shift"] == "clean")].set_index("metric")
    assert {"accuracy", "precision", "recall", "f1", "yes_ratio", "unparseable_rate", "n_errors"} <= set(pope.index)
    assert set(results[results.task == "shapes_open"]["metric"]) >= {"relative_score_overlap", "judge_failed"}
    with_ci = results.dropna(subset=["ci_low"])
    assert (with_ci.ci_low <= with_ci.value + 1e-9).all() and (with_ci.value <= with_ci.ci_high + 1e-9).all()


def test_shifted_inputs_differ_from_clean_and_joint_applies_both(finished_run):
    records = [json.loads(line) for line in (finished_run / "samples.jsonl").read_text().splitlines()]
    by = {(r["task"], r["shift"], r["severity"], r["sample_id"]): r for r in records}
    clean = by[("shapes_mc", "clean", 0, "mc-0")]
    noisy = by[("shapes_mc", "gaussian_noise", 5, "mc-0")]
    typo = by[("shapes_mc", "keyboard", 3, "mc-0")]
    joint = by[("shapes_mc", "defocus_blur+keyboard", 2, "mc-0")]
    assert noisy["prompt"] == clean["prompt"] and noisy["input_hash"] != clean["input_hash"]
    assert typo["prompt"] != clean["prompt"]
    assert joint["prompt"] != clean["prompt"] and joint["shift_kind"] == "joint"
    assert typo["prompt"].endswith("Answer with the option's letter from the given choices directly.")  # options intact


def test_second_run_is_served_from_cache(finished_run, tiny_random_checkpoint, world_cache, tmp_path, capsys):
    capsys.readouterr()
    main(["run", "--model", f"hf:{tiny_random_checkpoint}", "--tasks", "builtin", "--shifts", SHIFTS,
          "--limit", "6", "--batch-size", "4", "--output", str(tmp_path), "--cache-dir", str(world_cache)])
    assert "(0 generated, 120 cached)" in capsys.readouterr().out
    first = pd.read_csv(finished_run / "results.csv")
    second = pd.read_csv(tmp_path / "results.csv")
    pd.testing.assert_frame_equal(first, second)
    # the cache is keyed before shifting: the rerun computes no shifted image, yet records what the model saw as
    # the first run did; only the judged task (shapes_open, whose judge reads the shifted sample) reads the
    # shifted-image cache: 6 samples under each image condition
    assert (tmp_path / "samples.jsonl").read_text() == (finished_run / "samples.jsonl").read_text()
    counts = json.loads((tmp_path / "manifest.json").read_text())["summary"]["shifted_images"]
    assert counts == {label: {"computed": 0, "served_from_cache": 6}
                      for label in ("gaussian_noise@5", "defocus_blur@2+keyboard@1")}


def test_records_are_identical_with_and_without_prefetch(finished_run, tiny_random_checkpoint, world_cache,
                                                         tmp_path):
    """Shifting ahead of the model (the default, here with two shift worker processes) changes the timing only:
    the same records as shifting each batch just before generating it, nothing read from a cache."""
    args = ["run", "--model", f"hf:{tiny_random_checkpoint}", "--tasks", "builtin", "--shifts", SHIFTS, "--limit", "6",
            "--batch-size", "4", "--cache-dir", str(world_cache), "--no-cache"]
    assert main([*args, "--prefetch", "0", "--output", str(tmp_path / "inline")]) == 0
    assert main([*args, "--prefetch", "3", "--shift-workers", "2", "--output", str(tmp_path / "ahead")]) == 0
    inline, ahead = ((tmp_path / name / "samples.jsonl").read_text() for name in ("inline", "ahead"))
    assert inline == ahead == (finished_run / "samples.jsonl").read_text()
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "inline" / "results.csv"),
                                  pd.read_csv(tmp_path / "ahead" / "results.csv"))


def test_batches_are_prepared_in_line_until_the_first_that_needs_shifting():
    """A cached batch has nothing to overlap: no thread until the first costly item, then every later item is
    drawn and prepared ahead in the background, in order; errors reach the consumer at their item."""
    from vittle_bench.prefetch import prefetched

    drawn: list[tuple[int, str]] = []

    def items():
        for i in range(6):
            drawn.append((i, threading.current_thread().name))
            yield i

    out = list(prefetched(items(), lambda i: (i, threading.current_thread().name), 2, costly=lambda i: i == 2))
    assert [i for i, _ in out] == list(range(6))
    assert {name for i, name in out if i < 2} == {threading.current_thread().name}
    assert all(name.startswith("vittle-prefetch") for i, name in out if i >= 2)
    assert all(name.startswith("vittle-prefetch") for i, name in drawn if i > 2)
    assert [name for _, name in list(prefetched(range(3), lambda i: (i, threading.current_thread().name), 0))] == \
        [threading.current_thread().name] * 3
    with pytest.raises(ZeroDivisionError):
        list(prefetched(range(4), lambda i: 1 / (i - 3), 2, costly=lambda i: i > 0))


def test_pope_splits_under_one_image_condition_shift_each_distinct_image_once(tmp_path):
    """POPE's three splits ask several questions about each image: under an image condition every image is
    shifted once (the offline fixtures: 12 questions, 2 distinct images), and the manifest counts it."""
    from fixtures_hub import build_hub_fixtures

    hub = build_hub_fixtures(tmp_path / "hub")
    out = tmp_path / "run"
    assert main(["run", "--model", "builtin:tiny-llava", "--tasks", "pope_random,pope_popular,pope_adversarial",
                 "--shifts", "gaussian_noise@3,frost@2+keyboard@1", "--data-dir", str(hub), "--batch-size", "3",
                 "--output", str(out), "--cache-dir", str(tmp_path / "cache")]) == 0
    manifest = json.loads((out / "manifest.json").read_text())["summary"]
    # two of each split's questions are the same question about the same image (same id) in all three splits:
    # 2 x 2 of them are answered from the answer cache before anything is shifted, the other 8 show a shifted image
    assert manifest["shifted_images"] == {label: {"computed": 2, "served_from_cache": 6}
                                          for label in ("gaussian_noise@3", "frost@2+keyboard@1")}
    assert manifest["n_cached"] == 3 * 4
    records = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
    assert len(records) == 3 * 3 * 4 and not [r for r in records if r["error"]]


def test_another_seed_changes_shifted_inputs_not_clean_ones(finished_run, tiny_random_checkpoint, world_cache,
                                                            tmp_path):
    main(["run", "--model", f"hf:{tiny_random_checkpoint}", "--tasks", "shapes_mc", "--shifts", "gaussian_noise@5",
          "--limit", "6", "--seed", "1", "--output", str(tmp_path), "--cache-dir", str(world_cache)])
    old = {(r["shift"], r["sample_id"]): r["input_hash"]
           for r in map(json.loads, (finished_run / "samples.jsonl").open()) if r["task"] == "shapes_mc"}
    new = {(r["shift"], r["sample_id"]): r["input_hash"] for r in map(json.loads, (tmp_path / "samples.jsonl").open())}
    assert all(new[("clean", s)] == old[("clean", s)] for s in ("mc-0", "mc-1"))
    assert all(new[("gaussian_noise", s)] != old[("gaussian_noise", s)] for s in ("mc-0", "mc-1"))


@pytest.mark.parametrize("args,expected", [
    (["run", "--model", "builtin:tiny-lava"], "did you mean builtin:tiny-llava"),
    (["run", "--model", "builtin:tiny-llava", "--tasks", "shapes_pop"], "unknown task 'shapes_pop'"),
    (["run", "--model", "builtin:tiny-llava", "--shifts", "frots@3"], "did you mean frost"),
    (["run", "--model", "builtin:tiny-llava", "--shifts", "frost@9"], "severity must be one of 1-5 for frost"),
    (["run", "--model", "nomodel"], "needs a scheme"),
])
def test_bad_names_exit_2_with_one_line(args, expected, tmp_path):
    proc = subprocess.run([sys.executable, "-m", "vittle_bench", *args, "--output", str(tmp_path / "o")],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 2
    assert expected in proc.stderr
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


def test_leaderboard_formats(finished_run, tmp_path):
    for fmt in ("csv", "markdown", "latex", "html"):
        out = tmp_path / f"board.{fmt}"
        assert main(["leaderboard", str(finished_run), "--format", fmt, "--output", str(out)]) == 0
    table = pd.read_csv(tmp_path / "board.csv")
    assert list(table.columns[:3]) == ["task", "model", "metric"]
    values = [c for c in table.columns if f"{c} ci_low" in table.columns]
    assert {"clean", "image", "text", "joint"} <= set(values) and len(table) == 5
    assert table[[f"{c} ci_low" for c in values]].notna().all().all()  # every column has its interval
    latex = (tmp_path / "board.latex").read_text()
    assert "\\begin{tabular}" in latex and "\\toprule" in latex and "\\midrule" in latex and "\\bottomrule" in latex
    header = latex.split("\\toprule")[1].split("\\\\")[0]
    assert header.count("&") == 2 + len(values) + ("n_errors" in table.columns) - 1  # task, model, values, errors
    markdown = [line for line in (tmp_path / "board.markdown").read_text().splitlines() if line.startswith("|")]
    assert markdown[0].startswith("| task") and set(markdown[1]) <= set("|-: ") and len(markdown) == 2 + 5
    assert "<table" in (tmp_path / "board.html").read_text()


def test_list_commands(capsys):
    assert main(["list", "tasks"]) == 0
    assert "shapes_pope_adversarial" in capsys.readouterr().out
    assert main(["list", "shifts"]) == 0
    out = capsys.readouterr().out
    assert "suite quick" in out and "gaussian_noise" in out and "keyboard" in out
    assert main(["list", "models"]) == 0
    assert "builtin:tiny-llava-vittle-f" in capsys.readouterr().out
    assert main(["list", "adapters"]) == 0
    rows = {line.split()[0]: line.split(maxsplit=3)[1:] for line in capsys.readouterr().out.splitlines()[1:]}
    assert rows["pope"] == ["accuracy", "no", "accuracy, precision, recall, f1, yes_ratio, unparseable_rate"]
    assert rows["open_ended"][:2] == ["relative_score", "yes"] and rows["pairwise"][:2] == ["win_rate", "yes"]


def test_metrics_emi_adds_emi_and_emid_rows_and_saves_the_estimator(tiny_random_checkpoint, world_cache, tmp_path):
    """EMI per cell and EMID per shift, domain conditions included; every EMI key names encoders and estimator."""
    from vittle_bench.metrics.emi_cells import parse_metric

    files = ", ".join(f"shapes_{i:05d}.png" for i in range(0, 24, 2))
    (tmp_path / "open_dom.yaml").write_text(
        "task: open_dom\nsource: builtin:shapes\nsubset: open\nadapter: open_ended\nadapter_args: {judge: overlap}\n"
        f"domains:\n  even:\n    where: {{file_name: [{files}]}}\n")
    out = tmp_path / "run"
    assert main(["run", "--model", f"hf:{tiny_random_checkpoint}", "--tasks", "open_dom", "--shifts",
                 "gaussian_noise@3,domain:even", "--limit", "24", "--metrics", "emi", "--emi-encoders",
                 "effnet-lite0,minilm-l6", "--emi-estimator", "club-standardised",  # fits in seconds
                 "--include-path", str(tmp_path), "--output", str(out),
                 "--cache-dir", str(world_cache)]) == 0
    results = pd.read_csv(out / "results.csv")
    keys = {m: parse_metric(m) for m in results.metric if parse_metric(m) is not None}
    assert {k.base for k in keys.values()} == {"emi", "mi_model", "mi_ref", "emid", "emid_bound"}
    assert {k.encoders for k in keys.values()} == {"effnet-lite0+minilm-l6"}
    estimators = {k.estimator for k in keys.values() if k.base != "emid_bound"}  # the bound needs no estimator
    assert len(estimators) == 1 and estimators.pop().startswith("club-standardised@")
    emi = results[results.metric.map(lambda m: m in keys and keys[m].base == "emi")]
    assert set(emi.condition) == {"clean", "gaussian_noise@3", "domain:even"} and (emi.ci_low <= emi.value).all()
    emid = results[results.metric.map(lambda m: m in keys and keys[m].base == "emid")]
    assert set(emid.condition) == {"gaussian_noise@3", "domain:even"} and set(emid.unit) == {"nats"}
    assert (out / "emi_estimator.pt").is_file()
    manifest = json.loads((out / "manifest.json").read_text())["emi"]
    assert manifest["encoders"] == {"image": "effnet-lite0", "text": "minilm-l6"}


def test_unknown_run_metric_is_a_usage_error(tmp_path, capsys):
    assert main(["run", "--model", "builtin:tiny-llava", "--metrics", "emj", "--output", str(tmp_path)]) == 2
    assert "unknown --metrics" in capsys.readouterr().err


def test_a_registered_run_metric_reads_the_cells_it_declares(tiny_random_checkpoint, world_cache, tmp_path,
                                                            monkeypatch):
    """A run-level metric is a registry entry, not a name the runner knows: it sees the cells it reads, once each,
    after the grid, and its manifest entry lands under its name."""
    from vittle_bench.run_metrics import RUN_METRICS, RunMetric

    class CellCount(RunMetric):
        def reads(self, adapter):
            return adapter.name == "pope"

        def collect(self, model, task, condition, records, rows):
            self.seen = [*getattr(self, "seen", []), (task, condition.label, len(records), len(rows))]

        def finish(self, conditions):
            return [], {"cells": sorted(self.seen), "conditions": [c.label for c in conditions]}

    monkeypatch.setitem(RUN_METRICS._registered, "cell_count", CellCount)
    out = tmp_path / "run"
    assert main(["run", "--model", f"hf:{tiny_random_checkpoint}", "--tasks", "shapes_pope_random,shapes_mc",
                 "--shifts", "clean,defocus_blur@1", "--limit", "4", "--metrics", "cell_count",
                 "--output", str(out), "--cache-dir", str(world_cache)]) == 0
    entry = json.loads((out / "manifest.json").read_text())["cell_count"]
    assert entry == {"cells": [["shapes_pope_random", "clean", 4, 4], ["shapes_pope_random", "defocus_blur@1", 4, 4]],
                     "conditions": ["clean", "defocus_blur@1"]}


def test_domain_shift_swaps_rows_and_undeclared_domain_is_a_usage_error(tiny_random_checkpoint, world_cache, tmp_path):
    (tmp_path / "mc_domains.yaml").write_text(
        "task: mc_dom\nsource: builtin:shapes\nsubset: mc\nadapter: closed_form\n"
        "domains:\n  counting:\n    where: {category: count}\n")
    args = ["run", "--model", f"hf:{tiny_random_checkpoint}", "--tasks", "mc_dom", "--include-path", str(tmp_path),
            "--cache-dir", str(world_cache)]
    assert main([*args, "--shifts", "domain:counting", "--output", str(tmp_path / "run")]) == 0
    records = [json.loads(line) for line in (tmp_path / "run" / "samples.jsonl").read_text().splitlines()]
    domain = [r for r in records if r["shift_kind"] == "domain"]
    clean = [r for r in records if r["shift"] == "clean"]
    assert len(clean) == 200 and 0 < len(domain) < 200 and {r["category"] for r in domain} == {"count"}
    assert main([*args, "--shifts", "domain:nosuch", "--output", str(tmp_path / "bad")]) == 2
