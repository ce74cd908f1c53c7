"""A scripted OpenAI-compatible chat-completions server on 127.0.0.1 for tests: per request key it plays a
list of behaviours, one per attempt (the last one repeats): answer, fail with a status, stall past the
client's timeout, or return garbage. It logs every request (with its Authorization header) and the peak
number of requests in flight."""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


def ok(text: str) -> tuple:
    return ("ok", text)


def status(code: int, retry_after: str | None = None, body: str = '{"error": {"message": "scripted"}}') -> tuple:
    return ("status", code, retry_after, body)


def stall(seconds: float, text: str = "late") -> tuple:
    return ("stall", seconds, text)


def garbage(body: bytes = b"<html>502 Bad Gateway</html>") -> tuple:
    return ("garbage", body)


def messages_key(messages: list[dict[str, Any]]) -> str:
    return hashlib.sha256(json.dumps(messages, sort_keys=True).encode()).hexdigest()


@dataclass
class FakeServer:
    key_of: Callable[[dict[str, Any]], str] = lambda payload: messages_key(payload["messages"])
    scripts: dict[str, list[tuple]] = field(default_factory=dict)
    default: Callable[[dict[str, Any]], tuple] = lambda payload: ok("Yes")
    delay: float = 0.0  # every answer takes this long (to observe concurrency)
    log: list[dict[str, Any]] = field(default_factory=list)
    in_flight: int = 0
    peak_in_flight: int = 0

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._attempts: dict[str, int] = {}

    def attempts(self, key: str) -> int:
        return self._attempts.get(key, 0)

    def _behaviour(self, payload: dict[str, Any]) -> tuple:
        key = self.key_of(payload)
        with self._lock:
            n = self._attempts.get(key, 0)
            self._attempts[key] = n + 1
        script = self.scripts.get(key)
        return script[min(n, len(script) - 1)] if script else self.default(payload)

    def handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:  # keep test output quiet
                pass

            def _send(self, code: int, body: bytes, headers: dict[str, str] | None = None) -> None:
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                try:
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (timeout): that is the point of a stall

            def do_POST(self) -> None:
                payload = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with server._lock:
                    server.log.append({"path": self.path, "auth": self.headers.get("Authorization"),
                                       "payload": payload})
                    server.in_flight += 1
                    server.peak_in_flight = max(server.peak_in_flight, server.in_flight)
                try:
                    behaviour = server._behaviour(payload)
                    if server.delay:
                        time.sleep(server.delay)
                    kind = behaviour[0]
                    if kind == "status":
                        _, code, retry_after, body = behaviour
                        self._send(code, body.encode(), {"Retry-After": retry_after} if retry_after else None)
                    elif kind == "garbage":
                        self._send(200, behaviour[1])
                    else:
                        if kind == "stall":
                            time.sleep(behaviour[1])
                        text = behaviour[-1]
                        reply = {"id": "x", "object": "chat.completion", "model": payload.get("model"),
                                 "choices": [{"index": 0, "finish_reason": "stop",
                                              "message": {"role": "assistant", "content": text}}]}
                        self._send(200, json.dumps(reply).encode())
                finally:
                    with server._lock:
                        server.in_flight -= 1

        return Handler

    def __enter__(self) -> FakeServer:
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), self.handler())
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()
        return self

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def __exit__(self, *exc: Any) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
