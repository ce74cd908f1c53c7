"""Task source dispatch: `builtin:shapes` (the embedded world), `hf:ORG/NAME` (hub datasets, with an offline
mirror under `data_dir`), `disk:PATH` (a saved dataset, e.g. from `vittle-bench data pope`) and
`local:FILE.jsonl` (users' own questions with image paths; relative to the task's YAML file)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import ClassVar

from vittle_bench.config import TaskSpec
from vittle_bench.errors import ConfigError
from vittle_bench.images import max_image_pixels
from vittle_bench.registry import Registry
from vittle_bench.schema import Sample


class SampleSource:
    """A task `source:` scheme: how its rows become Samples. Registered under the scheme (`hf`, `local`, ...);
    third-party schemes register in the entry-point group `vittle_bench.sources`."""

    form: ClassVar[str] = ""  # how a source of this scheme is written, for messages (e.g. "hf:ORG/NAME")

    def load(self, spec: TaskSpec, cache_dir: Path, data_dir: Path | None, limit: int | None) -> Sequence[Sample]:
        raise NotImplementedError

    def size(self, spec: TaskSpec) -> str:
        """Number of samples, known without loading anything ('?' when it is not)."""
        return "?"


SAMPLE_SOURCES: Registry[type[SampleSource]] = Registry(
    "sources", ("vittle_bench.builtin.world", "vittle_bench.data.hf", "vittle_bench.data.local"))


def sample_source(spec: TaskSpec) -> SampleSource:
    scheme = spec.source.partition(":")[0]
    if scheme not in SAMPLE_SOURCES:
        forms = ", ".join(dict.fromkeys(SAMPLE_SOURCES.get(name).form for name in SAMPLE_SOURCES))
        raise ConfigError(f"task {spec.task}: source {spec.source!r} is not supported (supported: {forms})")
    return SAMPLE_SOURCES.get(scheme)()


def load_samples(spec: TaskSpec, cache_dir: Path, limit: int | None = None,
                 data_dir: Path | None = None) -> Sequence[Sample]:
    """The task's Samples, first `limit` only. Hub and disk sources return a lazy sequence (one row decoded
    per access), so a 9,000-image split costs no more memory than the batch being evaluated."""
    try:
        max_image_pixels()  # a bad setting stops the run here, not as one error per image
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    samples = sample_source(spec).load(spec, cache_dir, data_dir, limit)
    return samples[:limit] if limit else samples


def task_size(spec: TaskSpec) -> str:
    """Number of samples, known without loading anything ('?' when it is not)."""
    return sample_source(spec).size(spec)
