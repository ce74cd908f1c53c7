"""What the bottleneck adds to a model's size: its parameter count from the hidden size alone, and the fraction of a
configured model (built on the meta device, so nothing is allocated)."""

from __future__ import annotations

from typing import Any

import torch

from .bottleneck import VittleConfig


def count_bottleneck_parameters(hidden_size: int, modalities: int = 2, prior: str = "fixed") -> int:
    """Extra parameters: per modality a head of 3d^2 + 3d weights (+ 2d for a learnable prior)."""
    d = hidden_size
    return modalities * (3 * d * d + 3 * d + (2 * d if prior == "learnable" else 0))


def bottleneck_parameter_fraction(model_config: Any, vittle_config: VittleConfig | None = None) -> float:
    """Extra-parameter fraction of Vittle on a model described by an HF config (paper: ~1.5 % for
    LLaVA-1.5-7B). The model is built on the ``meta`` device, so no weights are allocated."""
    from transformers import AutoModelForCausalLM, AutoModelForImageTextToText

    vittle_config = vittle_config or VittleConfig()
    with torch.device("meta"):
        try:
            model = AutoModelForImageTextToText.from_config(model_config)
        except ValueError:
            model = AutoModelForCausalLM.from_config(model_config)
    base = sum(p.numel() for p in model.parameters())
    hidden = model_config.get_text_config().hidden_size
    return count_bottleneck_parameters(hidden, 2, vittle_config.prior) / base
