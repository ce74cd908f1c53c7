"""Task source dispatch: `builtin:shapes` today; hub datasets and local files plug in here."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from vittle_bench.config import ConfigError, TaskSpec
from vittle_bench.schema import Sample

SOURCES = ("builtin:shapes", "local:<file.jsonl>")


def load_samples(spec: TaskSpec, cache_dir: Path, limit: int | None = None) -> Sequence[Sample]:
    if spec.source == "builtin:shapes":
        from vittle_bench.data.builtin.world import load_builtin_subset

        samples = load_builtin_subset(spec.task, spec.subset or "", cache_dir)
    elif spec.source.startswith("local:"):
        from vittle_bench.data.local import load_local_jsonl

        samples = load_local_jsonl(spec.task, spec.path.parent / spec.source.removeprefix("local:"))
    else:
        raise ConfigError(f"task {spec.task}: source {spec.source!r} is not supported (supported: {', '.join(SOURCES)})")
    return samples[:limit] if limit else samples
