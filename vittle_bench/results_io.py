"""Writing results.csv (atomically) and the small helpers every writer of a run directory shares."""

from __future__ import annotations

import csv
import hashlib
import os
import platform
from pathlib import Path

from vittle_bench import __version__
from vittle_bench.schema import RESULT_COLUMNS, CellResult


def cell_seed(seed: int, *parts: str) -> int:
    """Bootstrap seed of one cell: fixed by the run seed and the cell's identity, not by processing order."""
    return int.from_bytes(hashlib.sha256("\x1f".join([str(seed), *parts]).encode()).digest()[:4], "little")


def _number(value: float | None) -> str:
    return "" if value is None else f"{value:.6g}"


def write_results(path: Path, cells: list[CellResult]) -> None:
    tmp = path.with_suffix(".csv.tmp")
    with tmp.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(RESULT_COLUMNS)
        for c in cells:
            writer.writerow([c.model, c.task, c.shift, c.shift_kind, c.severity, c.metric, _number(c.value),
                             _number(c.ci_low), _number(c.ci_high), c.n, c.condition])
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def run_versions() -> dict[str, str]:
    import torch
    import transformers

    return {"vittle_bench": __version__, "python": platform.python_version(), "torch": torch.__version__,
            "transformers": transformers.__version__}
