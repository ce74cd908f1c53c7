"""Image-shift throughput: our engine vs calling `imagecorruptions.corrupt` per image, side by side.

    python benchmarks/shift_throughput.py [--images 8] [--size 336] [--severity 3] [--workers 2]

All 19 ImageNet-C corruptions on the same N photos (scikit-image's bundled sample images, resized); the clock
covers shifting only, never imports. Phases, each in a fresh process:
  cold        the first image in a new process, library vs ours (one-off costs such as numba compiling
              glass_blur are paid here, once per process)
  steady      one process, both warmed up, then image by image: library (`corrupt` per image, seeded with
              np.random.seed / its seed argument), then ours (ShiftEngine.apply_many, one process, no cache),
              interleaved so that a machine whose load drifts slows both alike
  parallel    one process: the library over all images, then ours with W worker processes (forkserver pool
              start-up included), back to back
  cache       ours writing a fresh ShiftedImageCache, then a new process reading it: hit rate, images
              generated and time of the second pass (goal: no generation)
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("OMP_NUM_THREADS", "1")
PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry", "hubble_deep_field", "retina",
          "colorwheel", "camera", "coins", "horse", "clock")  # bundled with scikit-image (no download)


def _images(count: int, size: int) -> list:
    import skimage.data
    from PIL import Image

    names = [PHOTOS[i % len(PHOTOS)] for i in range(count)]
    return [Image.fromarray(getattr(skimage.data, n)()).convert("RGB").resize((size, size)) for n in names]


def _library(arrays: list, severity: int) -> float:
    import numpy as np
    from imagecorruptions import corrupt

    from vittle_bench.shifts.image import IMAGENET_C

    start = time.perf_counter()
    for k, array in enumerate(arrays):
        for name in IMAGENET_C:
            if name in ("glass_blur", "impulse_noise"):
                corrupt(array, corruption_name=name, severity=severity, seed=k)
            else:
                np.random.seed(k)
                corrupt(array, corruption_name=name, severity=severity)
    return time.perf_counter() - start


def _ours(engine, samples: list, severity: int) -> float:
    from vittle_bench.shifts import parse_condition
    from vittle_bench.shifts.image import IMAGENET_C

    start = time.perf_counter()
    for name in IMAGENET_C:
        results = engine.apply_many(parse_condition(f"{name}@{severity}"), samples, seed=0)
        assert not any(isinstance(r, Exception) for r in results), results
    return time.perf_counter() - start


def _phase(args: argparse.Namespace) -> dict:
    import imagecorruptions  # noqa: F401 - imported before any clock, in every phase
    import numpy as np

    from vittle_bench.schema import Sample
    from vittle_bench.shifts.engine import ShiftEngine
    from vittle_bench.shifts.image_cache import ShiftedImageCache

    images = _images(args.images, args.size)
    arrays = [np.asarray(im) for im in images]
    samples = [Sample("bench", f"img{k}", "q", images=(im,)) for k, im in enumerate(images)]
    if args.phase == "cold-library":
        return {"seconds": _library(arrays[:1], args.severity)}
    if args.phase == "cold-ours":
        return {"seconds": _ours(ShiftEngine(), samples[:1], args.severity)}
    if args.phase == "steady":
        engine = ShiftEngine()
        _library(arrays[:1], args.severity), _ours(engine, samples[:1], args.severity)  # warm-up, not counted
        pairs = [(_library([a], args.severity), _ours(engine, [s], args.severity))
                 for a, s in zip(arrays[1:], samples[1:])]
        return {"library": sum(p[0] for p in pairs), "ours": sum(p[1] for p in pairs), "n": len(pairs)}
    if args.phase == "parallel":
        library = _library(arrays, args.severity)
        with ShiftEngine(workers=args.workers) as engine:
            ours = _ours(engine, samples, args.severity)
        return {"library": library, "ours": ours}
    cache = ShiftedImageCache(Path(args.cache))
    engine = ShiftEngine(cache)
    seconds = _ours(engine, samples, args.severity)
    return {"seconds": seconds, "computed": engine.computed, "cache": cache.stats()}


def _run_phase(phase: str, args: argparse.Namespace, cache: str = "") -> dict:
    command = [sys.executable, __file__, "--phase", phase, "--images", str(args.images), "--size", str(args.size),
               "--severity", str(args.severity), "--workers", str(args.workers), "--cache", cache]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"phase {phase} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=8)
    parser.add_argument("--size", type=int, default=336)
    parser.add_argument("--severity", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--phase", help=argparse.SUPPRESS)
    parser.add_argument("--cache", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.phase:
        print(json.dumps(_phase(args)))
        return

    n = args.images
    print(f"19 ImageNet-C corruptions x {n} images of {args.size}x{args.size} px at severity {args.severity}; "
          f"{os.cpu_count()} CPU(s), load average {os.getloadavg()[0]:.1f} at start\n")
    cold_lib, cold_ours = _run_phase("cold-library", args), _run_phase("cold-ours", args)
    steady = _run_phase("steady", args)
    parallel = _run_phase("parallel", args)
    with tempfile.TemporaryDirectory() as tmp:
        first = _run_phase("cache", args, cache=tmp)
        second = _run_phase("cache", args, cache=tmp)

    def line(label: str, library: float, ours: float, per: int) -> None:
        print(f"{label:44s} {library / per:9.3f} {ours / per:9.3f} {library / ours:8.2f}x")

    print(f"{'seconds per image (all 19 corruptions)':44s} {'library':>9s} {'ours':>9s} {'speed-up':>9s}")
    line("first image in a new process", cold_lib["seconds"], cold_ours["seconds"], 1)
    line(f"steady state, 1 process ({steady['n']} images, interleaved)", steady["library"], steady["ours"],
         steady["n"])
    line(f"{n} images, library 1 process vs ours {args.workers} workers", parallel["library"], parallel["ours"], n)
    stats = second["cache"]
    print(f"\ncache, first pass:  {first['seconds']:.2f} s, {first['computed']} images generated, "
          f"{first['cache']['size_bytes'] / 2**20:.1f} MiB written")
    print(f"cache, second pass: {second['seconds']:.2f} s, {second['computed']} images generated, hit rate "
          f"{stats['hit_rate']:.0%} ({stats['hits']} hits, {stats['misses']} misses)")
    print(f"load average {os.getloadavg()[0]:.1f} at the end")


if __name__ == "__main__":
    main()
