"""`vittle-bench tune`: add the Vittle bottleneck to a VLM and fine-tune it on LLaVA-format instruction data
(or, with --baseline, run the identical recipe without it). Multi-GPU and sharded training:
`accelerate launch --config_file CONFIG -m vittle_bench tune ...` (docs/tuning.md).
"""

from __future__ import annotations

import argparse
import os

from vittle_bench.config import ConfigError
from vittle_bench.tuning.recipes import DEFAULTS as D
from vittle_bench.tuning.recipes import OPTIONS, RECIPES, Resolved, resolve


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
    p.add_argument("--recipe", choices=sorted(RECIPES),
                   help="preset for every tuning option not given here (paper: the Vittle paper's; docs/protocol.md)")
    p.add_argument("--layer", type=_layer,
                   help=f"bottleneck layer for both modalities (index or fraction; default {D['visual_layer']})")
    p.add_argument("--visual-layer", type=_layer, help="layer for visual tokens (default: --layer)")
    p.add_argument("--text-layer", type=_layer, help="layer for text tokens (default: --layer)")
    p.add_argument("--beta", type=float, help=f"KL weight for each modality (default {D['beta']})")
    p.add_argument("--alpha-max", type=float, help=f"end of the alpha ramp (default {D['alpha_max']})")
    p.add_argument("--epochs", type=int, help=f"default {D['epochs']}")
    p.add_argument("--max-steps", type=int, help="optimiser steps (overrides --epochs)")
    p.add_argument("--lr", type=float, help=f"default {D['lr']}")
    p.add_argument("--batch-size", type=int,
                   help=f"per device; global = this x --grad-accum x processes (default {D['batch_size']})")
    p.add_argument("--grad-accum", type=int,
                   help=f"default {D['grad_accum']}; with a --recipe, derived from its global batch")
    p.add_argument("--warmup-ratio", type=float, help=f"default {D['warmup_ratio']}")
    p.add_argument("--weight-decay", type=float, help=f"default {D['weight_decay']}")
    p.add_argument("--max-length", type=int,
                   help=f"truncate longer conversations (never into images; default {D['max_length']})")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--mixed-precision", choices=("auto", "no", "bf16", "fp16"),
                   help="auto (the default): bf16 on GPUs that support it, else none")
    p.add_argument("--dtype", choices=("float32", "bfloat16", "float16"), help="weight dtype (default float32)")
    p.add_argument("--gradient-checkpointing", action="store_true")
    p.add_argument("--lora", metavar="SPEC",
                   help="train the decoder through LoRA adapters (needs the [tune] extra), e.g. r=16,alpha=32,"
                        "dropout=0.05,targets=q_proj,v_proj (default targets: every attention and MLP projection); "
                        "bits=4|8 quantizes the base (bitsandbytes, CUDA). The output is the merged model "
                        "(docs/tuning.md)")
    p.add_argument("--num-workers", type=int, default=None, help="data-loader workers (default: 0 on CPU, <=4 on GPU)")
    p.add_argument("--save-every", type=int, default=500, help="checkpoint every N optimiser steps (0: never)")
    p.add_argument("--keep-checkpoints", action="store_true", help="keep DIR/checkpoints after the final save")
    p.add_argument("--resume", action="store_true", help="continue from the last checkpoint in --output")
    p.set_defaults(func=main)


def _processes() -> tuple[int, bool]:
    """The launch's process count and whether this is its main process, as train()'s Accelerator sees them."""
    from accelerate import PartialState
    from accelerate.utils import parse_flag_from_env

    state = PartialState(cpu=parse_flag_from_env("ACCELERATE_USE_CPU"))
    return state.num_processes, state.is_main_process


def resolve_options(args: argparse.Namespace, num_processes: int = 1) -> Resolved:
    """The tuning options from the flags given, the --recipe and the defaults, in that order of precedence."""
    for name in ("epochs", "batch_size", "grad_accum", "max_steps"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise ConfigError(f"--{name.replace('_', '-')} must be at least 1")
    given = {name: getattr(args, name) for name in OPTIONS}
    for name in ("visual_layer", "text_layer"):
        if given[name] is None:
            given[name] = args.layer
    return resolve(args.recipe, given, num_processes)


def main(args: argparse.Namespace) -> int:
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # spin-waiting threads slow CPU training under load
    if args.recipe is None:
        resolved = resolve_options(args)
    else:
        num_processes, is_main = _processes()
        resolved = resolve_options(args, num_processes)
        if is_main:
            print("\n".join(resolved.describe()), flush=True)
    from vittle_bench.tuning.train import TuneConfig, train

    v = resolved.values
    cfg = TuneConfig(
        model=args.model, data=args.data, output=args.output, image_folder=args.image_folder, prior=args.prior,
        baseline=args.baseline, visual_layer=v["visual_layer"], text_layer=v["text_layer"], beta=v["beta"],
        alpha_max=v["alpha_max"], epochs=v["epochs"], lr=v["lr"], batch_size=v["batch_size"],
        grad_accum=v["grad_accum"], max_steps=args.max_steps, warmup_ratio=v["warmup_ratio"],
        weight_decay=v["weight_decay"], max_length=v["max_length"], seed=args.seed,
        mixed_precision=v["mixed_precision"], dtype=v["dtype"], gradient_checkpointing=args.gradient_checkpointing,
        lora=args.lora,
        num_workers=_default_workers() if args.num_workers is None else args.num_workers, save_every=args.save_every,
        keep_checkpoints=args.keep_checkpoints, resume=args.resume, recipe_name=args.recipe,
        sources=resolved.sources)
    train(cfg)
    return 0
