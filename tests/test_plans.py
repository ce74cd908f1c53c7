"""Evaluation plans: only the cells a plan lists are evaluated, the shipped plans hold what they say, and a
plan's mistakes are one line and exit 2."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from vittle_bench.cli import main
from vittle_bench.plans import expand_plan, load_plans

PLAN = """plan: small
description: two blocks of the built-in tasks
cells:
  - tasks: [shapes_mc]
    shifts: [clean, gaussian_noise@1]
  - tasks: [shapes_pope_random, shapes_pope_popular]
    dataset: POPE
    shifts: [defocus_blur@1, keyboard@1]
"""
COLUMNS = """columns:
  - tasks: [shapes_pope_random, shapes_pope_popular]
    visual: ["kind:image"]
"""


def test_paper45_holds_the_45_datasets_of_docs_datasets_md():
    cells = expand_plan(load_plans()["paper45"])
    datasets = {c.dataset for c in cells}
    assert len(datasets) == 45 and len(cells) == 31 + 4 + 3 * 10
    coco = [c.condition.label for c in cells if c.task.task == "llava_bench_coco"]
    assert len(coco) == 31 and coco[0] == "clean" and "domain:wildvision" in coco
    pope = {c.condition.label for c in cells if c.task.task.startswith("pope_")}
    assert pope == {"clean", "gaussian_noise@3", "impulse_noise@3", "defocus_blur@3", "glass_blur@3", "zoom_blur@3",
                    "snow@3", "frost@3", "fog@3", "jpeg_compression@3"}
    closed = {c.task.task for c in cells if c.condition.label == "clean"} - {"llava_bench_coco"}
    assert closed == {"scienceqa_img", "mmmu_val", "mme", "mmstar", "pope_random", "pope_popular",
                      "pope_adversarial"}
    assert {len(expand_plan(load_plans()[n])) for n in ("emi_synthetic", "emi_natural")} == {35, 28}


def test_a_plan_run_evaluates_exactly_its_cells(tiny_random_checkpoint, world_cache, tmp_path):
    (tmp_path / "small.yaml").write_text(PLAN)
    out = tmp_path / "run"
    assert main(["run", "--model", f"hf:{tiny_random_checkpoint}", "--plan", "small", "--include-path",
                 str(tmp_path), "--limit", "3", "--output", str(out), "--cache-dir", str(world_cache)]) == 0
    results = pd.read_csv(out / "results.csv")
    cells = set(zip(results.task, results.condition))
    assert cells == {("shapes_mc", "clean"), ("shapes_mc", "gaussian_noise@1"),
                     ("shapes_pope_random", "defocus_blur@1"), ("shapes_pope_random", "keyboard@1"),
                     ("shapes_pope_popular", "defocus_blur@1"), ("shapes_pope_popular", "keyboard@1")}
    records = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
    assert len(records) == 6 * 3 and {(r["task"], r["condition"]) for r in records} == cells
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["plan"]["plan"] == "small" and len(manifest["cells"]) == 6
    assert [s["label"] for s in manifest["shifts"]] == ["clean", "gaussian_noise@1", "defocus_blur@1", "keyboard@1"]
    # the plan's columns: POPE's image condition under `visual`, its text condition in no column; shapes_mc by kind
    (tmp_path / "small.yaml").write_text(PLAN + COLUMNS)
    board = tmp_path / "board.csv"
    assert main(["leaderboard", str(out), "--plan", "small", "--include-path", str(tmp_path), "--format", "csv",
                 "--output", str(board)]) == 0
    table = pd.read_csv(board).set_index("task")
    assert [c for c in table.columns if " ci_" not in c][2:5] == ["visual", "clean", "image"]
    pope = results[(results.task == "shapes_pope_random") & (results.metric == "accuracy")].set_index("condition")
    assert table.loc["shapes_pope_random", "visual"] == pytest.approx(pope.loc["defocus_blur@1", "value"])
    assert pd.isna(table.loc["shapes_mc", "visual"]) and pd.isna(table.loc["shapes_pope_random", "clean"])
    assert "text" not in table.columns


@pytest.mark.parametrize("text, message", [
    (PLAN.replace("shapes_mc]", "shapes_mcq]"), "cells[1]: unknown task 'shapes_mcq'; did you mean shapes_mc,"),
    (PLAN.replace("gaussian_noise@1", "gausian_noise@1"), "cells[1]: unknown shift 'gausian_noise'"),
    (PLAN.replace("keyboard@1]", "keyboard@1]\n  - tasks: [shapes_mc]\n    shifts: [gaussian_noise@1]"),
     "cells[3]: cell shapes_mc × gaussian_noise@1 is already in cells[1]; each cell is listed once"),
    (PLAN.replace("    dataset: POPE\n", "    datasets: POPE\n"), "cells[2]: unknown keys ['datasets']"),
    (PLAN.replace("  - tasks: [shapes_mc]\n", "  - tasks: [shapes_mc]\n    shifts: [domain:nowhere]\n"
                                           "  - tasks: [shapes_mc]\n"),
     "bad.yaml: cells[1]: task shapes_mc does not declare domain:nowhere"),
    ("plan: empty\ncells: []\n", "`cells` must be a non-empty list"),
])
def test_a_plan_mistake_is_one_line_and_exit_2(text, message, tmp_path, capsys):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    assert main(["run", "--model", "builtin:tiny-llava", "--plan", str(path), "--output", str(tmp_path / "run"),
                 "--cache-dir", str(tmp_path / "cache")]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and err.startswith("vittle-bench: error: ") and message in err, err


def test_plan_and_tasks_together_and_an_unknown_plan_are_usage_errors(tmp_path, capsys):
    assert main(["run", "--model", "builtin:tiny-llava", "--plan", "paper45", "--tasks", "shapes_mc",
                 "--output", str(tmp_path)]) == 2
    assert "leave out --tasks and --shifts" in capsys.readouterr().err
    assert main(["run", "--model", "builtin:tiny-llava", "--plan", "paper46", "--output", str(tmp_path)]) == 2
    assert "unknown plan 'paper46'; did you mean paper45? (see `vittle-bench list plans`)" in capsys.readouterr().err


def _table_rows(out: str) -> list[list[str]]:
    lines = [line for line in out.splitlines() if line.startswith("| ") and not line.startswith("| dataset")]
    return [[cell.strip() for cell in line.strip("|").split("|")] for line in lines]


def test_dry_run_of_paper45_counts_45_datasets_and_writes_nothing(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["run", "--model", "builtin:tiny-llava", "--plan", "paper45", "--dry-run", "--throughput", "50",
                 "--judge", "openai:gpt-4o-2024-08-06", "--output", str(out),
                 "--cache-dir", str(tmp_path / "cache")]) == 0
    printed = capsys.readouterr().out
    rows = {row[0]: row for row in _table_rows(printed)}
    assert len(rows) == 45 and not out.exists() and not (tmp_path / "cache").exists()
    # POPE: three splits of 3,000 under one condition are one dataset; an image condition shifts every image
    assert rows["POPE × frost@3"][1:4] == ["3", "9,000", "9,000"] and rows["POPE × frost@3"][7] == "9,000"
    assert rows["POPE × clean"][7] == "0" and rows["POPE × clean"][5] == "0"
    # LLaVA-Bench-COCO is judged: 90 answers x 3 reviews (the task's protocol), with the judge context
    coco = rows["llava_bench_coco × keyboard@3"]
    assert coco[2] == "90" and coco[5] == "270" and int(coco[6].replace(",", "")) > 270 * 300
    assert "45 datasets, 65 cells" in printed and "at 50.00 samples/s (given" in printed


def test_dry_run_counts_what_the_run_directory_already_answered(tiny_random_checkpoint, world_cache, tmp_path,
                                                                 capsys, monkeypatch):
    (tmp_path / "small.yaml").write_text(PLAN)
    out = tmp_path / "run"
    common = ["run", "--model", f"hf:{tiny_random_checkpoint}", "--plan", "small", "--include-path", str(tmp_path),
              "--limit", "3", "--output", str(out), "--cache-dir", str(world_cache)]
    assert main([*common, "--dry-run"]) == 0  # the throughput probe of the model
    before = capsys.readouterr().out
    assert "18 generations" in before and "18 still to compute (0 answered" in before and "measured on 8" in before
    assert main(common) == 0
    capsys.readouterr()
    assert main([*common, "--dry-run", "--throughput", "5"]) == 0
    after = capsys.readouterr().out
    rows = {row[0]: row for row in _table_rows(after)}
    assert rows["POPE × keyboard@1"][1:5] == ["2", "6", "6", "6"] and rows["shapes_mc × clean"][4] == "3"
    assert "0 still to compute (18 answered in the run directory)" in after
    # another run directory holds none of them, yet the answer cache holds every one (same inputs, same model)
    elsewhere = [*common[:-4], "--output", str(tmp_path / "other"), "--cache-dir", str(world_cache)]
    assert main([*elsewhere, "--dry-run", "--throughput", "5"]) == 0
    assert "18 still to compute (0 answered in the run directory)" in capsys.readouterr().out
    from vittle_bench.shifts.engine import ShiftEngine

    def no_shifting(*args, **kwargs):
        raise AssertionError("the answer cache is keyed before shifting: counting its hits shifts nothing")

    monkeypatch.setattr(ShiftEngine, "apply_many", no_shifting)
    assert main([*elsewhere, "--dry-run", "--throughput", "5", "--check-cache"]) == 0
    assert "0 still to compute (18 answered in the answer cache)" in capsys.readouterr().out
    assert not (tmp_path / "other").exists()


def test_dry_run_refuses_a_throughput_that_is_no_rate(tmp_path, capsys):
    assert main(["run", "--model", "builtin:tiny-llava", "--dry-run", "--throughput", "0",
                 "--output", str(tmp_path)]) == 2
    assert "--throughput must be a positive number" in capsys.readouterr().err


def test_paper45_columns_are_the_papers_table_layout():
    """LLaVA-Bench-COCO: clean, 9 visual, 9 text (6 char/word + 3 translations), 9 joint, 3 long-tail; POPE:
    clean and 9 shifted; the closed-form sets: clean. Every cell of the plan lands in one column."""
    plan = load_plans()["paper45"]
    placed: dict[tuple[str, str], int] = {}
    for cell in expand_plan(plan):
        column = plan.column_of(cell.task.task, cell.condition.label, cell.condition.kind)
        assert column is not None, cell
        family = "pope" if cell.task.task.startswith("pope_") else cell.task.task
        placed[family, column] = placed.get((family, column), 0) + 1
    assert placed == {("llava_bench_coco", "clean"): 1, ("llava_bench_coco", "visual"): 9,
                      ("llava_bench_coco", "text"): 9, ("llava_bench_coco", "joint"): 9,
                      ("llava_bench_coco", "long-tail"): 3, ("pope", "clean"): 3, ("pope", "shifted"): 27,
                      ("scienceqa_img", "clean"): 1, ("mmmu_val", "clean"): 1, ("mme", "clean"): 1,
                      ("mmstar", "clean"): 1}
    assert plan.column_order() == ["clean", "visual", "text", "joint", "long-tail", "shifted"]


@pytest.mark.slow
def test_paper45_on_offline_fixtures_evaluates_exactly_its_cells(tiny_random_checkpoint, tmp_path):
    """The plan end to end on the hub fixtures (tests/fixtures_hub.py, the hub schemas): the cells in results.csv
    are the plan's 65, none outside it."""
    from fixtures_hub import build_hub_fixtures

    hub = build_hub_fixtures(tmp_path / "hub")
    out = tmp_path / "run"
    assert main(["run", "--model", f"hf:{tiny_random_checkpoint}", "--plan", "paper45", "--limit", "2",
                 "--data-dir", str(hub), "--output", str(out), "--cache-dir", str(tmp_path / "cache")]) == 0
    planned = {(c.task.task, c.condition.label) for c in expand_plan(load_plans()["paper45"])}
    results = pd.read_csv(out / "results.csv")
    measured = set(zip(results.task, results.condition))
    assert measured == planned and len(planned) == 65
