"""`openai:` models: any OpenAI-compatible chat-completions endpoint (OpenAI, vLLM, SGLang, ...).

This is how a model served by vLLM or SGLang is evaluated at full speed: requests go out concurrently from a
bounded thread pool, images travel as base64 PNG data URLs, and 429 / 5xx / timeouts / malformed replies are
retried with exponential backoff (honouring Retry-After). A request that still fails comes back as an
exception *in its slot* of the answer list, so the runner records that one sample as an error (never caches
it, never scores it) while the rest of the batch stands.

Model args: base_url (default: $OPENAI_BASE_URL, else https://api.openai.com/v1), api_key (default:
$OPENAI_API_KEY; none is sent when neither is set, as local servers need none), concurrency (8),
max_retries (4), timeout (seconds, 120), backoff (first retry delay in seconds, 1.0), temperature (0).

The key lives only in memory: it is never part of the fingerprint, the name, a log line or an error message
(messages are scrubbed of it), and `redact_model_args` / `redact_text` let the run directory drop it too.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import random
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from PIL import Image

from vittle_bench.errors import ConfigError
from vittle_bench.models.base import MODELS
from vittle_bench.schema import Request, image_to_png_bytes

log = logging.getLogger(__name__)

DEFAULT_BASE_URL = "https://api.openai.com/v1"
SECRET_ARGS = frozenset({"api_key"})
RETRYABLE_STATUS = frozenset({408, 409, 425, 429})  # plus every 5xx
REDACTED = "<redacted>"


def redact_model_args(args: dict[str, Any]) -> dict[str, Any]:
    """Model/judge args fit for manifest.json: secret values replaced."""
    return {k: (REDACTED if k in SECRET_ARGS else v) for k, v in args.items()}


def redact_text(text: str, args: dict[str, Any]) -> str:
    """`text` (e.g. the recorded command line) with every secret value from `args` replaced."""
    for key in SECRET_ARGS:
        value = args.get(key)
        if value:
            text = text.replace(str(value), REDACTED)
    return text


def public_url(url: str) -> str:
    """The URL without any user:password part (it may carry a credential) and without a trailing slash."""
    parts = urlsplit(url.rstrip("/"))
    if not parts.hostname:
        return "<not a URL>"
    return urlunsplit(parts._replace(netloc=parts.hostname + (f":{parts.port}" if parts.port else "")))


def image_data_url(image: Image.Image) -> str:
    if image.mode not in ("RGB", "RGBA", "L"):
        image = image.convert("RGB")
    return "data:image/png;base64," + base64.b64encode(image_to_png_bytes(image)).decode("ascii")


class RequestFailed(RuntimeError):
    """A chat-completions request that failed for good (after its retries, or on a non-retryable status)."""


class ChatClient:
    """POST {base_url}/chat/completions with retries and backoff; thread-safe; counts what happened."""

    def __init__(self, base_url: str | None = None, api_key: str | None = None, timeout: float = 120.0,
                 max_retries: int = 4, backoff: float = 1.0, max_backoff: float = 60.0) -> None:
        self.base_url = (base_url or os.environ.get("OPENAI_BASE_URL") or DEFAULT_BASE_URL).rstrip("/")
        if urlsplit(self.base_url).scheme not in ("http", "https") or not urlsplit(self.base_url).hostname:
            raise ConfigError(f"base_url must be an http(s) URL, not {public_url(self.base_url)!r}")
        self._api_key = api_key or os.environ.get("OPENAI_API_KEY") or None
        self.timeout, self.max_retries = float(timeout), int(max_retries)
        self.backoff, self.max_backoff = float(backoff), float(max_backoff)
        self.stats = {"requests": 0, "retries": 0, "failed": 0}
        self._lock = threading.Lock()

    def __repr__(self) -> str:  # never show the key
        return f"ChatClient({public_url(self.base_url)!r}, key={'set' if self._api_key else 'none'})"

    def _count(self, key: str) -> None:
        with self._lock:
            self.stats[key] += 1

    def _scrub(self, text: str) -> str:
        return text.replace(self._api_key, REDACTED) if self._api_key else text

    def _post(self, payload: dict[str, Any]) -> tuple[int, bytes, Any]:
        headers = {"Content-Type": "application/json"}
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        request = urllib.request.Request(f"{self.base_url}/chat/completions", data=json.dumps(payload).encode(),
                                         headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return response.status, response.read(), response.headers
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read(), exc.headers

    @staticmethod
    def _content(body: bytes) -> str:
        """The first choice's text; ValueError for anything that is not a chat-completions reply."""
        try:
            content = json.loads(body)["choices"][0]["message"]["content"]
        except (ValueError, KeyError, IndexError, TypeError):
            raise ValueError(f"malformed reply: {body[:120]!r}") from None
        if not isinstance(content, str):
            raise ValueError(f"reply has no text content: {body[:120]!r}")
        return content

    def _delay(self, attempt: int, headers: Any) -> float:
        retry_after = headers.get("Retry-After") if headers is not None else None
        try:
            if retry_after is not None:
                return min(self.max_backoff, max(0.0, float(retry_after)))
        except ValueError:
            pass  # an HTTP date: fall back to our own schedule
        return min(self.max_backoff, self.backoff * 2 ** attempt * (0.5 + random.random()))

    def complete(self, payload: dict[str, Any]) -> str:
        """The reply text, or RequestFailed once retries are spent (the reason is scrubbed of the key)."""
        reason = ""
        for attempt in range(self.max_retries + 1):
            if attempt:
                self._count("retries")
            self._count("requests")
            headers = None
            try:
                status, body, headers = self._post(payload)
            except (TimeoutError, urllib.error.URLError, ConnectionError, OSError) as exc:
                reason = f"{type(exc).__name__}: {getattr(exc, 'reason', exc)}"
            else:
                if status == 200:
                    try:
                        return self._content(body)
                    except ValueError as exc:
                        reason = str(exc)
                elif status in RETRYABLE_STATUS or status >= 500:
                    reason = f"HTTP {status}"
                else:
                    self._count("failed")
                    raise RequestFailed(self._scrub(f"HTTP {status}: {body[:200].decode('utf-8', 'replace')}"))
            if attempt < self.max_retries:
                delay = self._delay(attempt, headers)
                log.warning("chat request to %s failed (%s); retry %d/%d in %.2fs", public_url(self.base_url),
                            self._scrub(reason), attempt + 1, self.max_retries, delay)
                time.sleep(delay)
        self._count("failed")
        raise RequestFailed(self._scrub(f"gave up after {self.max_retries + 1} attempts: {reason}"))


def _positive_int(name: str, value: Any) -> int:
    try:
        number = int(value)
    except (TypeError, ValueError):
        number = 0
    if number < 1 and not (name == "max_retries" and number == 0):
        raise ConfigError(f"{name} must be a positive integer, not {value!r}")
    return number


@MODELS.register("openai")
class OpenAIModel:
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
