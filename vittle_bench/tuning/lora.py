"""LoRA for `vittle-bench tune --lora`: the decoder is trained through low-rank adapters (Hugging Face `peft`), while
the Vittle bottleneck and the vision-language connector (LLaVA's projector, Idefics3's connector, ...) train fully,
as LLaVA's own LoRA recipe trains its projector; the vision tower stays frozen.

The adapters go on the decoder layers' linear modules named in ``targets`` (default: every attention and MLP
projection, LLaVA's `finetune_lora.sh` choice), matched by full module name, so a vision tower with modules of
the same names is never adapted. The output directory holds the merged model (``hf:DIR`` loads it without peft)
and the adapter alone under ``adapter/`` (for sharing or stacking; ``peft`` loads it onto the base model).

A 4- or 8-bit base (``bits=4`` / ``bits=8``, QLoRA) needs bitsandbytes and a CUDA GPU; the connector, which trains
fully, stays in full precision (the frozen linear layers are quantized), and the merged model is written from the
base reloaded unquantized (merging into 4-bit weights would round the adapters away).
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import torch
from torch import nn

from vittle_bench.errors import ConfigError
from vittle_bench.vittle.bottleneck import BOTTLENECK_ATTR, resolve_decoder_layers

ADAPTER_DIR = "adapter"
DEFAULT_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
ALL_LINEAR = "all-linear"


@dataclass(frozen=True)
class LoraSpec:
    """``--lora r=16,alpha=32,dropout=0.05,targets=q_proj,v_proj,bits=4``; ``targets=all-linear`` adapts every
    linear module of the decoder layers."""

    r: int = 16
    alpha: float = 32.0
    dropout: float = 0.05
    targets: tuple[str, ...] = DEFAULT_TARGETS
    bits: int | None = None


def parse_lora(text: str) -> LoraSpec:
    """Parse the ``--lora`` value; names after ``targets=`` continue its list until the next ``key=``."""
    values: dict[str, Any] = {}
    key = None
    for part in (p.strip() for p in text.split(",") if p.strip()):
        if "=" in part:
            key, value = (s.strip() for s in part.split("=", 1))
            if key not in ("r", "alpha", "dropout", "targets", "bits"):
                raise ConfigError(f"--lora: unknown key {key!r}; expected r, alpha, dropout, targets, bits")
            values[key] = [value] if key == "targets" else value
        elif key == "targets":
            values["targets"].append(part)
        else:
            raise ConfigError(f"--lora: {part!r} is not KEY=VALUE (e.g. r=16,alpha=32,targets=q_proj,v_proj)")
    try:
        spec = LoraSpec(r=int(values.get("r", 16)), alpha=float(values.get("alpha", 32)),
                        dropout=float(values.get("dropout", 0.05)),
                        targets=tuple(values.get("targets", DEFAULT_TARGETS)),
                        bits=int(values["bits"]) if "bits" in values else None)
    except ValueError:
        raise ConfigError(f"--lora {text!r}: r and bits are integers, alpha and dropout numbers") from None
    if spec.r < 1 or spec.alpha <= 0 or not 0 <= spec.dropout < 1 or spec.bits not in (None, 4, 8):
        raise ConfigError(f"--lora {text!r}: needs r >= 1, alpha > 0, 0 <= dropout < 1 and bits 4 or 8")
    return spec


def load_peft() -> ModuleType:
    """peft, imported only when --lora is given: it is the optional `[tune]` extra, so a missing install is a
    one-line remedy instead of an import error for every other command."""
    try:
        return importlib.import_module("peft")
    except ImportError:
        raise ConfigError("--lora needs peft: pip install 'vittle-bench[tune]'") from None


def bitsandbytes_available() -> bool:
    return importlib.util.find_spec("bitsandbytes") is not None


def quantization_config(spec: LoraSpec, skip: list[str]) -> Any:
    """transformers' BitsAndBytesConfig for a quantized base, leaving the ``skip`` modules (all but the decoder)
    unquantized; None without ``bits``. Refused in one line where bitsandbytes or CUDA is missing."""
    if spec.bits is None:
        return None
    if not bitsandbytes_available():
        raise ConfigError(f"--lora bits={spec.bits} needs bitsandbytes (pip install bitsandbytes); drop bits= to "
                          "train the adapters on an unquantized base")
    if not torch.cuda.is_available():
        raise ConfigError(f"--lora bits={spec.bits} needs a CUDA GPU; drop bits= to train on this machine")
    from transformers import BitsAndBytesConfig

    if spec.bits == 4:
        return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                                  bnb_4bit_compute_dtype=torch.bfloat16, llm_int8_skip_modules=skip)
    return BitsAndBytesConfig(load_in_8bit=True, llm_int8_skip_modules=skip)


def decoder_prefix(model: nn.Module) -> str:
    """The qualified name of the decoder-layer list (e.g. ``model.language_model.layers``)."""
    layers = resolve_decoder_layers(model)
    return next(name for name, module in model.named_modules() if module is layers)


def target_modules(model: nn.Module, targets: tuple[str, ...]) -> list[str]:
    """Full names of the decoder layers' linear modules to adapt."""
    prefix = decoder_prefix(model) + "."
    names = [name for name, module in model.named_modules()
             if name.startswith(prefix) and isinstance(module, nn.Linear)
             and (targets == (ALL_LINEAR,) or name.rsplit(".", 1)[-1] in targets)]
    if not names:
        raise ConfigError(f"--lora targets={','.join(targets)}: no linear module of that name in the decoder layers "
                          f"of {type(model).__name__} ({prefix}N.*)")
    return names


def connector_linears(model: nn.Module, frozen: set[int]) -> list[str]:
    """Full names of the linear modules outside the decoder, the output head and the ``frozen`` parameters (the
    vision tower): the connector and other fully-trained parts, which a quantized base keeps in full precision.
    Works on a model built on the meta device, before the quantized one loads."""
    lm = _language_model_parameters(model)
    return [name for name, module in model.named_modules() if isinstance(module, nn.Linear)
            and not any(id(p) in lm or id(p) in frozen for p in module.parameters())]


def _language_model_parameters(model: nn.Module) -> set[int]:
    decoder = model.get_decoder()  # type: ignore[operator]
    head = model.get_output_embeddings()  # type: ignore[operator]
    return {id(p) for m in (decoder, head) if isinstance(m, nn.Module) for p in m.parameters()}


def apply_lora(model: nn.Module, spec: LoraSpec) -> nn.Module:
    """Wrap `model` in peft's LoRA: adapters on the decoder's target modules; what was trainable outside the
    decoder and the output head (the connector, the bottleneck) stays fully trainable. Returns the PeftModel."""
    peft = load_peft()
    names = target_modules(model, spec.targets)
    lm = _language_model_parameters(model)
    full = [p for p in model.parameters() if p.requires_grad and id(p) not in lm]
    if spec.bits is not None:
        model = peft.prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
    config = peft.LoraConfig(r=spec.r, lora_alpha=spec.alpha, lora_dropout=spec.dropout, target_modules=names,
                             bias="none")
    wrapped = peft.get_peft_model(model, config)  # adapters in float32 (peft's autocast_adapter_dtype)
    for p in full:
        p.requires_grad_(True)
    return wrapped


def merged_for_saving(wrapped: nn.Module, spec: LoraSpec, adapter_dir: Path,
                      reload_base: Callable[[], nn.Module]) -> nn.Module:
    """The model with the adapters merged into the decoder's weights, for ``save_pretrained`` (the bottleneck is
    saved apart, by ``save_vittle``). A quantized base is reloaded unquantized (``reload_base``), given the
    fully-trained weights of the trained model, and the saved adapter merged into it."""
    if spec.bits is None:
        return wrapped.merge_and_unload()  # type: ignore[operator]
    trained = wrapped.get_base_model()  # type: ignore[operator]
    lm = _language_model_parameters(trained)
    full = {name for name, p in trained.named_parameters() if p.requires_grad and id(p) not in lm
            and "lora_" not in name and not name.startswith(BOTTLENECK_ATTR + ".")}
    base = reload_base()
    kept = {k: v.detach().to("cpu") for k, v in trained.state_dict().items() if k in full}
    base.load_state_dict(kept, strict=False)
    return load_peft().PeftModel.from_pretrained(base, str(adapter_dir)).merge_and_unload()
