"""Resume overhead and memory of the runner, measured side by side in one process tree.

    python benchmarks/resume_overhead.py

1. Time of a fully cached rerun (the median of three) vs the original run (built-in model, built-in tasks, a few
   shifts).
2. Peak RSS of a run over a 10,000-sample local split vs a 1,000-sample one (a trivial model, so memory is
   the runner's own), each in a fresh subprocess.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
RERUNS = 3  # the rerun is short, so one of them is at the mercy of a busy moment: their median

_RSS_SCRIPT = """
import resource, sys
sys.path.insert(0, {tests!r})
from counting_model import CountingModel
from vittle_bench.models.base import MODELS
from vittle_bench.run_plan import RunOptions
from vittle_bench.runner import run
from pathlib import Path
MODELS.register("counting")(CountingModel)
run(RunOptions(models=["counting:model"], output=Path(sys.argv[1]), tasks="big", shifts="keyboard@1",
               include_paths=[Path(sys.argv[2])], cache_dir=Path(sys.argv[3]), model_args={{"log": sys.argv[4]}},
               batch_size=64, progress=False))
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def _split(root: Path, n: int) -> Path:
    from vittle_bench.builtin.scenes import draw_scene, scene_rng

    (root / "images").mkdir(parents=True)
    for i in range(50):
        draw_scene(scene_rng(9, i)).image.save(root / "images" / f"{i}.png")
    rows = [{"question_id": str(i), "question": f"Is there a red circle in the image? ({i})",
             "image": f"images/{i % 50}.png", "answer": "yes"} for i in range(n)]
    (root / "big.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (root / "big.yaml").write_text("task: big\nsource: local:big.jsonl\nadapter: pope\n")
    return root


def peak_rss_mb(n: int, tmp: Path) -> float:
    root = _split(tmp / f"split{n}", n)
    tests = str(Path(__file__).resolve().parent.parent / "tests")
    out = subprocess.run([sys.executable, "-c", _RSS_SCRIPT.format(tests=tests), str(tmp / f"run{n}"), str(root),
                          str(tmp / f"cache{n}"), str(tmp / f"log{n}")], capture_output=True, text=True, check=True)
    return int(out.stdout.split()[-1]) / 1024


def main() -> None:
    from vittle_bench.run_plan import RunOptions
    from vittle_bench.runner import run

    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        options = RunOptions(models=["builtin:tiny-llava"], output=tmp / "first", tasks="shapes_mc,shapes_pope_random",
                             shifts="gaussian_noise@3,keyboard@2", cache_dir=tmp / "cache", progress=False,
                             batch_size=64)
        t0 = time.perf_counter()
        first = run(options)
        t_first = time.perf_counter() - t0
        reruns = []
        for attempt in range(RERUNS):
            t0 = time.perf_counter()
            again = run(RunOptions(**{**options.__dict__, "output": tmp / f"again{attempt}"}))
            reruns.append(time.perf_counter() - t0)
        t_again = statistics.median(reruns)
        print(f"original run   {t_first:7.2f} s  ({first.n_generated} generated)")
        print(f"cached rerun   {t_again:7.2f} s  median of {RERUNS} ({', '.join(f'{t:.2f}' for t in reruns)} s; "
              f"{again.n_cached} cached, {again.n_generated} generated)")
        print(f"ratio          {t_again / t_first:7.3f}  (goal <= 0.03; the rerun draws, keys and scores every "
              f"sample, but shifts none and loads no weights)")
        small, large = peak_rss_mb(1_000, tmp), peak_rss_mb(10_000, tmp)
        print(f"peak RSS  1,000 samples {small:7.1f} MB | 10,000 samples {large:7.1f} MB | ratio {large / small:5.2f}")


if __name__ == "__main__":
    main()
