"""The Model contract and model specs of the form `scheme:name` (the scheme picks the adapter)."""

from __future__ import annotations

from typing import Any, Protocol

from vittle_bench.errors import ConfigError
from vittle_bench.registry import Registry, UnknownNameError
from vittle_bench.schema import Request


class Model(Protocol):
    name: str
    fingerprint: str  # identifies weights + settings; part of every cache key

    def generate(self, requests: list[Request]) -> list[str | Exception]:
        """Greedy answers, one per request, in order; a request that failed for good may come back as its
        exception (the runner records it as that sample's error and never caches it)."""
        ...


MODELS: Registry[Any] = Registry("models", ("vittle_bench.models.hf", "vittle_bench.builtin.model",
                                             "vittle_bench.models.openai"))


def split_spec(spec: str) -> tuple[str, str]:
    scheme, sep, name = spec.partition(":")
    if not sep or not name:
        raise UnknownNameError(f"model {spec!r} needs a scheme, e.g. builtin:tiny-llava or hf:llava-hf/llava-1.5-7b-hf "
                               f"(schemes: {', '.join(MODELS.names())})")
    return scheme, name


def validate_model_spec(spec: str, model_args: dict[str, Any] | None = None) -> None:
    """Fail before anything loads: unknown scheme or (for schemes that can tell) a model that cannot be had.
    `validate_name(name, **model_args)` is optional for a model adapter; the args say where to look (e.g. a
    hub cache directory, a revision)."""
    scheme, name = split_spec(spec)
    adapter = MODELS.get(scheme)
    check = getattr(adapter, "validate_name", None)
    if check:
        check(name, **(model_args or {}))


def load_model(spec: str, **model_args: Any) -> Model:
    scheme, name = split_spec(spec)
    return MODELS.get(scheme).load(name, **model_args)


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
