"""Judgment cache (SQLite): re-scoring a run, or scoring an answer seen before, costs no judge call.

Keys hash the judge model, its endpoint and settings, and the full judge prompt (which holds the question,
the context, the reference answer and the model's answer), so any change to any of them is a miss. Only
successful judgments are stored: a failure is retried next time, never replayed.
"""

from __future__ import annotations

import hashlib
import json
import threading
from pathlib import Path
from typing import Any

from vittle_bench.cache import CacheTable, open_cache

JUDGMENTS = CacheTable("judgments.sqlite", "judgments", ("key",), ("judge", "review", "model_score", "reference_score"),
                       "CREATE TABLE IF NOT EXISTS judgments (key TEXT PRIMARY KEY, judge TEXT NOT NULL, "
                       "review TEXT NOT NULL, model_score REAL NOT NULL, reference_score REAL NOT NULL)")


def judgment_key(judge: dict[str, Any], messages: list[dict[str, Any]]) -> str:
    return hashlib.sha256(json.dumps([judge, messages], sort_keys=True).encode()).hexdigest()


class JudgmentCache:
    def __init__(self, path: str | Path | None) -> None:
        """`path=None` stores nothing."""
        self._db = None
        self._lock = threading.Lock()
        if path is not None:
            self._db = open_cache(Path(path), JUDGMENTS, check_same_thread=False)  # shared by the judge's threads

    def get(self, key: str) -> tuple[str, float, float] | None:
        """(review text, model score, reference score) or None."""
        if self._db is None:
            return None
        with self._lock:
            row = self._db.execute("SELECT review, model_score, reference_score FROM judgments WHERE key = ?",
                                   (key,)).fetchone()
        return (row[0], float(row[1]), float(row[2])) if row else None

    def put(self, key: str, judge: str, review: str, model_score: float, reference_score: float) -> None:
        if self._db is None:
            return
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO judgments VALUES (?, ?, ?, ?, ?)",
                             (key, judge, review, model_score, reference_score))
            self._db.commit()

    def __len__(self) -> int:
        if self._db is None:
            return 0
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM judgments").fetchone()[0])

    def close(self) -> None:
        if self._db is not None:
            with self._lock:
                self._db.close()
            self._db = None
