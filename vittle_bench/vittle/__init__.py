"""Vittle: the Visual Instruction Bottleneck as a hook-based add-on to Hugging Face MLLMs."""

from .bottleneck import (
    InstructionBottleneck,
    PosteriorHead,
    VittleConfig,
    VittleHandle,
    attach_bottleneck,
    get_vittle_handle,
    kl_position_counts,
    load_vittle_if_present,
    resolve_decoder_layers,
    resolve_layer_index,
    save_vittle,
)
from .priors import FixedGaussianPrior, LearnableGaussianPrior, build_prior, gaussian_kl
from .sizes import bottleneck_parameter_fraction, count_bottleneck_parameters

__all__ = [
    "FixedGaussianPrior",
    "InstructionBottleneck",
    "LearnableGaussianPrior",
    "PosteriorHead",
    "VittleConfig",
    "VittleHandle",
    "attach_bottleneck",
    "bottleneck_parameter_fraction",
    "build_prior",
    "count_bottleneck_parameters",
    "gaussian_kl",
    "get_vittle_handle",
    "kl_position_counts",
    "load_vittle_if_present",
    "resolve_decoder_layers",
    "resolve_layer_index",
    "save_vittle",
]
