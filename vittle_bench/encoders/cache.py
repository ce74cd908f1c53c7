"""On-disk embedding cache: one SQLite table keyed by (encoder name, content digest).

Digests are of content, not of where it came from: sha256 of a text's UTF-8 bytes, `schema.image_digest` of an
image's decoded pixels. So a shifted image is embedded once however many models answered it, and an
unchanged question is shared across image shifts.
"""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from vittle_bench.cache import CacheTable, open_cache
from vittle_bench.encoders import Encoder
from vittle_bench.schema import image_digest

EMBEDDINGS = CacheTable("embeddings.sqlite", "embeddings", ("encoder", "digest"), ("vector",),
                        "CREATE TABLE IF NOT EXISTS embeddings (encoder TEXT, digest TEXT, vector BLOB, "
                        "PRIMARY KEY (encoder, digest))")


def content_digest(item: Any) -> str:
    if isinstance(item, str):
        return hashlib.sha256(item.encode("utf-8")).hexdigest()[:32]
    return image_digest(item)


class EmbeddingCache:
    """`path=None` keeps nothing (every call encodes); use as a context manager or call close()."""

    def __init__(self, path: Path | None) -> None:
        self.db = None
        if path is not None:
            self.db = open_cache(path, EMBEDDINGS)

    def __enter__(self) -> EmbeddingCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self.db is not None:
            self.db.close()
            self.db = None

    @staticmethod
    def _get(db: sqlite3.Connection, encoder: str, digests: list[str]) -> dict[str, np.ndarray]:
        found: dict[str, np.ndarray] = {}
        for start in range(0, len(digests), 500):  # stay under SQLite's bound-parameter limit
            chunk = digests[start:start + 500]
            rows = db.execute(
                f"SELECT digest, vector FROM embeddings WHERE encoder = ? AND digest IN ({','.join('?' * len(chunk))})",
                [encoder, *chunk])
            found.update((d, np.frombuffer(v, dtype=np.float32)) for d, v in rows)
        return found

    def encode(self, encoder: Encoder, items: Sequence[Any]) -> np.ndarray:
        """Embeddings of `items` (rows in order), computing only those not cached; duplicates are encoded once."""
        digests = [content_digest(item) for item in items]
        found = self._get(self.db, encoder.name, sorted(set(digests))) if self.db is not None else {}
        todo: dict[str, Any] = {}
        for digest, item in zip(digests, items):
            if digest not in found and digest not in todo:
                todo[digest] = item
        if todo:
            vectors = encoder.encode(list(todo.values()))
            fresh = dict(zip(todo, vectors.astype(np.float32)))
            found.update(fresh)
            if self.db is not None:
                self.db.executemany("INSERT OR REPLACE INTO embeddings VALUES (?, ?, ?)",
                                    [(encoder.name, d, v.tobytes()) for d, v in fresh.items()])
                self.db.commit()
        return np.stack([found[d] for d in digests]) if digests else np.zeros((0, encoder.dim), dtype=np.float32)
