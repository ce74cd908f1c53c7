"""Shifting overlapping generation: wall time of a run vs the sum and the max of its shift and generation times.

    python benchmarks/shift_overlap.py [--samples 48] [--batch-size 8] [--size 336] [--workers 2]

A local task of N distinct photos (scikit-image's bundled images, cropped and resized: every image is shifted),
three ImageNet-C conditions (the runner puts clean first), no cache (every shift computed, every answer
generated), and a stand-in model whose `generate` takes a fixed time per batch and uses no CPU (as a GPU leaves
the CPU free). Runs, each through the runner end to end, side by side:
  fixed           the stand-in answering instantly, clean only: what every run pays besides shifting and
                  generating (planning, loading, records, results), after a warm-up run that is not counted
  shift           the stand-in answering instantly, all conditions, --prefetch 0, minus `fixed`: shifting
                  alone, shift worker start-up included
  generate        every batch (clean ones too) x the stand-in's time per batch (it sleeps exactly that long),
                  calibrated so that generating the shifted batches takes as long as shifting them
  sequential      all conditions at that time per batch, --prefetch 0 (shift, then generate, per batch)
  overlapped      the same with --prefetch 2 (the next batches shifted while the model generates)
sum = fixed + shift + generate, max = fixed + max(shift, generate). Goal: overlapped within 15 % of max.
The records of the last two runs must be identical.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("OMP_NUM_THREADS", "1")

from vittle_bench.models.base import MODELS, Model  # noqa: E402 - after the thread settings
from vittle_bench.run_plan import RunOptions  # noqa: E402
from vittle_bench.runner import run  # noqa: E402
from vittle_bench.schema import Request  # noqa: E402

PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry", "hubble_deep_field", "retina",
          "colorwheel", "camera", "coins", "horse", "clock")
CONDITIONS = "gaussian_noise@3,elastic_transform@2,frost@3"


class StandIn(Model):
    """Answers "yes" after `seconds` per batch, sleeping (no CPU), like a model on an accelerator."""

    fingerprint = "stand-in-v1"

    def __init__(self, seconds: str = "0") -> None:
        self.name, self.seconds = "standin:model", float(seconds)

    @classmethod
    def load(cls, name: str, **kwargs: str) -> StandIn:
        return cls(**kwargs)

    def generate(self, requests: list[Request]) -> list[str]:
        time.sleep(self.seconds)
        return ["yes"] * len(requests)


def _task(root: Path, n: int, size: int) -> Path:
    """N distinct photos (a different crop of one of the bundled images each) as a local yes/no task."""
    import skimage.data
    from PIL import Image

    (root / "images").mkdir(parents=True)
    rows = []
    for i in range(n):
        photo = Image.fromarray(getattr(skimage.data, PHOTOS[i % len(PHOTOS)])()).convert("RGB")
        shift = i // len(PHOTOS) * 7
        photo.crop((shift, shift, photo.width - shift, photo.height - shift)).resize((size, size)).save(
            root / "images" / f"{i}.png")
        rows.append(f'{{"question_id": "{i}", "question": "Is there a person in the image?", '
                    f'"image": "images/{i}.png", "answer": "yes"}}\n')
    (root / "overlap.jsonl").write_text("".join(rows))
    (root / "overlap.yaml").write_text("task: overlap\nsource: local:overlap.jsonl\nadapter: pope\n")
    return root


def _run(root: Path, out: Path, shifts: str, seconds: float, prefetch: int, args: argparse.Namespace) -> float:
    options = RunOptions(models=["standin:model"], output=out, tasks="overlap", shifts=shifts,
                         include_paths=[root], cache_dir=root / "cache", use_cache=False, progress=False,
                         batch_size=args.batch_size, shift_workers=args.workers, prefetch=prefetch,
                         model_args={"seconds": str(seconds)})
    start = time.perf_counter()
    run(options)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--samples", type=int, default=48)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--size", type=int, default=336)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    MODELS.register("standin")(StandIn)
    clean_batches = -(-args.samples // args.batch_size)
    batches = 3 * clean_batches  # shifted conditions x batches per condition
    print(f"{args.samples} photos of {args.size} px x conditions {CONDITIONS}, batches of {args.batch_size} "
          f"({batches} shifted batches), {args.workers} shift worker(s); {os.cpu_count()} CPU(s), load average "
          f"{os.getloadavg()[0]:.1f} at start\n")
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        root = _task(tmp / "task", args.samples, args.size)
        _run(root, tmp / "warm-up", "clean", 0.0, 0, args)  # one-off imports of the first run, not counted
        fixed = _run(root, tmp / "fixed", "clean", 0.0, 0, args)
        shift = _run(root, tmp / "shift", CONDITIONS, 0.0, 0, args) - fixed
        per_batch = max(shift, 0.0) / batches
        generate = per_batch * (batches + clean_batches)
        sequential = _run(root, tmp / "sequential", CONDITIONS, per_batch, 0, args)
        overlapped = _run(root, tmp / "overlapped", CONDITIONS, per_batch, 2, args)
        same = [(tmp / name / "samples.jsonl").read_text() for name in ("sequential", "overlapped")]
    total, longest = fixed + shift + generate, fixed + max(shift, generate)
    print(f"{'':34s} {'seconds':>8s}")
    print(f"{'fixed (planning, loading, records)':34s} {fixed:8.2f}")
    print(f"{'shift (--shift-workers ' + str(args.workers) + ')':34s} {shift:8.2f}")
    print(f"{'generate':34s} {generate:8.2f}  ({per_batch:.3f} s per batch)")
    print(f"{'sum = fixed + shift + generate':34s} {total:8.2f}")
    print(f"{'max = fixed + max(shift, generate)':34s} {longest:8.2f}")
    print(f"{'wall, sequential (--prefetch 0)':34s} {sequential:8.2f}  {sequential / longest:5.2f} x max, "
          f"{sequential / total:5.2f} x sum")
    print(f"{'wall, overlapped (--prefetch 2)':34s} {overlapped:8.2f}  {overlapped / longest:5.2f} x max, "
          f"{overlapped / total:5.2f} x sum  (goal: within 15 % of max)")
    print(f"records identical with and without prefetch: {same[0] == same[1]}")
    print(f"load average {os.getloadavg()[0]:.1f} at the end")


if __name__ == "__main__":
    main()
