"""EMI speed and estimator bias, measured in one process (CPU by default, single-threaded unless --threads).

    python benchmarks/emi_speed.py [--threads 1] [--sizes 1000,10000] [--skip-encoders]

1. Bias: CLUB on jointly Gaussian pairs (d = 16, n = 2,000, y = ρx + √(1−ρ²)ε) against its population value
   d·ρ²/(1−ρ²) and the true MI −(d/2)·log(1−ρ²), evaluated in-sample (as a run evaluates its cells) and on
   fresh pairs from the same distribution; so an estimator change shows up as a bias change.
2. Time to estimate EMI for 1,000 and 10,000 pairs of 384-d embeddings: fit (pooled model + reference pairs,
   early-stopped), the point estimate, and the 1,000-draw bootstrap CI.
3. Embedding throughput of each encoder that loads here (items/s, batch 32, images from the built-in world).
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
for _var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from vittle_bench.metrics.emi import ClubEstimator, emi_estimate, fit_pooled  # noqa: E402


def gaussian(rho: float, n: int, d: int, seed: int, x: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, d)) if x is None else x
    return x, rho * x + math.sqrt(1 - rho**2) * rng.standard_normal(x.shape)


def bias_table(d: int = 16, n: int = 2000) -> None:
    print(f"## CLUB bias on Gaussians (d={d}, n={n}; population = d·ρ²/(1−ρ²))\n")
    print("| ρ | true MI | population | in-sample | bias | fresh pairs | bias | epochs (best) | fit s |")
    print("|---|---|---|---|---|---|---|---|---|")
    for rho in (0.0, 0.3, 0.6, 0.9):
        x, y = gaussian(rho, n, d, seed=1)
        start = time.perf_counter()
        est = ClubEstimator.fit(x, y)
        seconds = time.perf_counter() - start
        pop, true = d * rho**2 / (1 - rho**2), -(d / 2) * math.log(1 - rho**2)
        inside, fresh = est.mi(x, y), est.mi(*gaussian(rho, n, d, seed=2))

        def rel(v: float) -> str:
            return f"{v - pop:+.3f}" + (f" ({(v - pop) / pop:+.0%})" if pop else "")

        print(f"| {rho} | {true:.3f} | {pop:.3f} | {inside:.3f} | {rel(inside)} | {fresh:.3f} | {rel(fresh)} | "
              f"{est.history['epochs']} ({est.history['best_epoch']}) | {seconds:.1f} |")
    print()


def pooled_population_emi(rho_model: float, rho_ref: float, d: int) -> float:
    """EMI that CLUB gives with the best Gaussian q fitted to the 50/50 pool of (x, y_model) and (x, y_ref):
    μ = ρ̄x, σ²(x) = the pool's conditional variance ½Σ(1−ρ²) + ¼(ρ_model−ρ_ref)²x² (per dimension)."""
    x2 = np.random.default_rng(0).standard_normal(2_000_000) ** 2
    mean = (rho_model + rho_ref) / 2
    var = ((1 - rho_model**2) + (1 - rho_ref**2)) / 2 + (rho_model - rho_ref) ** 2 * x2 / 4

    def club(rho: float) -> float:  # E_x[(E_y'(μ−y')² − E_y|x(μ−y)²) / 2σ²(x)]
        return float(np.mean((x2 * (2 * mean * rho - rho**2) + rho**2) / (2 * var)))

    return d * (club(rho_model) - club(rho_ref))


def speed_table(sizes: list[int], d: int = 384, rho_model: float = 0.6, rho_ref: float = 0.4) -> None:
    population = pooled_population_emi(rho_model, rho_ref, d)
    print(f"## Time to estimate EMI ({d}-d Gaussian pairs, ρ_model={rho_model}, ρ_ref={rho_ref}; fit on model + "
          f"reference pairs pooled; 1,000 bootstrap draws; population EMI {population:.1f})\n")
    print("| pairs | fit s | epochs (best) | point estimate s | bootstrap CI s | total s | EMI [95% CI] | bias |")
    print("|---|---|---|---|---|---|---|---|")
    for n in sizes:
        x, y_model = gaussian(rho_model, n, d, seed=3)
        _, y_ref = gaussian(rho_ref, n, d, seed=4, x=x)
        t0 = time.perf_counter()
        est = fit_pooled([(x, y_model, y_ref)])
        t1 = time.perf_counter()
        est.mi(x, y_model) - est.mi(x, y_ref)
        t2 = time.perf_counter()
        emi = emi_estimate(est, x, y_model, y_ref, n_boot=1000)["emi"]
        t3 = time.perf_counter()
        print(f"| {n:,} | {t1 - t0:.1f} | {est.history['epochs']} ({est.history['best_epoch']}) | {t2 - t1:.2f} | "
              f"{t3 - t2:.2f} | {t3 - t0:.1f} | {emi.value:.2f} [{emi.ci_low:.2f}, {emi.ci_high:.2f}] | "
              f"{(emi.value - population) / population:+.0%} |")
    print()


def encoder_table(n_images: int, n_texts: int) -> None:
    from vittle_bench.config import resolve_tasks
    from vittle_bench.data.sources import load_samples
    from vittle_bench.encoders import ENCODERS, load_encoder

    with tempfile.TemporaryDirectory() as cache:
        samples = load_samples(resolve_tasks("shapes_mc")[0], Path(cache), n_images)
        images = [s.images[0].copy() for s in samples]  # decoded before the directory goes
    texts = [f"{s.question} {' '.join(s.choices)}" for s in samples]
    texts = (texts * (n_texts // max(1, len(texts)) + 1))[:n_texts]
    print(f"## Embedding throughput (batch 32; {len(images)} built-in images of {images[0].size[0]}px, "
          f"{len(texts)} texts)\n")
    print("| encoder | modality | dim | load s | items/s |")
    print("|---|---|---|---|---|")
    for name in ENCODERS.names():
        start = time.perf_counter()
        try:
            encoder = load_encoder(name)
        except (OSError, ValueError, ImportError) as exc:
            print(f"| {name} | - | - | - | not loadable here ({type(exc).__name__}) |")
            continue
        loaded = time.perf_counter()
        items = images if encoder.modality == "image" else texts
        encoder.encode(items[:4])  # warm-up
        begin = time.perf_counter()
        encoder.encode(items)
        rate = len(items) / (time.perf_counter() - begin)
        print(f"| {encoder.name} | {encoder.modality} | {encoder.dim} | {loaded - start:.1f} | {rate:.1f} |")
    print()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--sizes", default="1000,10000")
    parser.add_argument("--images", type=int, default=128)
    parser.add_argument("--texts", type=int, default=256)
    parser.add_argument("--skip-encoders", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} thread(s), {os.cpu_count()} CPUs, python {sys.version.split()[0]}\n")
    bias_table()
    speed_table([int(s) for s in args.sizes.split(",")])
    if not args.skip_encoders:
        encoder_table(args.images, args.texts)


if __name__ == "__main__":
    main()
