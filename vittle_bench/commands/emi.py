"""`vittle-bench emi` (the CLUB estimator on your own embeddings) and `vittle-bench emi-bound` (the data-only part
of the EMID upper bound for a task under shifts, no model needed). Each prints one JSON object."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from vittle_bench.config import DEFAULT_SHIFTS
from vittle_bench.schema import Sample
from vittle_bench.shifts import ShiftCondition

ARRAYS = ("x", "y_model", "y_ref")


def register(sub: argparse._SubParsersAction) -> None:
    emi = sub.add_parser("emi", help="EMI = I(X;Ŷ) − I(X;Y_ref) from pre-computed embeddings (.npz)")
    emi.add_argument("--embeddings", type=Path, required=True,
                     help="npz with arrays x, y_model, y_ref (one row per sample)")
    emi.add_argument("--estimator", type=Path, help="evaluate with this estimator instead of fitting one: one saved "
                     "by vittle-bench, or a CLUB checkpoint in the EMI repository's layout (p_mu.* / p_logvar.*)")
    emi.add_argument("--club", default="club-reference",
                     help="which CLUB to fit: club-reference (default, the EMI repository's) or club-standardised "
                     "(see docs/emi.md)")
    emi.add_argument("--save-estimator", type=Path, help="write the fitted estimator here (reuse it with --estimator)")
    emi.add_argument("--seed", type=int, default=0, help="fit initialisation, batch order and bootstrap seed")
    emi.add_argument("--n-boot", type=int, default=1000, help="bootstrap draws for the CIs")
    emi.add_argument("--steps", type=int, help="Adam steps of club-reference (default 4000)")
    emi.add_argument("--max-epochs", type=int, help="epoch limit of club-standardised (default 200; it stops "
                     "earlier on its held-out split)")
    emi.set_defaults(func=main_emi)

    bound = sub.add_parser("emi-bound", help="input terms of the JSD upper bound on EMID, from data alone")
    bound.add_argument("--task", required=True, help="task name (see `vittle-bench list tasks`)")
    bound.add_argument("--shifts", default=DEFAULT_SHIFTS, help=f"suites or conditions (default: {DEFAULT_SHIFTS})")
    bound.add_argument("--image-encoder", help="default: clip-vit-b32 if it loads, else effnet-lite0")
    bound.add_argument("--text-encoder", help="default: xlm-r-base if it loads, else minilm-l6")
    bound.add_argument("--limit", type=int, help="first N samples of the task")
    bound.add_argument("--seed", type=int, default=0, help="the shifts' seed (as in `run --seed`)")
    bound.add_argument("--cache-dir", type=Path, help="built-in data and embeddings (default: ~/.cache/vittle-bench)")
    bound.add_argument("--data-dir", type=Path, help="offline copies of hub datasets (as in `run --data-dir`)")
    bound.add_argument("--include-path", action="append", default=[], help="extra directory of task/suite YAML files")
    bound.set_defaults(func=main_bound)


def _load_npz(path: Path) -> dict[str, np.ndarray]:
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
        raise ConfigError(f"--embeddings {path}: need 2-d arrays with equal row counts and equal y widths, "
                          f"got {shapes}")
    for key in ARRAYS:
        if not np.issubdtype(data[key].dtype, np.number):
            raise ConfigError(f"--embeddings {path}: {key} holds {data[key].dtype}, not numbers")
        bad = ~np.isfinite(data[key]).all(axis=1)
        if bad.any():
            raise ConfigError(f"--embeddings {path}: {key} has NaN or infinite values in {int(bad.sum())} row(s), "
                              f"the first at row {int(np.flatnonzero(bad)[0])}")
    if shapes["x"][0] < 2:
        raise ConfigError(f"--embeddings {path}: {shapes['x'][0]} row(s); EMI needs at least 2")
    return data


def _fit_config(args: argparse.Namespace):
    from dataclasses import replace

    from vittle_bench.config import ConfigError
    from vittle_bench.metrics.club_net import ESTIMATORS

    if args.club not in ESTIMATORS:
        raise ConfigError(f"--club {args.club}: unknown; choose {' or '.join(ESTIMATORS)}")
    config = replace(ESTIMATORS[args.club], seed=args.seed)
    if args.steps is not None:
        if not config.steps:
            raise ConfigError(f"--steps applies to a fixed-step CLUB, not {config.name} (use --max-epochs)")
        config = replace(config, steps=args.steps)
    if args.max_epochs is not None:
        if config.steps:
            raise ConfigError(f"--max-epochs applies to an early-stopped CLUB, not {config.name} (use --steps)")
        config = replace(config, max_epochs=args.max_epochs)
    if min(config.steps or 1, config.max_epochs) < 1:
        raise ConfigError("--steps and --max-epochs must be at least 1")
    return config


def main_emi(args: argparse.Namespace) -> int:
    from vittle_bench.config import ConfigError
    from vittle_bench.metrics.club import ClubEstimator
    from vittle_bench.metrics.emi import emi_estimate, fit_pooled

    data = _load_npz(args.embeddings)
    info: dict = {}
    if args.estimator:
        estimator = ClubEstimator.load(args.estimator)
        info = {"fitted": False, "path": str(args.estimator)}
    else:
        config = _fit_config(args)
        try:
            estimator = fit_pooled([(data["x"], data["y_model"], data["y_ref"])], config)
        except ValueError as exc:  # e.g. too few rows to fit
            raise ConfigError(f"--embeddings {args.embeddings}: {exc}") from None
        info = {"fitted": True, **{k: v for k, v in estimator.history.items() if k != "val_nll"}}
    try:
        est = emi_estimate(estimator, data["x"], data["y_model"], data["y_ref"], seed=args.seed, n_boot=args.n_boot)
    except ValueError as exc:  # e.g. an estimator that takes other widths
        raise ConfigError(f"--embeddings {args.embeddings}: {exc}") from None
    if args.save_estimator:
        try:
            estimator.save(args.save_estimator)
        except OSError as exc:
            raise ConfigError(f"--save-estimator {args.save_estimator}: cannot write it ({exc.strerror})") from None
        info["saved"] = str(args.save_estimator)
        print(f"wrote {args.save_estimator}", file=sys.stderr)
    e = est["emi"]
    print(json.dumps({"emi": e.value, "ci_low": e.ci_low, "ci_high": e.ci_high,
                      "mi_model": est["mi_model"].value,
                      "mi_model_ci": [est["mi_model"].ci_low, est["mi_model"].ci_high],
                      "mi_ref": est["mi_ref"].value, "mi_ref_ci": [est["mi_ref"].ci_low, est["mi_ref"].ci_high],
                      "n": e.n, "confidence": 0.95, "n_boot": args.n_boot,
                      "estimator": {"name": estimator.name, "fingerprint": estimator.fingerprint, **info}}))
    return 0


def main_bound(args: argparse.Namespace) -> int:
    from vittle_bench.config import ConfigError, resolve_shifts, resolve_tasks
    from vittle_bench.data.sources import load_samples
    from vittle_bench.domains import DomainError, DomainResolver
    from vittle_bench.encoders import load_encoder_pair
    from vittle_bench.encoders.cache import EmbeddingCache
    from vittle_bench.metrics.emi_cells import input_embeddings
    from vittle_bench.metrics.emid_bound import representation_jsd
    from vittle_bench.run_plan import default_cache_dir

    include = [Path(p) for p in args.include_path]
    tasks = resolve_tasks(args.task, include)
    if len(tasks) != 1:
        raise ConfigError(f"--task {args.task}: name one task (it selects {len(tasks)})")
    spec = tasks[0]
    conditions = resolve_shifts(args.shifts, include)
    cache_dir = args.cache_dir or default_cache_dir()
    domains = DomainResolver(include)
    try:
        domains.check(tasks, conditions)
    except DomainError as exc:
        raise ConfigError(str(exc)) from None

    def rows_of(condition: ShiftCondition) -> list[Sample] | None:
        """The rows the condition applies to: the task's own, or those a domain swaps in (None: not declared)."""
        rows = load_samples(spec, cache_dir, args.limit, args.data_dir) if condition.kind != "domain" else \
            domains.samples(spec, condition, cache_dir, args.limit, args.data_dir)
        return None if rows is None else [s for s in rows if not s.load_error]

    encoders = load_encoder_pair(args.image_encoder, args.text_encoder)
    results = []
    with EmbeddingCache(cache_dir / "embeddings.sqlite") as cache:
        def embedded(condition: ShiftCondition, rows: list[Sample]) -> tuple[np.ndarray, np.ndarray]:
            emb = input_embeddings(rows, condition, args.seed, encoders, cache)
            return np.stack([v[0] for v in emb.values()]), np.stack([v[1] for v in emb.values()])

        clean = next(c for c in conditions if c.label == "clean")
        clean_rows = rows_of(clean) or []
        if len(clean_rows) < 2:
            raise ConfigError(f"task {spec.task}: {len(clean_rows)} loadable samples, need at least 2")
        p_image, p_text = embedded(clean, clean_rows)
        for condition in conditions:
            rows = rows_of(condition) if condition.label != "clean" else None
            if not rows:  # clean itself, or a domain not declared for this task
                continue
            q_image, q_text = embedded(condition, rows)
            jsd_image, jsd_text = representation_jsd(p_image, q_image), representation_jsd(p_text, q_text)
            results.append({"shift": condition.label, "kind": condition.kind, "severity": condition.severity,
                            "n": len(rows), "jsd_image": jsd_image, "jsd_text": jsd_text,
                            "input_terms": jsd_image ** 0.5 + jsd_text ** 0.5})
    print(json.dumps({
        "task": spec.task, "n": len(clean_rows), "seed": args.seed,
        "encoders": {"image": encoders[0].name, "text": encoders[1].name},
        "terms": "input terms only: sqrt(JSD_image) + sqrt(JSD_question) between clean P and shifted Q; the bound's "
                 "answer terms JSD(model vs reference answers on P and Q)^(1/4) need model answers "
                 "(`vittle-bench run --metrics emi` reports the full bound as emid_bound)",
        "conditions": results}))
    return 0
