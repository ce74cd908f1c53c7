"""Hand-made run directories in the run-directory contract (manifest.json, samples.jsonl, results.csv), so the
leaderboard, compare and plot tests need no model. Per-sample records are drawn from known rates; the cell
metrics in results.csv come from the real task adapters' `aggregate`, exactly as `vittle-bench run` writes them.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from vittle_bench.adapters.closed_form import ClosedFormAdapter
from vittle_bench.adapters.open_ended import OpenEndedAdapter
from vittle_bench.adapters.pope import PopeAdapter
from vittle_bench.results_io import write_results
from vittle_bench.runner import aggregate_cell
from vittle_bench.schema import SampleResult

# (shift, kind, severity)
CONDITIONS = [("clean", "clean", 0), ("gaussian_noise", "image", 1), ("gaussian_noise", "image", 3),
              ("gaussian_noise", "image", 5), ("defocus_blur", "image", 3), ("keyboard", "text", 1),
              ("keyboard", "text", 3), ("gaussian_noise+keyboard", "joint", 3)]


def condition_label(shift: str, kind: str, severity: int) -> str:
    if kind == "clean":
        return "clean"
    if kind == "joint":
        image, text = shift.split("+")
        return f"{image}@{severity}+{text}@{severity}"
    return f"{shift}@{severity}"
TASKS = {"syn_mc": ClosedFormAdapter, "syn_pope": PopeAdapter, "syn_open": OpenEndedAdapter}


def accuracy_of(skill: float, severity: int) -> float:
    return max(0.05, skill - 0.06 * severity)


def write_run(path: Path, model: str, skill: float, n: int = 60, seed: int = 0,
              errors: dict[tuple[str, str, int], int] | None = None, tasks: tuple[str, ...] = tuple(TASKS)) -> Path:
    """One model on three tasks under CONDITIONS; `errors[(task, shift, severity)] = k` fails the first k samples.

    Sample difficulty is shared across models and conditions (a per-sample latent), so models and shifts are
    positively correlated on the same sample, as in real runs.
    """
    path.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    difficulty = np.random.default_rng(1234).normal(0, 1, n)  # same samples for every model
    records: list[SampleResult] = []
    cells = []
    for task in tasks:
        adapter = TASKS[task]()
        for shift, kind, severity in CONDITIONS:
            p = accuracy_of(skill, severity)
            correct = rng.random(n) < np.clip(p + 0.1 * difficulty, 0.01, 0.99)
            n_err = (errors or {}).get((task, shift, severity), 0)
            cell = [_record(task, model, shift, kind, severity, i, bool(correct[i]), rng, i < n_err)
                    for i in range(n)]
            records += cell
            cells += aggregate_cell(adapter, cell, seed=severity * 100 + len(task))
    with (path / "samples.jsonl").open("w") as f:
        for r in records:
            f.write(json.dumps(r.to_json()) + "\n")
    write_results(path / "results.csv", cells)
    (path / "manifest.json").write_text(json.dumps({"command_line": "synthetic", "seed": seed,
                                                    "models": [{"name": model}]}))
    return path


def _record(task: str, model: str, shift: str, kind: str, severity: int, i: int, correct: bool,
            rng: np.random.Generator, failed: bool) -> SampleResult:
    base = dict(model=model, task=task, shift=shift, shift_kind=kind, severity=severity, sample_id=f"s{i}",
                input_hash="", prompt="", category=None, condition=condition_label(shift, kind, severity))
    if failed:
        return SampleResult(**base, answer=None, raw_output=None, parsed=None, parse_ok=False, score=None,
                            error="generate: RuntimeError: synthetic failure")
    if task == "syn_mc":
        answer = "ABCD"[i % 4]
        parsed = answer if correct else ("ABCD"[(i + 1) % 4] if rng.random() < 0.8 else None)
        return SampleResult(**base, answer=answer, raw_output=parsed or "?", parsed=parsed,
                            parse_ok=parsed is not None, score=float(parsed == answer))
    if task == "syn_pope":
        answer = "yes" if i % 2 == 0 else "no"
        parsed = answer if correct else {"yes": "no", "no": "yes"}[answer]
        return SampleResult(**base, answer=answer, raw_output=parsed, parsed=parsed, parse_ok=True,
                            score=float(parsed == answer))
    score = 1 + 9 * (0.8 if correct else 0.2) * rng.uniform(0.8, 1.0)
    base["category"] = "conv" if i % 2 else "detail"
    return SampleResult(**base, answer="ref", raw_output="x", parsed="x", parse_ok=True, score=float(score),
                        reference_score=10.0, scorer="overlap")
