"""Numbers equal their references, tried as a user would, end to end: a served model's POPE metrics against the
POPE authors' evaluate.py, MME through an offline mirror, joint conditions kept apart everywhere, and the
paper's suite on tasks it was not written for."""

from __future__ import annotations

import hashlib
import io
import json

import pandas as pd
import pytest
import yaml

from vittle_bench.cli import main
from vittle_bench.config import PACKAGE_CONFIGS, load_suites, resolve_shifts
from vittle_bench.shifts import parse_condition

from fake_openai_server import FakeServer, ok
from fixtures_hub import build_hub_fixtures
from test_metrics_and_parsers import official_pope_metrics

CHAT_ANSWERS = ["Yes, there is one in the image.", "No, there is not.", "No\nthe image has other shapes.",
                "There is no such object.", "Yes.", "I see it on the left.", "No.", "not\nreally", "Yes\n\nNo",
                "Not that I can see.", " No, none.", "There is a ring, but no disc."]


def _chat(payload: dict) -> tuple:
    """A served model answering in chat sentences, the same answer for the same question and image."""
    key = int(hashlib.sha256(json.dumps(payload["messages"], sort_keys=True).encode()).hexdigest(), 16)
    return ok(CHAT_ANSWERS[key % len(CHAT_ANSWERS)])


def test_served_model_pope_equals_evaluate_py(world_cache, tmp_path):
    with FakeServer(default=_chat) as server:
        out = tmp_path / "run"
        assert main(["run", "--model", "openai:chat-vlm", "--model-args", f"base_url={server.url}",
                     "--tasks", "shapes_pope_adversarial", "--shifts", "clean", "--limit", "120",
                     "--output", str(out), "--cache-dir", str(world_cache), "--no-cache"]) == 0
    records = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
    official = official_pope_metrics([r["raw_output"] for r in records], [r["answer"] for r in records])
    results = pd.read_csv(out / "results.csv").set_index("metric")["value"]
    assert len(records) == 120 and len({r["raw_output"] for r in records}) > 6
    for metric, value in official.items():
        assert results[metric] == pytest.approx(100 * value, abs=1e-6), metric


def test_mme_leaderboard_prints_what_results_csv_holds(tiny_random_checkpoint, tmp_path, capsys):
    hub = build_hub_fixtures(tmp_path / "hub")
    out = tmp_path / "run"
    assert main(["run", "--model", f"hf:{tiny_random_checkpoint}", "--tasks", "mme", "--shifts", "clean",
                 "--data-dir", str(hub), "--output", str(out), "--cache-dir", str(tmp_path / "cache")]) == 0
    capsys.readouterr()
    results = pd.read_csv(out / "results.csv")
    mme = results[results.metric != "n_errors"].set_index("metric")
    assert {"accuracy", "accuracy_plus", "score/existence", "mme_perception"} <= set(mme.index)
    for metric, row in mme.iterrows():
        assert main(["leaderboard", str(out), "--metric", metric, "--format", "csv", "--layout", "long"]) == 0
        shown = pd.read_csv(io.StringIO(capsys.readouterr().out)).iloc[0]
        assert shown["value"] == pytest.approx(row["value"]) and shown["unit"] == row["unit"], metric
        if row["unit"] == "%":
            assert 0 <= shown["value"] <= 100, metric
    assert mme.loc["accuracy", "unit"] == "%" and mme.loc["mme_perception", "unit"] == "points"


JOINTS = "gaussian_noise@3+keyboard@1,gaussian_noise@1+keyboard@3,gaussian_noise@3+keyboard@3"


def test_joint_conditions_differing_only_in_part_severities_stay_apart(tiny_random_checkpoint, world_cache, tmp_path,
                                                                      capsys):
    out = tmp_path / "run"
    assert main(["run", "--model", f"hf:{tiny_random_checkpoint}", "--tasks", "shapes_mc", "--shifts", JOINTS,
                 "--limit", "12", "--output", str(out), "--cache-dir", str(world_cache)]) == 0
    capsys.readouterr()
    expected = {"clean", *JOINTS.split(",")}
    results = pd.read_csv(out / "results.csv")
    accuracy = results[results.metric == "accuracy"]
    assert set(accuracy.condition) == expected and len(accuracy) == 4
    assert set(accuracy[accuracy.condition != "clean"].severity) == {3}  # the old key collapsed these three
    assert main(["leaderboard", str(out), "--group-by", "condition", "--format", "csv", "--layout", "long"]) == 0
    board = pd.read_csv(io.StringIO(capsys.readouterr().out))
    assert set(board.group) == expected and (board.n_conditions == 1).all()
    assert main(["compare", str(out), str(out), "--format", "csv"]) == 0
    compare = pd.read_csv(io.StringIO(capsys.readouterr().out))
    assert set(compare[compare.scope == "cell"].condition) == expected


@pytest.mark.parametrize("suite", sorted(load_suites()))
def test_every_condition_of_every_shipped_suite_is_its_own_key(suite):
    declared = yaml.safe_load((PACKAGE_CONFIGS / "shifts" / f"{suite}.yaml").read_text())["conditions"]
    labels = [parse_condition(str(c)).label for c in declared]
    assert len(set(labels)) == len(labels), f"{suite} repeats a condition"
    resolved = [c.label for c in resolve_shifts(suite)]
    assert resolved == ["clean", *[label for label in labels if label != "clean"]]


def test_paper30_runs_on_any_task_and_names_what_it_skips(world_cache, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["run", "--model", "builtin:tiny-llava", "--shifts", "paper30", "--limit", "2", "--output", str(out),
                 "--cache-dir", str(world_cache)]) == 0
    skipped = [line for line in capsys.readouterr().err.splitlines() if "skipping" in line]
    assert len(skipped) == 1 and "skipping 6 condition(s)" in skipped[0]
    named = {"domain:coco_de", "domain:coco_zh", "domain:coco_ko", "domain:wild", "domain:wilder", "domain:wildvision"}
    assert all(label in skipped[0] for label in named)
    results = pd.read_csv(out / "results.csv")
    conditions = set(results.condition) - {"clean"}
    kinds = results.drop_duplicates("condition").set_index("condition").shift_kind
    assert len(conditions) == 24 and {kinds[c] for c in conditions} == {"image", "text", "joint"}
    manifest = json.loads((out / "manifest.json").read_text())
    assert {s["label"] for s in manifest["skipped_conditions"]} == named


def test_a_domain_named_on_its_own_must_apply(world_cache, tmp_path, capsys):
    assert main(["run", "--model", "builtin:tiny-llava", "--shifts", "domain:coco_de", "--output", str(tmp_path),
                 "--cache-dir", str(world_cache)]) == 2
    err = capsys.readouterr().err
    assert "no selected task declares domain 'coco_de'" in err and len(err.strip().splitlines()) == 1


