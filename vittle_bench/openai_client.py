"""The client for OpenAI-compatible chat-completions endpoints (OpenAI, vLLM, SGLang, ...), shared by the
`openai:` model backend (models/openai.py) and the LLM judges (judges/openai.py, judges/pairwise.py), and the
rules that keep its API key out of everything a run writes.

`ChatClient` retries 429 / 5xx / timeouts / malformed replies with exponential backoff (honouring Retry-After)
and raises `RequestFailed` once its retries are spent; images travel as base64 PNG data URLs (`image_data_url`).
The key lives only in memory: log lines and error messages are scrubbed of it, `public_url` drops any credential
from a URL, and `redact_model_args` / `redact_text` let the run directory drop it too.
"""

# Plain urllib, not the `openai` package: no added dependency; retries, Retry-After and key scrubbing are set here.

from __future__ import annotations

import base64
import json
import logging
import os
import random
import threading
import time
import urllib.error
import urllib.request
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from PIL import Image

from vittle_bench.errors import ConfigError
from vittle_bench.schema import image_to_png_bytes

log = logging.getLogger(__name__)

DEFAULT_BASE_URL = "https://api.openai.com/v1"
SECRET_ARGS = frozenset({"api_key"})
RETRYABLE_STATUS = frozenset({408, 409, 425, 429})  # plus every 5xx
REDACTED = "<redacted>"
# Retry jitter draws from its own generator: shifts pin Python's global one while they run, in the runner's
# prefetch thread too, and a draw from here in between would change their output.
_JITTER = random.Random()


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
        return min(self.max_backoff, self.backoff * 2 ** attempt * (0.5 + _JITTER.random()))

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
