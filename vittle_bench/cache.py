"""Content-keyed answer cache (SQLite): a model's answer to exactly these inputs with these settings.

Keys hash the shifted inputs themselves (pixels, prompt), the model fingerprint and the generation
settings, never positions or ranks, so a changed image, seed or severity never reuses a stale answer and a
killed run, or a run with another sharding, resumes from whatever was finished.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from pathlib import Path

from vittle_bench.schema import Request, image_digest

GENERATION_SETTINGS = {"decoding": "greedy"}


def cache_key(model_fingerprint: str, request: Request) -> str:
    payload = json.dumps([model_fingerprint, GENERATION_SETTINGS, request.max_new_tokens, request.prompt,
                          [image_digest(i) for i in request.images]])
    return hashlib.sha256(payload.encode()).hexdigest()


class AnswerCache:
    def __init__(self, path: Path | None) -> None:
        """`path=None` gives a cache that stores nothing (--no-cache)."""
        self._db = None
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(path, timeout=60)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("CREATE TABLE IF NOT EXISTS answers (key TEXT PRIMARY KEY, output TEXT NOT NULL)")
            self._db.commit()

    def get_many(self, keys: list[str]) -> dict[str, str]:
        if self._db is None or not keys:
            return {}
        found: dict[str, str] = {}
        for start in range(0, len(keys), 500):
            chunk = keys[start:start + 500]
            rows = self._db.execute(f"SELECT key, output FROM answers WHERE key IN ({','.join('?' * len(chunk))})", chunk)
            found.update(rows.fetchall())
        return found

    def put_many(self, items: dict[str, str]) -> None:
        """Committed before returning: once a batch is stored, a kill cannot lose it."""
        if self._db is not None and items:
            self._db.executemany("INSERT OR REPLACE INTO answers VALUES (?, ?)", items.items())
            self._db.commit()

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
