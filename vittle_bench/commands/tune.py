"""`vittle-bench tune`: add the Vittle bottleneck to a VLM and fine-tune it on LLaVA-format instruction data
(or, with --baseline, run the identical recipe without it). Multi-GPU: `accelerate launch -m vittle_bench tune ...`.
"""

from __future__ import annotations

import argparse
import os

from vittle_bench.config import ConfigError


def _layer(text: str) -> float | int:
    """'24' -> decoder layer 24; '0.75' -> three quarters of the depth."""
    try:
        return int(text)
    except ValueError:
        try:
            return float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"layer must be an index or a depth fraction, got {text!r}") from None


def _default_workers() -> int:
    import torch

    return min(4, (os.cpu_count() or 1) // 2) if torch.cuda.is_available() else 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("tune", help="add the Vittle bottleneck to a VLM and fine-tune it (or --baseline without it)",
                       description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True, help="hf:ID_OR_PATH or builtin:NAME")
    p.add_argument("--data", required=True, help="LLaVA-format JSON / JSONL (e.g. llava_v1_5_mix665k.json)")
    p.add_argument("--image-folder", help="root of the rows' relative image paths (default: the data file's folder)")
    p.add_argument("--output", required=True, help="directory for the tuned checkpoint (loadable as hf:DIR)")
    p.add_argument("--prior", choices=("fixed", "learnable"), default="fixed", help="Vittle(F) or Vittle(L)")
    p.add_argument("--baseline", action="store_true", help="same recipe without the bottleneck")
    p.add_argument("--layer", type=_layer, default=0.75,
                   help="bottleneck layer for both modalities (index or fraction)")
    p.add_argument("--visual-layer", type=_layer, help="layer for visual tokens (default: --layer)")
    p.add_argument("--text-layer", type=_layer, help="layer for text tokens (default: --layer)")
    p.add_argument("--beta", type=float, default=0.1, help="KL weight for each modality")
    p.add_argument("--alpha-max", type=float, default=0.5)
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--max-steps", type=int, help="optimiser steps (overrides --epochs)")
    p.add_argument("--lr", type=float, default=2e-5)
    p.add_argument("--batch-size", type=int, default=4, help="per device; global = this x --grad-accum x processes")
    p.add_argument("--grad-accum", type=int, default=1)
    p.add_argument("--warmup-ratio", type=float, default=0.03)
    p.add_argument("--weight-decay", type=float, default=0.0)
    p.add_argument("--max-length", type=int, default=2048, help="truncate longer conversations (never into images)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--mixed-precision", choices=("auto", "no", "bf16", "fp16"), default="auto",
                   help="auto: bf16 on GPUs that support it, else none")
    p.add_argument("--dtype", choices=("float32", "bfloat16", "float16"), default="float32", help="weight dtype")
    p.add_argument("--gradient-checkpointing", action="store_true")
    p.add_argument("--num-workers", type=int, default=None, help="data-loader workers (default: 0 on CPU, <=4 on GPU)")
    p.add_argument("--save-every", type=int, default=500, help="checkpoint every N optimiser steps (0: never)")
    p.add_argument("--keep-checkpoints", action="store_true", help="keep DIR/checkpoints after the final save")
    p.add_argument("--resume", action="store_true", help="continue from the last checkpoint in --output")
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # spin-waiting threads slow CPU training under load
    from vittle_bench.tuning.train import TuneConfig, train

    for name in ("epochs", "batch_size", "grad_accum"):
        if getattr(args, name) < 1:
            raise ConfigError(f"--{name.replace('_', '-')} must be at least 1")
    if args.max_steps is not None and args.max_steps < 1:
        raise ConfigError("--max-steps must be at least 1")
    cfg = TuneConfig(
        model=args.model, data=args.data, output=args.output, image_folder=args.image_folder, prior=args.prior,
        baseline=args.baseline, visual_layer=args.layer if args.visual_layer is None else args.visual_layer,
        text_layer=args.layer if args.text_layer is None else args.text_layer, beta=args.beta,
        alpha_max=args.alpha_max, epochs=args.epochs, lr=args.lr, batch_size=args.batch_size,
        grad_accum=args.grad_accum, max_steps=args.max_steps, warmup_ratio=args.warmup_ratio,
        weight_decay=args.weight_decay, max_length=args.max_length, seed=args.seed,
        mixed_precision=args.mixed_precision, dtype=args.dtype, gradient_checkpointing=args.gradient_checkpointing,
        num_workers=_default_workers() if args.num_workers is None else args.num_workers, save_every=args.save_every,
        keep_checkpoints=args.keep_checkpoints, resume=args.resume)
    train(cfg)
    return 0
