"""The clean and shifted images of the samples a report shows, made again exactly as the run made them.

Each run's manifest says which tasks, conditions, seed, sample limit and data directory it used; the report
plans the same cells (`plan_run`, `grid_cells`: the same loading and answer normalisation) and applies each
condition through the `ShiftEngine` with the run's seed, served from the shifted-image cache where the run left
the images there. Every reproduced sample's content hash is checked against the `input_hash` its record holds:
a card whose images are not what the model saw says so, and the count is printed. A run whose data cannot be
loaded any more (a hub dataset not mirrored here, a task file not on the include path) gets one line saying why
and cards without images; nothing is skipped silently.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Sequence
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image

from vittle_bench.errors import ConfigError
from vittle_bench.registry import UnknownNameError
from vittle_bench.run_plan import RunOptions, plan_run
from vittle_bench.runner import grid_cells
from vittle_bench.schema import Sample
from vittle_bench.shifts.engine import ShiftEngine
from vittle_bench.shifts.image_cache import ShiftedImageCache

THUMBNAIL_SIDE = 224  # longest side in pixels; smaller images keep their size (the page scales them up)
SampleKey = tuple[int, str, str, str]  # (run index, task, condition, sample id)


@dataclass(frozen=True)
class DataSettings:
    """Where the runs' data and caches are found now (the report may run elsewhere than the run did)."""

    cache_dir: Path
    data_dir: Path | None = None  # overrides each manifest's data_dir
    include_paths: list[Path] = field(default_factory=list)


@dataclass
class Reproduced:
    """Thumbnail paths (relative to the site) per sample and condition, whether each matches its record, and
    one line per task that could not be reproduced."""

    images: dict[SampleKey, tuple[str, ...]] = field(default_factory=dict)
    matches: dict[SampleKey, bool] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    @property
    def mismatched(self) -> int:
        return sum(not ok for ok in self.matches.values())


class ThumbnailWriter:
    """Writes each distinct image once, named by its content, under `site/img/`."""

    def __init__(self, site: Path) -> None:
        self.folder = site / "img"
        self.folder.mkdir(parents=True, exist_ok=True)
        self.written: set[str] = set()

    def write(self, image: Image.Image) -> str:
        thumb = image.convert("RGB")
        thumb.thumbnail((THUMBNAIL_SIDE, THUMBNAIL_SIDE), Image.Resampling.LANCZOS)
        buf = io.BytesIO()
        thumb.save(buf, format="PNG", optimize=True)
        data = buf.getvalue()
        name = hashlib.sha256(data).hexdigest()[:20] + ".png"
        if name not in self.written:
            (self.folder / name).write_bytes(data)
            self.written.add(name)
        return f"img/{name}"


def run_options(manifest: dict[str, Any], run_dir: Path, task: str, conditions: list[str],
                settings: DataSettings) -> RunOptions:
    """The options that plan `task` under `conditions` as the run planned them (no model is loaded)."""
    data_dir = settings.data_dir or (Path(manifest["data_dir"]) if manifest.get("data_dir") else None)
    return RunOptions(models=[], output=run_dir, tasks=task, shifts=",".join(conditions),
                      seed=int(manifest.get("seed", 0)), limit=manifest.get("limit"), judge=manifest.get("judge"),
                      data_dir=data_dir, include_paths=settings.include_paths, cache_dir=settings.cache_dir,
                      progress=False)


def reproduce(run_index: int, run_dir: Path, manifest: dict[str, Any], wanted: dict[str, dict[str, set[str]]],
              expected: dict[SampleKey, str], settings: DataSettings, writer: ThumbnailWriter,
              found: Reproduced) -> None:
    """Thumbnails of the `wanted` samples (task -> condition -> sample ids) of one run, added to `found`."""
    seed = int(manifest.get("seed", 0))
    cache = ShiftedImageCache(settings.cache_dir / "shifted-images")
    with closing(ShiftEngine(cache)) as engine:
        for task, by_condition in wanted.items():
            try:
                options = run_options(manifest, run_dir, task, list(by_condition), settings)
                cells = grid_cells(options, plan_run(options, writes=False))
            except (ConfigError, UnknownNameError) as exc:  # e.g. its data is not here, or the task file is not
                found.problems.append(f"{run_dir} / {task}: images not reproduced ({exc})")
                continue
            ids = set().union(*by_condition.values())
            pools: dict[int, dict[str, Sample]] = {}
            for cell in cells:
                if cell.condition.label not in by_condition:
                    continue
                pool = pools.get(id(cell.samples))
                if pool is None:
                    pool = pools[id(cell.samples)] = _samples_by_id(cell.samples, ids)
                chosen = [pool[i] for i in sorted(by_condition[cell.condition.label]) if i in pool]
                for sample, shifted in zip(chosen, engine.apply_many(cell.condition, chosen, seed)):
                    key = (run_index, task, cell.condition.label, sample.sample_id)
                    if isinstance(shifted, Exception):  # the card shows no image; the report counts those cards
                        continue
                    found.images[key] = tuple(writer.write(image) for image in shifted.images)
                    if key in expected:
                        found.matches[key] = shifted.content_hash() == expected[key]


def _samples_by_id(samples: Sequence[Sample], ids: set[str]) -> dict[str, Sample]:
    """The samples whose ids are wanted, read in one pass (a lazy hub split decodes one row at a time)."""
    out = {}
    for sample in samples:
        if sample.sample_id in ids and not sample.load_error:
            out[sample.sample_id] = sample
            if len(out) == len(ids):
                break
    return out
