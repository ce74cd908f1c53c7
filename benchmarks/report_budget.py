"""Build time and weight of the web report of a run, against the budgets (30 s on 2 cores, 30 MB).

    python benchmarks/report_budget.py [RUN_DIR] [--examples 12]

Without RUN_DIR it makes the README's first run (the embedded default: built-in tiny LLaVA, built-in tasks,
the `quick` suite; 13,800 records; answers from the answer cache when present) in a temporary directory, then
times `vittle-bench report` on it end to end in a fresh process, as a user runs it. A committed run directory
works too (e.g. leaderboards/builtin/run: three models, 41,400 records).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BUDGET_S, BUDGET_MB = 30.0, 30.0


def _report(run_dir: Path, site: Path, examples: int) -> tuple[float, float, str]:
    t0 = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "vittle_bench", "report", str(run_dir), "--output", str(site),
                           "--examples", str(examples)], capture_output=True, text=True, check=True)
    seconds = time.perf_counter() - t0
    size = sum(p.stat().st_size for p in site.rglob("*") if p.is_file()) / 1e6
    return seconds, size, done.stderr.strip().splitlines()[-1]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("run_dir", nargs="?", type=Path)
    parser.add_argument("--examples", type=int, default=12)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = args.run_dir
        if run_dir is None:
            run_dir = Path(tmp) / "run"
            subprocess.run([sys.executable, "-m", "vittle_bench", "run", "--model", "builtin:tiny-llava",
                            "--output", str(run_dir)], check=True, capture_output=True)
        records = sum(1 for _ in (run_dir / "samples.jsonl").open())
        seconds, size, summary = _report(run_dir, Path(tmp) / "site", args.examples)
    print(f"run: {run_dir if args.run_dir else 'the embedded default'} ({records:,} records)")
    print(f"report: {summary}")
    print(f"build time: {seconds:.1f} s (budget {BUDGET_S:.0f} s, ratio {seconds / BUDGET_S:.2f})")
    print(f"site size:  {size:.1f} MB (budget {BUDGET_MB:.0f} MB, ratio {size / BUDGET_MB:.2f})")


if __name__ == "__main__":
    main()
