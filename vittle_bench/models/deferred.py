"""A model known by its fingerprint before its weights load, so that a fully cached rerun never loads them.

Every answer is keyed by the model's fingerprint before a single one is asked for. A backend that can say
cheaply what decides its fingerprint (`Model.load_identity`: the weights' content hash or hub commit, the model
args, the library versions) has its name, fingerprint and fingerprint_info recorded after each load, in
`models.sqlite` beside the answer cache; the next run with the same identity gets a `DeferredModel` carrying
them, whose weights load at its first `generate`. The loaded model's fingerprint must equal the recorded one: a
difference is our bug (the identity missed something the fingerprint depends on) and stops the run.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from contextlib import closing
from pathlib import Path
from typing import Any

from vittle_bench.cache import CacheTable, open_cache
from vittle_bench.models.base import Model, load_model, model_backend, split_spec
from vittle_bench.schema import Request

MODEL_FINGERPRINTS = CacheTable(
    "models.sqlite", "model_fingerprints", ("identity",), ("name", "fingerprint", "info"),
    "CREATE TABLE IF NOT EXISTS model_fingerprints (identity TEXT PRIMARY KEY, name TEXT NOT NULL, "
    "fingerprint TEXT NOT NULL, info TEXT NOT NULL)", noun="model fingerprints")


class FingerprintMismatch(RuntimeError):
    """A deferred model loaded with another fingerprint than the one its answers were looked up by."""


class DeferredModel(Model):
    """A model by its recorded fingerprint; the real one is loaded by the first `generate`."""

    def __init__(self, spec: str, model_args: dict[str, Any], record: tuple[Path, str], name: str, fingerprint: str,
                 fingerprint_info: dict[str, Any] | None) -> None:
        """`record`: the file and identity key the fingerprint was read from (dropped if it proves wrong)."""
        self.spec, self.model_args, self.record = spec, model_args, record
        self.name, self.fingerprint, self.fingerprint_info = name, fingerprint, fingerprint_info
        self.model: Model | None = None

    def ensure_loaded(self) -> None:
        self.loaded()

    def loaded(self) -> Model:
        if self.model is None:
            model = load_model(self.spec, **self.model_args)
            if (model.name, model.fingerprint) != (self.name, self.fingerprint):
                path, key = self.record
                with closing(open_cache(path, MODEL_FINGERPRINTS)) as db:
                    db.execute(f"DELETE FROM {MODEL_FINGERPRINTS.name} WHERE identity = ?", (key,))
                    db.commit()
                raise FingerprintMismatch(
                    f"{self.spec} loaded as {model.name} with fingerprint {model.fingerprint}, not the "
                    f"{self.fingerprint} recorded in {path} for what it was loaded from; this is a bug in "
                    f"vittle-bench (please report it). The record is removed: rerunning the command loads the model "
                    f"first")
            self.model = model
        return self.model

    def generate(self, requests: list[Request]) -> Sequence[str | Exception]:
        return self.loaded().generate(requests)


def load_model_when_needed(spec: str, model_args: dict[str, Any], cache_dir: Path | None) -> Model:
    """The model, or (when `cache_dir` holds a record for what it would be loaded from) a DeferredModel. A model
    loaded now has its fingerprint recorded there. `cache_dir=None` (no cache): the model, loaded now."""
    scheme, name = split_spec(spec)
    identity = model_backend(scheme).load_identity(name, **model_args) if cache_dir else None
    if cache_dir is None or identity is None:
        return load_model(spec, **model_args)
    key = hashlib.sha256(json.dumps([spec, identity], sort_keys=True, default=str).encode()).hexdigest()
    path = cache_dir / MODEL_FINGERPRINTS.file
    with closing(open_cache(path, MODEL_FINGERPRINTS)) as db:
        row = db.execute(f"SELECT name, fingerprint, info FROM {MODEL_FINGERPRINTS.name} WHERE identity = ?",
                         (key,)).fetchone()
    if row is not None:
        return DeferredModel(spec, model_args, (path, key), row[0], row[1], json.loads(row[2]))
    model = load_model(spec, **model_args)
    with closing(open_cache(path, MODEL_FINGERPRINTS)) as db:
        db.execute(f"INSERT OR REPLACE INTO {MODEL_FINGERPRINTS.name} VALUES (?, ?, ?, ?)",
                   (key, model.name, model.fingerprint, json.dumps(model.fingerprint_info)))
        db.commit()
    return model
