"""`builtin:` models: the tiny LLaVA and its Vittle twins, committed under vittle_bench/weights/ and served
by the ordinary `hf:` adapter (their directories are plain save_pretrained checkpoints). They are prompted with
their own chat template, the one they were trained with, unless `prompt_profile` says otherwise."""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path
from typing import Any

from vittle_bench.models.base import MODELS, Model
from vittle_bench.models.hf import HFModel, checkpoint_identity
from vittle_bench.registry import UnknownNameError, unknown_name_message

BUILTIN_MODELS = ("tiny-llava", "tiny-llava-vittle-f", "tiny-llava-vittle-l")


def weights_dir(name: str) -> Path:
    return Path(str(files("vittle_bench") / "weights" / name))


@MODELS.register("builtin")
class BuiltinModel(Model):
    @staticmethod
    def validate_name(name: str, **model_args: Any) -> None:
        if name not in BUILTIN_MODELS:
            raise UnknownNameError(unknown_name_message("models", f"builtin:{name}",
                                                        [f"builtin:{m}" for m in BUILTIN_MODELS]))
        if not (weights_dir(name) / "model.safetensors").is_file():
            raise UnknownNameError(f"builtin:{name} has no weights at {weights_dir(name)}; "
                                   "run `vittle-bench train-builtin`")

    @classmethod
    def load(cls, name: str, **kwargs: Any) -> HFModel:
        cls.validate_name(name)
        return HFModel(f"builtin:{name}", str(weights_dir(name)), **{"prompt_profile": "chat_template", **kwargs})

    @classmethod
    def load_identity(cls, name: str, **model_args: Any) -> dict[str, Any] | None:
        cls.validate_name(name)
        return checkpoint_identity(f"builtin:{name}", str(weights_dir(name)),
                                   {"prompt_profile": "chat_template", **model_args})
