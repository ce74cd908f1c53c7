"""Wall-time breakdown of the README's first command (the embedded default), measured in one process.

    python benchmarks/demo_time.py [--model builtin:tiny-llava] [--tasks builtin] [--shifts quick]

Phases: generate the built-in world (fresh cache directory), load the model, evaluate the grid (cold
answer cache), export the leaderboard; then the same run again (warm cache), which is what a second
invocation of the command costs. Training is not part of the command (weights are committed); its
recorded time is read from the checkpoint's training_log.json.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="builtin:tiny-llava")
    parser.add_argument("--tasks", default="builtin")
    parser.add_argument("--shifts", default="quick")
    args = parser.parse_args()

    from vittle_bench.builtin.model import weights_dir
    from vittle_bench.builtin.world import ensure_world
    from vittle_bench.leaderboard import build_table
    from vittle_bench.models import load_model
    from vittle_bench.render import render
    from vittle_bench.run_plan import RunOptions
    from vittle_bench.runner import run

    with tempfile.TemporaryDirectory() as tmp:
        cache = Path(tmp) / "cache"
        t0 = time.perf_counter()
        ensure_world(cache)
        t_data = time.perf_counter() - t0

        t0 = time.perf_counter()
        load_model(args.model)
        t_load = time.perf_counter() - t0

        options = RunOptions(models=[args.model], output=Path(tmp) / "run", tasks=args.tasks, shifts=args.shifts,
                             cache_dir=cache, progress=False)
        cold = run(options)
        t0 = time.perf_counter()
        render(build_table([cold.output]), "markdown")  # what `vittle-bench run` prints
        t_export = time.perf_counter() - t0
        warm = run(RunOptions(**{**options.__dict__, "output": Path(tmp) / "run2"}))

    log = weights_dir(args.model.split(":", 1)[1]) / "training_log.json"
    train_s = None
    if log.is_file():
        report = json.loads(log.read_text())
        train_s = report["stage1"]["wall_s"] + report["stage2"]["wall_s"]
    print(f"model {args.model}, tasks {args.tasks}, shifts {args.shifts}: {cold.n_records} samples")
    print(f"  generate built-in data      {t_data:7.1f} s")
    trained = (f"(committed weights; recorded {format(train_s, '.0f')} s in training_log.json; "
               "README: how it was trained)") if train_s else "n/a"
    print(f"  train                       {trained}")
    print(f"  load model                  {t_load:7.1f} s")
    print(f"  evaluate (cold cache)       {cold.seconds - t_load:7.1f} s   ({cold.n_generated} generated, "
          f"{cold.n_records / max(cold.seconds, 1e-9):.0f} samples/s)")
    print(f"  export leaderboard          {t_export:7.2f} s")
    print(f"  second invocation (warm)    {warm.seconds:7.1f} s   "
          f"({warm.n_cached} cached, {warm.n_generated} generated)")
    print(f"  ratio warm / cold           {warm.seconds / cold.seconds:7.2f}")


if __name__ == "__main__":
    main()
