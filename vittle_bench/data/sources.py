"""Task source dispatch: `builtin:shapes` (the embedded world), `hf:ORG/NAME` (hub datasets, with an offline
mirror under `data_dir`), `disk:PATH` (a saved dataset, e.g. from `vittle-bench data pope`) and
`local:FILE.jsonl` (users' own questions with image paths; relative to the task's YAML file)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from vittle_bench.config import TaskSpec
from vittle_bench.errors import ConfigError
from vittle_bench.images import max_image_pixels
from vittle_bench.schema import Sample

SOURCES = ("builtin:shapes", "hf:ORG/NAME", "disk:PATH", "local:FILE.jsonl")


def load_samples(spec: TaskSpec, cache_dir: Path, limit: int | None = None,
                 data_dir: Path | None = None) -> Sequence[Sample]:
    """The task's Samples, first `limit` only. Hub and disk sources return a lazy sequence (one row decoded
    per access), so a 9,000-image split costs no more memory than the batch being evaluated."""
    try:
        max_image_pixels()  # a bad setting stops the run here, not as one error per image
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    scheme = spec.source.partition(":")[0]
    samples: Sequence[Sample]
    # Each source's loader is imported when a task uses it: `datasets` (hub sources) and pycocotools (the
    # built-in world) cost seconds to import, and most runs need one of them.
    if spec.source == "builtin:shapes":
        from vittle_bench.builtin.world import load_builtin_subset

        samples = load_builtin_subset(spec.task, spec.subset or "", cache_dir)
    elif scheme in ("hf", "disk"):
        from vittle_bench.data.hf import load_hub_samples

        samples = load_hub_samples(spec, cache_dir, data_dir, limit)
    elif scheme == "local":
        from vittle_bench.data.local import load_local_jsonl

        samples = load_local_jsonl(spec.task, spec.path.parent / spec.source.removeprefix("local:"))
    else:
        raise ConfigError(f"task {spec.task}: source {spec.source!r} is not supported "
                          f"(supported: {', '.join(SOURCES)})")
    return samples[:limit] if limit else samples


def task_size(spec: TaskSpec) -> str:
    """Number of samples, known without loading anything ('?' when it is not)."""
    if spec.source == "builtin:shapes":
        from vittle_bench.builtin.world import OPEN_QUESTIONS, POPE_IMAGES, WORLD_IMAGES

        sizes = {"mc": WORLD_IMAGES, "open": OPEN_QUESTIONS}
        return str(sizes.get(spec.subset or "", POPE_IMAGES * 3 * 2))
    if spec.source.partition(":")[0] in ("hf", "disk"):
        from vittle_bench.data.hf import known_size

        return known_size(spec)
    return "?"
