"""Content-keyed answer cache (SQLite): a model's answer to exactly these inputs with these settings; and what
every cache file here shares (answers, judgments, embeddings): how it is opened and how caches merge.

Keys are derived before anything is shifted (`answer_key`): the source sample's request (prompt, image pixels,
token budget), what the shift is (name, version, parameters, severity, seed and, for a per-question shift, the
question: `ShiftCondition.identity`), the model fingerprint and the generation settings; never positions or
ranks. So a changed image, seed, severity or shift implementation never reuses a stale answer, a killed run or a
run with another sharding resumes from whatever was finished, and a fully cached rerun shifts nothing. Each
answer is stored with the hash of the shifted inputs the model saw and its prompt, which samples.jsonl records.
Caches written on different machines merge as a union of their keys (merge_cache).
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections.abc import Sequence
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vittle_bench.errors import ConfigError
from vittle_bench.schema import Request, image_digest

GENERATION_SETTINGS = {"decoding": "greedy"}


def answer_key(model_fingerprint: str, source: Request, shift: dict[str, Any]) -> str:
    """The key of a model's answer to a source sample's request under a shift (`ShiftCondition.identity`)."""
    payload = json.dumps([model_fingerprint, GENERATION_SETTINGS, source.max_new_tokens, source.prompt,
                          [image_digest(i) for i in source.images], shift], sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()


@dataclass(frozen=True)
class CachedAnswer:
    """A model's answer with what it was shown: the shifted inputs' content hash and the prompt."""

    output: str
    input_hash: str
    prompt: str


@dataclass(frozen=True)
class CacheTable:
    """One kind of cache file: its usual name under the cache directory and its single table."""

    file: str
    name: str
    key: tuple[str, ...]
    values: tuple[str, ...]
    schema: str  # CREATE TABLE IF NOT EXISTS ...
    noun: str = ""  # what messages call its rows, when not the table's name

    @property
    def columns(self) -> tuple[str, ...]:
        return self.key + self.values

    @property
    def rows_called(self) -> str:
        return self.noun or self.name


# Keyed by source sample and shift (`answer_key`); files written before that hold an `answers` table keyed by the
# shifted inputs, which no key of this one matches: it is left alone, not read.
ANSWERS = CacheTable("answers.sqlite", "answers_by_source", ("key",), ("output", "input_hash", "prompt"),
                     "CREATE TABLE IF NOT EXISTS answers_by_source (key TEXT PRIMARY KEY, output TEXT NOT NULL, "
                     "input_hash TEXT NOT NULL, prompt TEXT NOT NULL)", noun="answers")


def open_cache(path: Path, table: CacheTable, check_same_thread: bool = True) -> sqlite3.Connection:
    """A cache file, created with its table if new. WAL journal: readers never block the writer, and a killed
    writer loses only its uncommitted batch; a 60 s busy timeout lets the processes of one run share the file.
    The file must be on a local disk (SQLite's locking is unreliable on network file systems: docs/scaling.md).
    A path that cannot be opened (unwritable, not an SQLite file) is the user's to fix: ConfigError."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(path.absolute().as_uri(), timeout=60, uri=True, check_same_thread=check_same_thread)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute(table.schema)
        db.commit()
    except (OSError, sqlite3.Error) as exc:
        raise ConfigError(f"cannot open the cache {path} ({exc})") from None
    return db


def cache_kind(path: Path, tables: Sequence[CacheTable]) -> CacheTable:
    """Which of `tables` a cache file holds, read from its schema; ConfigError when it holds none of them."""
    if not path.is_file():
        raise ConfigError(f"{path} does not exist or is not a file")
    try:
        with closing(sqlite3.connect(path.absolute().as_uri() + "?mode=ro", uri=True)) as db:
            names = [name for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
            found = {name: tuple(c for (c,) in db.execute("SELECT name FROM pragma_table_info(?)", (name,)))
                     for name in names}
    except sqlite3.Error as exc:
        raise ConfigError(f"{path} is not a readable SQLite file ({exc})") from None
    for table in tables:
        if found.get(table.name) == table.columns:
            return table
    raise ConfigError(f"{path} is not a vittle-bench cache (expected one table of: "
                      f"{', '.join(f'{t.name} in {t.file}' for t in tables)}; found {', '.join(found) or 'none'})")


@dataclass(frozen=True)
class MergedSource:
    """What one source brought to a merge: entries read, entries new to the target, and the keys it also held
    with a different value (the target's value was kept), with a few of them as examples."""

    path: Path
    read: int
    added: int
    conflicts: int
    examples: tuple[str, ...]


@dataclass(frozen=True)
class MergeResult:
    into: Path
    entries: int  # in `into` after the merge
    sources: tuple[MergedSource, ...]


def merge_cache(sources: Sequence[Path], into: Path, table: CacheTable) -> MergeResult:
    """Union of the sources' entries into `into` (created if new), one transaction per source. Keys hash content,
    so an entry is right wherever it was computed and the union is the merged cache; a key held with different
    values (e.g. a model that is not bit-reproducible across machines) keeps the first value: `into`'s own,
    else that of the earliest source in `sources`. A merge killed midway leaves a valid cache holding the
    sources merged so far; rerunning it completes it."""
    for source in sources:
        if source.resolve() == into.resolve():
            raise ConfigError(f"{source} is also the merge target --into; give a new file or another cache")
        cache_kind(source, [table])
    if into.exists():
        cache_kind(into, [table])
    db = open_cache(into, table)
    db.isolation_level = None  # explicit transactions: ATTACH and DETACH must happen outside one
    same_key = " AND ".join(f"s.{k} = m.{k}" for k in table.key)
    differs = " OR ".join(f"s.{v} IS NOT m.{v}" for v in table.values)
    conflicting = f"FROM source.{table.name} AS s JOIN main.{table.name} AS m ON {same_key} WHERE {differs}"
    key_text = " || '/' || ".join(f"s.{k}" for k in table.key)
    merged = []
    try:
        for source in sources:
            db.execute("ATTACH DATABASE ? AS source", (source.absolute().as_uri() + "?mode=ro",))
            try:
                db.execute("BEGIN IMMEDIATE")
                read = db.execute(f"SELECT COUNT(*) FROM source.{table.name}").fetchone()[0]
                conflicts = db.execute(f"SELECT COUNT(*) {conflicting}").fetchone()[0]
                examples = db.execute(f"SELECT {key_text} {conflicting} LIMIT 3").fetchall()
                db.execute(f"INSERT OR IGNORE INTO main.{table.name} ({', '.join(table.columns)}) "
                           f"SELECT {', '.join(table.columns)} FROM source.{table.name}")
                added = db.execute("SELECT changes()").fetchone()[0]
                db.execute("COMMIT")
            finally:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                db.execute("DETACH DATABASE source")
            merged.append(MergedSource(source, read, added, conflicts, tuple(e for (e,) in examples)))
        entries = db.execute(f"SELECT COUNT(*) FROM {table.name}").fetchone()[0]
    except sqlite3.Error as exc:
        raise ConfigError(f"merging into {into} failed ({exc})") from None
    finally:
        db.close()
    return MergeResult(into, entries, tuple(merged))


class AnswerCache:
    def __init__(self, path: Path | None, check_same_thread: bool = True) -> None:
        """`path=None` gives a cache that stores nothing (--no-cache). `check_same_thread=False` for a
        connection made in one thread and used in another (one thread at a time)."""
        self._db = None
        if path is not None:
            self._db = open_cache(path, ANSWERS, check_same_thread)

    def get_many(self, keys: list[str]) -> dict[str, CachedAnswer]:
        if self._db is None or not keys:
            return {}
        found: dict[str, CachedAnswer] = {}
        for start in range(0, len(keys), 500):
            chunk = keys[start:start + 500]
            rows = self._db.execute(f"SELECT key, output, input_hash, prompt FROM {ANSWERS.name} "
                                    f"WHERE key IN ({','.join('?' * len(chunk))})", chunk)
            found.update((key, CachedAnswer(*values)) for key, *values in rows.fetchall())
        return found

    def put_many(self, items: dict[str, CachedAnswer]) -> None:
        """Committed before returning: once a batch is stored, a kill cannot lose it."""
        if self._db is not None and items:
            self._db.executemany(f"INSERT OR REPLACE INTO {ANSWERS.name} VALUES (?, ?, ?, ?)",
                                 [(key, a.output, a.input_hash, a.prompt) for key, a in items.items()])
            self._db.commit()

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
