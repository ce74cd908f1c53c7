"""EMI speed and estimator bias, for both CLUB estimators, measured in one process (CPU by default, single-threaded
unless --threads).

    python benchmarks/emi_speed.py [--threads 1] [--sizes 1000,10000] [--skip-encoders] [--skip-l2]

1. Bias on the Gaussian benchmark: CLUB on jointly Gaussian pairs (d = 16, n = 2,000, y = ρx + √(1−ρ²)ε)
   against its population value d·ρ²/(1−ρ²) and the true MI −(d/2)·log(1−ρ²), evaluated in-sample (as a run
   evaluates its cells) and on fresh pairs from the same distribution; so an estimator change shows up as a
   bias change. `club-reference` cannot follow past σ² = e⁻¹ (its tanh-bounded log-variance): its population
   value is d·e·ρ² once 1−ρ² < e⁻¹.
2. The same on L2-normalised 768-d pairs (what the encoders give): the scale each estimator reports there.
3. Time to estimate EMI for 1,000 and 10,000 pairs of 384-d embeddings: fit (pooled model + reference pairs),
   the point estimate, and the 1,000-draw bootstrap CI.
4. Embedding throughput of each encoder that loads here (items/s, batch 32, images from the built-in world).
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

import numpy as np
import torch

from vittle_bench.metrics.club import ClubEstimator
from vittle_bench.metrics.club_net import ESTIMATORS, ClubConfig
from vittle_bench.metrics.emi import emi_estimate, fit_pooled


def gaussian(rho: float, n: int, d: int, seed: int, x: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, d)) if x is None else x
    return x, rho * x + math.sqrt(1 - rho**2) * rng.standard_normal(x.shape)


def unit(a: np.ndarray) -> np.ndarray:
    return a / np.linalg.norm(a, axis=1, keepdims=True)


def population(config: ClubConfig, rho: float, d: int) -> float:
    """CLUB of the best q in the estimator's family: per dimension ρ²/σ² with σ² = 1−ρ², floored at e^-bound."""
    return d * rho**2 / max(1 - rho**2, math.exp(-config.logvar_bound))


def _bias(value: float, population: float) -> str:
    return f"{value - population:+.3f}" + (f" ({(value - population) / population:+.0%})" if population else "")


def bias_table(d: int = 16, n: int = 2000) -> None:
    print(f"## CLUB bias on Gaussians (d={d}, n={n}; population = d·ρ²/max(1−ρ², e^-bound))\n")
    print("| estimator | ρ | true MI | population | in-sample | bias | fresh pairs | bias | epochs | fit s |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for config in ESTIMATORS.values():
        for rho in (0.0, 0.3, 0.6, 0.9):
            x, y = gaussian(rho, n, d, seed=1)
            start = time.perf_counter()
            est = ClubEstimator.fit(x, y, config)
            seconds = time.perf_counter() - start
            pop, true = population(config, rho, d), -(d / 2) * math.log(1 - rho**2)
            inside, fresh = est.mi(x, y), est.mi(*gaussian(rho, n, d, seed=2))

            print(f"| {config.name} | {rho} | {true:.3f} | {pop:.3f} | {inside:.3f} | {_bias(inside, pop)} | "
                  f"{fresh:.3f} | {_bias(fresh, pop)} | {est.history['epochs']} | {seconds:.1f} |")
    print()


def l2_table(d: int = 768, n: int = 2000) -> None:
    """x and y L2-normalised after the Gaussian draw, as encoders return them."""
    print(f"## CLUB on L2-normalised {d}-d pairs (n={n}; y = unit(ρz + √(1−ρ²)ε), x = unit(z); the cap of "
          "club-reference is e·Σ_d Var(y_d))\n")
    print("| estimator | ρ | Gaussian MI before normalising | in-sample | fresh pairs | e·Σ Var(y) | fit s |")
    print("|---|---|---|---|---|---|---|")
    for config in ESTIMATORS.values():
        for rho in (0.3, 0.6, 0.9):
            x, y = (unit(a) for a in gaussian(rho, n, d, seed=1))
            start = time.perf_counter()
            est = ClubEstimator.fit(x, y, config)
            seconds = time.perf_counter() - start
            fresh = est.mi(*(unit(a) for a in gaussian(rho, n, d, seed=2)))
            print(f"| {config.name} | {rho} | {-(d / 2) * math.log(1 - rho**2):.1f} | {est.mi(x, y):.3f} | "
                  f"{fresh:.3f} | {math.e * y.var(0).sum():.3f} | {seconds:.1f} |")
    print()


def speed_table(sizes: list[int], d: int = 384, rho_model: float = 0.6, rho_ref: float = 0.4) -> None:
    print(f"## Time to estimate EMI ({d}-d Gaussian pairs, ρ_model={rho_model}, ρ_ref={rho_ref}; fit on model + "
          f"reference pairs pooled; 1,000 bootstrap draws)\n")
    print("| estimator | pairs | fit s | epochs | point estimate s | bootstrap CI s | total s | EMI [95% CI] |")
    print("|---|---|---|---|---|---|---|---|")
    for config in ESTIMATORS.values():
        for n in sizes:
            x, y_model = gaussian(rho_model, n, d, seed=3)
            _, y_ref = gaussian(rho_ref, n, d, seed=4, x=x)
            t0 = time.perf_counter()
            est = fit_pooled([(x, y_model, y_ref)], config)
            t1 = time.perf_counter()
            est.mi(x, y_model) - est.mi(x, y_ref)
            t2 = time.perf_counter()
            emi = emi_estimate(est, x, y_model, y_ref, n_boot=1000)["emi"]
            t3 = time.perf_counter()
            print(f"| {config.name} | {n:,} | {t1 - t0:.1f} | {est.history['epochs']} | {t2 - t1:.2f} | "
                  f"{t3 - t2:.2f} | {t3 - t0:.1f} | {emi.value:.3f} [{emi.ci_low:.3f}, {emi.ci_high:.3f}] |")
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
    parser.add_argument("--skip-l2", action="store_true", help="skip the 768-d table (minutes: six fits)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} thread(s), {os.cpu_count()} CPUs, "
          f"python {sys.version.split()[0]}\n")
    bias_table()
    if not args.skip_l2:
        l2_table()
    speed_table([int(s) for s in args.sizes.split(",")])
    if not args.skip_encoders:
        encoder_table(args.images, args.texts)


if __name__ == "__main__":
    main()
