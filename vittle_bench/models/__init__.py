"""Models: `builtin:NAME` (packaged tiny LLaVA and its Vittle twins) and `hf:ID_OR_PATH` (any HF VLM)."""

from vittle_bench.models.base import MODELS, Model, load_model, parse_model_args

__all__ = ["MODELS", "Model", "load_model", "parse_model_args"]
