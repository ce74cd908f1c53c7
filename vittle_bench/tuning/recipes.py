"""Named hyper-parameter presets for `vittle-bench tune --recipe NAME`, and the rule that resolves every tuning
option to one value and its source.

An option the user gave on the command line wins (source ``flag``); otherwise the recipe's value (``preset``);
otherwise the command's default (``default``). A recipe with a global batch fixes the per-device batch
(``--batch-size``, else the recipe's) and derives ``--grad-accum`` so that per-device batch x grad-accum x
processes equals the global batch; a global batch that does not divide is a ConfigError. Given both
``--batch-size`` and ``--grad-accum``, the global batch is what they make.

Pure Python (no torch): the CLI resolves and prints the recipe before anything heavy loads.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from vittle_bench.errors import ConfigError

# The tuning options a recipe may set, in the order they are printed.
OPTIONS = ("visual_layer", "text_layer", "beta", "alpha_max", "lr", "epochs", "batch_size", "grad_accum",
           "warmup_ratio", "weight_decay", "max_length", "mixed_precision", "dtype")

# `vittle-bench tune` without --recipe; equal to TuneConfig's defaults.
DEFAULTS: dict[str, Any] = {
    "visual_layer": 0.75, "text_layer": 0.75, "beta": 0.1, "alpha_max": 0.5, "lr": 2e-5, "epochs": 1,
    "batch_size": 4, "grad_accum": 1, "warmup_ratio": 0.03, "weight_decay": 0.0, "max_length": 2048,
    "mixed_precision": "auto", "dtype": "float32"}


@dataclass(frozen=True)
class Recipe:
    """A preset: option values (a subset of OPTIONS; ``grad_accum`` is derived when ``global_batch`` is set)."""

    name: str
    description: str
    values: dict[str, Any]
    global_batch: int | None = None
    fixed: dict[str, str] = field(default_factory=dict)  # parts of the recipe the trainer always does


# The Vittle paper's stage-2 recipe. Sources (docs/protocol.md has the table with line numbers): the authors'
# scripts/_finetune_vittle.sh and vittle/train/train.py (deeplearning-wisc/vittle), LLaVA-1.5's
# scripts/v1_5/finetune.sh and README hyper-parameter table (haotian-liu/LLaVA).
PAPER = Recipe(
    name="paper",
    description="Vittle paper, LLaVA-1.5 stage 2 (deeplearning-wisc/vittle scripts/_finetune_vittle.sh)",
    values={
        # `layer-24`: 0-based decoder layer 24 of Vicuna-7B's 32; 0.75 resolves to it and scales to other depths
        "visual_layer": 0.75, "text_layer": 0.75,
        "beta": 0.1,  # ib_strength_v = ib_strength_t
        "alpha_max": 0.5,  # ib_fadein_end, the end of the sigmoid alpha ramp
        "lr": 2e-5, "epochs": 1, "warmup_ratio": 0.03, "weight_decay": 0.0,
        "max_length": 2048,  # model_max_length
        "batch_size": 16,  # per_device_train_batch_size; with 8 GPUs and no accumulation: 128
        # --bf16 True under DeepSpeed ZeRO-3: bf16 compute with fp32 master weights and optimizer states. Here:
        # fp32 weights under bf16 autocast. bf16 weights would take AdamW steps without an fp32 master copy.
        "mixed_precision": "bf16", "dtype": "float32",
    },
    global_batch=128,
    fixed={"lr schedule": "cosine with linear warm-up", "optimizer": "AdamW", "vision tower": "frozen"},
)

RECIPES: dict[str, Recipe] = {PAPER.name: PAPER}


@dataclass
class Resolved:
    """Every option's value and source (``flag``, ``preset`` or ``default``), and the global batch."""

    recipe: str | None
    values: dict[str, Any]
    sources: dict[str, str]
    num_processes: int

    @property
    def global_batch(self) -> int:
        return self.values["batch_size"] * self.values["grad_accum"] * self.num_processes

    def describe(self) -> list[str]:
        """The printed table: each option, its value and source, then the recipe's fixed parts (the trainer
        always does them) and the global batch."""
        rows = [(name, _show(self.values[name]), self.sources[name]) for name in OPTIONS]
        if self.recipe is not None:
            rows += [(part, value, "fixed") for part, value in RECIPES[self.recipe].fixed.items()]
        rows.append(("global batch", f"{self.global_batch} = {self.values['batch_size']} x "
                     f"{self.values['grad_accum']} x {self.num_processes} process(es)", ""))
        name_w, value_w = (max(len(r[i]) for r in rows[:-1]) for i in (0, 1))
        head = f"recipe {self.recipe}: {RECIPES[self.recipe].description}" if self.recipe else "recipe: none"
        return [head] + [f"  {n:<{name_w}}  {v:<{value_w}}  {s}".rstrip() for n, v, s in rows]


def _show(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def resolve(recipe: str | None, given: dict[str, Any], num_processes: int = 1) -> Resolved:
    """Resolve OPTIONS: ``given`` maps an option to the value typed on the command line, or None when the user
    did not give it. ``num_processes`` (the launch's process count) is needed to derive grad-accum."""
    unknown = set(given) - set(OPTIONS)
    if unknown:
        raise ValueError(f"not tuning options: {sorted(unknown)}")
    preset = RECIPES[recipe] if recipe is not None else None
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for name in OPTIONS:
        if given.get(name) is not None:
            values[name], sources[name] = given[name], "flag"
        elif preset is not None and name in preset.values:
            values[name], sources[name] = preset.values[name], "preset"
        else:
            values[name], sources[name] = DEFAULTS[name], "default"
    if preset is not None and preset.global_batch is not None and given.get("grad_accum") is None:
        per_step = values["batch_size"] * num_processes
        if per_step < 1 or preset.global_batch % per_step:
            raise ConfigError(
                f"--recipe {preset.name} needs a global batch of {preset.global_batch} = --batch-size x --grad-accum "
                f"x processes, and {preset.global_batch} is not a multiple of {values['batch_size']} x "
                f"{num_processes} process(es); choose another --batch-size (or give --grad-accum)")
        values["grad_accum"], sources["grad_accum"] = preset.global_batch // per_step, "preset"
    return Resolved(recipe, values, sources, num_processes)
