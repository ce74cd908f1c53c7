"""The Model base class and model specs of the form `scheme:name` (the scheme picks the backend).

A backend is a `Model` subclass registered under its scheme: `load(name, **model_args)` builds the model a run
evaluates, `validate_name(name, **model_args)` fails before anything loads when the model cannot be had
(default: nothing to check), and the instance answers `generate`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from vittle_bench.errors import ConfigError
from vittle_bench.registry import PluginError, Registry, UnknownNameError
from vittle_bench.schema import Request


class Model:
    name: str
    fingerprint: str  # identifies weights + settings; part of every cache key
    fingerprint_info: dict[str, Any] | None = None  # what the fingerprint hashes, recorded in manifest.json

    @classmethod
    def load(cls, name: str, **model_args: Any) -> Model:
        raise NotImplementedError(f"{cls.__name__} does not say how to load {name!r}")

    @staticmethod
    def validate_name(name: str, **model_args: Any) -> None:
        """Raise a ConfigError (or UnknownNameError) when `name` cannot be had; the args say where to look."""

    @classmethod
    def load_identity(cls, name: str, **model_args: Any) -> dict[str, Any] | None:
        """Everything the loaded model's fingerprint depends on, found without loading it (the weights' content
        hash or hub commit, the args, library versions), so a run can look answers up by a fingerprint recorded
        for this identity and load the weights only if one is missing (`models/deferred.py`). None (the
        default): this backend cannot tell, so it is loaded first."""
        return None

    def ensure_loaded(self) -> None:
        """Load what `generate` needs if it is not loaded yet (a deferred model's weights). The runner calls it
        before generating, outside the per-sample isolation of `generate`'s failures: a model that cannot be
        loaded stops the run, as it would have at the start. Default: nothing to do."""

    def generate(self, requests: list[Request]) -> Sequence[str | Exception]:
        """Greedy answers, one per request, in order; a request that failed for good may come back as its
        exception (the runner records it as that sample's error and never caches it)."""
        raise NotImplementedError


MODELS: Registry[type[Model]] = Registry("models", ("vittle_bench.models.hf", "vittle_bench.builtin.model",
                                             "vittle_bench.models.openai"))


def split_spec(spec: str) -> tuple[str, str]:
    scheme, sep, name = spec.partition(":")
    if not sep or not name:
        raise UnknownNameError(f"model {spec!r} needs a scheme, e.g. builtin:tiny-llava or hf:llava-hf/llava-1.5-7b-hf "
                               f"(schemes: {', '.join(MODELS.names())})")
    return scheme, name


def model_backend(scheme: str) -> type[Model]:
    """The backend registered under `scheme`; a plugin's entry that is no Model subclass is refused in one line."""
    backend = MODELS.get(scheme)
    if not (isinstance(backend, type) and issubclass(backend, Model)):
        raise PluginError(f"model backend {scheme!r} ({backend!r}) is not a vittle_bench.models.base.Model subclass")
    return backend


def validate_model_spec(spec: str, model_args: dict[str, Any] | None = None) -> None:
    """Fail before anything loads: unknown scheme or (for backends that can tell) a model that cannot be had."""
    scheme, name = split_spec(spec)
    model_backend(scheme).validate_name(name, **(model_args or {}))


def load_model(spec: str, **model_args: Any) -> Model:
    scheme, name = split_spec(spec)
    return model_backend(scheme).load(name, **model_args)


def parse_model_args(text: str | None, flag: str = "--model-args") -> dict[str, Any]:
    """`dtype=bfloat16,device_map=auto,trust_remote_code=true` -> dict (true/false/ints converted); `flag`
    names the option in the error."""
    args: dict[str, Any] = {}
    for part in filter(None, (p.strip() for p in (text or "").split(","))):
        key, sep, value = part.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"{flag}: {part!r} is not key=value")
        lowered = value.lower()
        args[key.strip()] = True if lowered == "true" else False if lowered == "false" else \
            int(value) if value.isdigit() else value
    return args
