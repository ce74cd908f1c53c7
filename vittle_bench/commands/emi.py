"""`vittle-bench emi` (the CLUB estimator on your own embeddings) and `vittle-bench emi-bound` (the data-only part
of the EMID upper bound for a task under shifts, no model needed). Each prints one JSON object."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from vittle_bench.config import DEFAULT_SHIFTS

ARRAYS = ("x", "y_model", "y_ref")


def register(sub: argparse._SubParsersAction) -> None:
    emi = sub.add_parser("emi", help="EMI = I(X;Ŷ) − I(X;Y_ref) from pre-computed embeddings (.npz)")
    emi.add_argument("--embeddings", type=Path, required=True,
                     help="npz with arrays x, y_model, y_ref (one row per sample)")
    emi.add_argument("--estimator", type=Path, help="evaluate with this saved estimator instead of fitting one")
    emi.add_argument("--save-estimator", type=Path, help="write the fitted estimator here (reuse it with --estimator)")
    emi.add_argument("--seed", type=int, default=0, help="fit split, initialisation and bootstrap seed")
    emi.add_argument("--n-boot", type=int, default=1000, help="bootstrap draws for the CIs")
    emi.add_argument("--max-epochs", type=int, default=200)
    emi.set_defaults(func=main_emi)

    bound = sub.add_parser("emi-bound", help="input terms of the JSD upper bound on EMID, from data alone")
    bound.add_argument("--task", required=True, help="task name (see `vittle-bench list tasks`)")
    bound.add_argument("--shifts", default=DEFAULT_SHIFTS, help=f"suites or conditions (default: {DEFAULT_SHIFTS})")
    bound.add_argument("--image-encoder", help="default: clip-vit-b32 if it loads, else effnet-lite0")
    bound.add_argument("--text-encoder", help="default: xlm-r-base if it loads, else minilm-l6")
    bound.add_argument("--limit", type=int, help="first N samples of the task")
    bound.add_argument("--seed", type=int, default=0, help="the shifts' seed (as in `run --seed`)")
    bound.add_argument("--cache-dir", type=Path, help="built-in data and embeddings (default: ~/.cache/vittle-bench)")
    bound.add_argument("--include-path", action="append", default=[], help="extra directory of task/suite YAML files")
    bound.set_defaults(func=main_bound)


def _load_npz(path: Path):
    from vittle_bench.config import ConfigError

    if not path.is_file():
        raise ConfigError(f"--embeddings {path}: no such file")
    try:
        data = dict(np.load(path))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"--embeddings {path}: not a readable .npz ({exc})") from None
    missing = [k for k in ARRAYS if k not in data]
    if missing:
        raise ConfigError(f"--embeddings {path}: missing arrays {missing} (has {sorted(data)})")
    shapes = {k: data[k].shape for k in ARRAYS}
    if any(len(s) != 2 for s in shapes.values()) or len({s[0] for s in shapes.values()}) != 1 \
            or shapes["y_model"][1] != shapes["y_ref"][1]:
        raise ConfigError(f"--embeddings {path}: need 2-d arrays with equal row counts and equal y widths, got {shapes}")
    return data


def main_emi(args: argparse.Namespace) -> int:
    from vittle_bench.config import ConfigError
    from vittle_bench.metrics.emi import ClubConfig, ClubEstimator, emi_estimate, fit_pooled

    data = _load_npz(args.embeddings)
    info: dict = {}
    if args.estimator:
        if not args.estimator.is_file():
            raise ConfigError(f"--estimator {args.estimator}: no such file")
        estimator = ClubEstimator.load(args.estimator)
        info = {"fitted": False, "path": str(args.estimator)}
    else:
        estimator = fit_pooled([(data["x"], data["y_model"], data["y_ref"])],
                               ClubConfig(seed=args.seed, max_epochs=args.max_epochs))
        info = {"fitted": True, **{k: estimator.history[k] for k in ("epochs", "best_epoch", "n_train", "n_val")}}
    try:
        est = emi_estimate(estimator, data["x"], data["y_model"], data["y_ref"], seed=args.seed, n_boot=args.n_boot)
    except ValueError as exc:  # e.g. an estimator fitted on other widths
        raise ConfigError(str(exc)) from None
    if args.save_estimator:
        estimator.save(args.save_estimator)
        info["saved"] = str(args.save_estimator)
    e = est["emi"]
    print(json.dumps({"emi": e.value, "ci_low": e.ci_low, "ci_high": e.ci_high,
                      "mi_model": est["mi_model"].value, "mi_model_ci": [est["mi_model"].ci_low, est["mi_model"].ci_high],
                      "mi_ref": est["mi_ref"].value, "mi_ref_ci": [est["mi_ref"].ci_low, est["mi_ref"].ci_high],
                      "n": e.n, "confidence": 0.95, "n_boot": args.n_boot, "estimator": info}))
    return 0


def main_bound(args: argparse.Namespace) -> int:
    from vittle_bench.config import ConfigError, resolve_shifts, resolve_tasks
    from vittle_bench.data.sources import load_samples
    from vittle_bench.encoders import load_encoder_pair
    from vittle_bench.encoders.cache import EmbeddingCache
    from vittle_bench.metrics.emi import representation_jsd
    from vittle_bench.metrics.emi_cells import input_embeddings
    from vittle_bench.runner import default_cache_dir

    include = [Path(p) for p in args.include_path]
    tasks = resolve_tasks(args.task, include)
    if len(tasks) != 1:
        raise ConfigError(f"--task {args.task}: name one task (it selects {len(tasks)})")
    conditions = resolve_shifts(args.shifts, include)
    cache_dir = args.cache_dir or default_cache_dir()
    samples = [s for s in load_samples(tasks[0], cache_dir, args.limit) if not s.load_error]
    if len(samples) < 2:
        raise ConfigError(f"task {tasks[0].task}: {len(samples)} loadable samples, need at least 2")
    encoders = load_encoder_pair(args.image_encoder, args.text_encoder)
    ids = [s.sample_id for s in samples]
    rows = []
    with EmbeddingCache(cache_dir / "embeddings.sqlite") as cache:
        clean = next(c for c in conditions if c.label == "clean")
        p = input_embeddings(samples, clean, args.seed, encoders, cache)
        p_image, p_text = (np.stack([p[i][k] for i in ids]) for k in (0, 1))
        for condition in conditions:
            if condition.label == "clean":
                continue
            q = input_embeddings(samples, condition, args.seed, encoders, cache)
            jsd_image = representation_jsd(p_image, np.stack([q[i][0] for i in ids]))
            jsd_text = representation_jsd(p_text, np.stack([q[i][1] for i in ids]))
            rows.append({"shift": condition.label, "kind": condition.kind, "severity": condition.severity,
                         "jsd_image": jsd_image, "jsd_text": jsd_text,
                         "input_terms": jsd_image ** 0.5 + jsd_text ** 0.5})
    print(json.dumps({
        "task": tasks[0].task, "n": len(samples), "seed": args.seed,
        "encoders": {"image": encoders[0].name, "text": encoders[1].name},
        "terms": "input terms only: sqrt(JSD_image) + sqrt(JSD_question) between clean P and shifted Q; the bound's "
                 "answer terms JSD(model vs reference answers on P and Q)^(1/4) need model answers "
                 "(`vittle-bench run --metrics emi` reports the full bound as emid_bound)",
        "conditions": rows}))
    return 0
