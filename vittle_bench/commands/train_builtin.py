"""`vittle-bench train-builtin`: reproduce the committed weights of the built-in models."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from vittle_bench.config import ConfigError


def register(sub: argparse._SubParsersAction) -> None:
    train = sub.add_parser("train-builtin", help="reproduce the built-in models' committed weights (CPU, see README)")
    train.add_argument("--variants", default="tiny-llava,tiny-llava-vittle-f,tiny-llava-vittle-l")
    train.add_argument("--output", help="directory for the checkpoints (default: the package's weights directory)")
    train.add_argument("--seed", type=int, default=0)
    train.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # spin-waiting threads slow CPU training 10x under load
    from vittle_bench.builtin.model import weights_dir
    from vittle_bench.builtin.recipe import Recipe
    from vittle_bench.builtin.training import VARIANTS, train_builtin

    variants = [v for v in args.variants.split(",") if v]
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        raise ConfigError(f"unknown variant(s) {unknown}; choose from {', '.join(VARIANTS)}")
    output = Path(args.output) if args.output else weights_dir("tiny-llava").parent
    train_builtin(output, variants, Recipe(seed=args.seed), stage1_checkpoint=output / "stage1.pt")
    return 0
