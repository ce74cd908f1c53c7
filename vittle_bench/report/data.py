"""What a report reads from its run directories: results.csv, the samples.jsonl records with the text a card
shows, and each run's manifest (how to make its images again)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from vittle_bench.adapters.base import declared_metric
from vittle_bench.errors import ConfigError
from vittle_bench.leaderboard import SAMPLE_FIELDS, choose_metric, load_results, load_samples

CARD_FIELDS = (*SAMPLE_FIELDS, "prompt", "raw_output", "input_hash", "judge_review")


@dataclass(frozen=True)
class ReportData:
    run_dirs: list[Path]
    manifests: list[dict[str, Any]]
    results: pd.DataFrame  # every run's results.csv (later runs win a duplicate cell, as in the leaderboard)
    records: pd.DataFrame  # CARD_FIELDS and `run` (the index of the run directory a record comes from)
    models: list[str]  # in the order the runs list them
    headline: dict[str, str]  # task -> the metric its tables and galleries use
    binary_tasks: set[str]  # tasks whose headline metric scores each sample 0 or 1 (right / wrong)

    @property
    def scoring(self) -> pd.DataFrame:
        """The records' scoring fields, as `leaderboard` and `compare` read them."""
        return self.records[list(SAMPLE_FIELDS)]


def _manifest(run_dir: Path) -> dict[str, Any]:
    path = run_dir / "manifest.json"
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path} not found: pass run directories written by `vittle-bench run`") from None
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not a readable manifest ({type(exc).__name__})") from None


def load_report_data(run_dirs: list[Path]) -> ReportData:
    """The runs' tables and records, refused with one line when a file cannot be trusted."""
    if not run_dirs:
        raise ConfigError("name at least one run directory")
    manifests = [_manifest(run_dir) for run_dir in run_dirs]
    results = load_results(run_dirs)
    frames = []
    for index, run_dir in enumerate(run_dirs):
        if not (run_dir / "samples.jsonl").is_file():
            raise ConfigError(f"{run_dir / 'samples.jsonl'} not found: the report shows the per-sample records a "
                              "finished run writes")
        frames.append(load_samples([run_dir], CARD_FIELDS).assign(run=index))
    records = pd.concat(frames, ignore_index=True).drop_duplicates(
        subset=["model", "task", "condition", "sample_id"], keep="last").reset_index(drop=True)
    models = list(dict.fromkeys(results["model"]))
    headline: dict[str, str] = {}
    for task, cells in results.groupby("task", sort=False):
        chosen = choose_metric(cells, None, str(task))
        if chosen is not None:
            headline[str(task)] = chosen
    binary = {task for task, metric in headline.items() if (spec := declared_metric(metric)) and spec.binary}
    return ReportData(run_dirs, manifests, results, records, models, headline, binary)
