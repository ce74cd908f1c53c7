"""A size-bounded disk cache of shifted images, keyed by content, shared by re-runs, models and processes.

Key = SHA-256 of (clean image digest, shift name, severity, version, parameters, per-image seed): everything
the shifted pixels depend on, so a changed image, seed, severity or implementation never hits a stale entry.
Entries are lossless PNG files (fast compression level) under `<root>/<key[:2]>/<key>.png`, written atomically
(temp file + rename), so concurrent processes can share one directory. When the total size passes
`max_bytes`, the least recently used entries (by modification time, refreshed on every hit) are deleted
down to 90 % of the budget.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tempfile
import threading
from pathlib import Path
from typing import Any

from PIL import Image

from vittle_bench.shifts._contract import Shift

DEFAULT_MAX_BYTES = 2 * 1024**3
_PNG_LEVEL = 1  # lossless either way; level 1 encodes several times faster than the default 6


def shifted_image_key(digest: str, shift: Shift, seed: int) -> str:
    """Content key of one shifted image, from the clean image's `schema.image_digest`: what the shifted pixels
    are a pure function of."""
    described = json.dumps(shift.params(), sort_keys=True, default=str)
    text = "\x1f".join([digest, shift.name, str(shift.severity), shift.version, described, str(seed)])
    return hashlib.sha256(text.encode()).hexdigest()


class ShiftedImageCache:
    def __init__(self, root: Path, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.max_bytes = max_bytes
        self.hits = self.misses = self.evicted = 0
        self._lock = threading.Lock()
        self._size = sum(p.stat().st_size for p in self._entries())

    def _entries(self) -> list[Path]:
        return [p for p in self.root.glob("??/*.png") if p.is_file()]

    def _path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.png"

    @property
    def size_bytes(self) -> int:
        return self._size

    @property
    def hit_rate(self) -> float:
        total = self.hits + self.misses
        return self.hits / total if total else 0.0

    def get(self, key: str) -> Image.Image | None:
        path = self._path(key)
        try:
            with Image.open(path) as stored:
                stored.load()
                image = stored.copy()
            os.utime(path)  # mark as recently used
        except (FileNotFoundError, OSError, SyntaxError):  # absent, evicted meanwhile, or a torn file
            with self._lock:
                self.misses += 1
            return None
        with self._lock:
            self.hits += 1
        return image

    def put(self, key: str, image: Image.Image) -> None:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        buffer = io.BytesIO()
        image.save(buffer, format="PNG", compress_level=_PNG_LEVEL)
        data = buffer.getvalue()
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(data)
            existed = path.exists()
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        with self._lock:
            self._size += 0 if existed else len(data)
        if self._size > self.max_bytes:
            self.evict()

    def evict(self, target_fraction: float = 0.9) -> None:
        """Delete least recently used entries until the cache is under `target_fraction` of its budget."""
        with self._lock:
            entries = []
            for path in self._entries():
                try:
                    stat = path.stat()
                except FileNotFoundError:
                    continue
                entries.append((stat.st_mtime, stat.st_size, path))
            total = sum(size for _, size, _ in entries)
            for _, size, path in sorted(entries, key=lambda e: e[0]):
                if total <= self.max_bytes * target_fraction:
                    break
                path.unlink(missing_ok=True)
                total -= size
                self.evicted += 1
            self._size = total

    def stats(self) -> dict[str, Any]:
        return {"hits": self.hits, "misses": self.misses, "hit_rate": round(self.hit_rate, 4),
                "evicted": self.evicted, "size_bytes": self._size, "max_bytes": self.max_bytes}
