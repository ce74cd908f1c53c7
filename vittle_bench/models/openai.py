"""`openai:` models: any OpenAI-compatible chat-completions endpoint (OpenAI, vLLM, SGLang, ...).

This is how a model served by vLLM or SGLang is evaluated at full speed: requests go out concurrently from a
bounded thread pool, images travel as base64 PNG data URLs, and 429 / 5xx / timeouts / malformed replies are
retried with exponential backoff (honouring Retry-After). A request that still fails comes back as an
exception *in its slot* of the answer list, so the runner records that one sample as an error (never caches
it, never scores it) while the rest of the batch stands.

Model args: base_url (default: $OPENAI_BASE_URL, else https://api.openai.com/v1), api_key (default:
$OPENAI_API_KEY; none is sent when neither is set, as local servers need none), concurrency (8),
max_retries (4), timeout (seconds, 120), backoff (first retry delay in seconds, 1.0), temperature (0).

The client, its retries and the key's redaction live in vittle_bench/openai_client.py, shared with the LLM judges.
The key lives only in memory: it is never part of the fingerprint, the name, a log line or an error message.
"""

from __future__ import annotations

import hashlib
import json
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from vittle_bench.errors import ConfigError
from vittle_bench.models.base import MODELS, Model
from vittle_bench.openai_client import ChatClient, RequestFailed, image_data_url, public_url
from vittle_bench.schema import Request


def _positive_int(name: str, value: Any) -> int:
    try:
        number = int(value)
    except (TypeError, ValueError):
        number = 0
    if number < 1 and not (name == "max_retries" and number == 0):
        raise ConfigError(f"{name} must be a positive integer, not {value!r}")
    return number


@MODELS.register("openai")
class OpenAIModel(Model):
    """An OpenAI-compatible chat model; greedy means temperature 0 (what the server does with it is the
    server's business: vLLM and SGLang decode greedily at temperature 0)."""

    def __init__(self, model: str, base_url: str | None = None, api_key: str | None = None, concurrency: int = 8,
                 max_retries: int = 4, timeout: float = 120.0, backoff: float = 1.0, temperature: float = 0.0,
                 device: str | None = None, **unknown: Any) -> None:
        # `device` is what the runner hands every model in a multi-process run; an endpoint has no use for it.
        if unknown:
            raise ConfigError(f"openai:{model}: unknown --model-args {sorted(unknown)}; openai: models take base_url, "
                              "api_key, concurrency, max_retries, timeout, backoff, temperature")
        self.model = model
        self.name = f"openai:{model}"
        self.client = ChatClient(base_url, api_key, float(timeout), _positive_int("max_retries", max_retries),
                                 float(backoff))
        self.concurrency = _positive_int("concurrency", concurrency)
        self.temperature = float(temperature)
        self.fingerprint_info = {"adapter": "openai/1", "name": self.name, "base_url": public_url(self.client.base_url),
                                 "temperature": self.temperature, "image_encoding": "png-data-url"}
        self.fingerprint = hashlib.sha256(json.dumps(self.fingerprint_info, sort_keys=True).encode()).hexdigest()[:16]

    @classmethod
    def load(cls, name: str, **kwargs: Any) -> OpenAIModel:
        return cls(name, **kwargs)

    def payload(self, request: Request) -> dict[str, Any]:
        content: list[dict[str, Any]] = [{"type": "image_url", "image_url": {"url": image_data_url(image)}}
                                         for image in request.images]
        content.append({"type": "text", "text": request.prompt})
        return {"model": self.model, "messages": [{"role": "user", "content": content}],
                "max_tokens": request.max_new_tokens, "temperature": self.temperature}

    def _one(self, request: Request) -> str | Exception:
        try:
            return self.client.complete(self.payload(request)).strip()
        except RequestFailed as exc:
            return exc

    def generate(self, requests: list[Request]) -> list[str | Exception]:
        """Answers in request order; a request that failed for good is a RequestFailed in its slot."""
        if not requests:
            return []
        with ThreadPoolExecutor(max_workers=min(self.concurrency, len(requests))) as pool:
            return list(pool.map(self._one, requests))
