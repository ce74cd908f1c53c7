"""Applying a condition to many samples: the shifted-image cache and worker processes, same bytes as `apply`.

`ShiftEngine.apply_many(condition, samples, seed)` returns, per sample, exactly what
`condition.shift.apply(sample, sample_rng(seed, condition.label, sample.sample_id))` returns (tested), or the
exception it raised (a per-sample error, never a crash of the batch). For image shifts that expose
`apply_image(image, seed)` (every built-in one, and plugins deriving from `ImageShift`), each image is looked
up in the `ShiftedImageCache` by content key first; misses are computed inline or, with `workers > 1`, in a
pool of worker processes (forkserver: no inherited threads or model weights), then stored. Each shifted sample
carries its provenance in `meta["shift"]`: condition label, seed, and the cache keys of its shifted images.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any

import numpy as np
from PIL import Image

from vittle_bench.schema import Sample
from vittle_bench.shifts._imaging import draw_image_seeds
from vittle_bench.shifts.base import JointShift, ShiftCondition, sample_rng
from vittle_bench.shifts.image_cache import ShiftedImageCache, shifted_image_key

_PRELOAD = ["vittle_bench.shifts.image", "vittle_bench.shifts.photometric", "imagecorruptions"]


def _shift_image(shift: Any, image: Image.Image, seed: int) -> Image.Image | Exception:
    try:
        return shift.apply_image(image, seed)
    except Exception as exc:  # noqa: BLE001 - returned, becomes the sample's error
        return exc


def _warm() -> None:
    import vittle_bench.shifts.image  # noqa: F401 - registers and imports the corruption library once per worker
    import vittle_bench.shifts.photometric  # noqa: F401 - likewise for the PIL shifts


class ShiftEngine:
    def __init__(self, cache: ShiftedImageCache | None = None, workers: int = 1) -> None:
        self.cache, self.workers = cache, max(1, workers)
        self.computed = 0
        self._pool: ProcessPoolExecutor | None = None

    def _executor(self) -> ProcessPoolExecutor:
        if self._pool is None:
            context = multiprocessing.get_context("forkserver")
            context.set_forkserver_preload(_PRELOAD)
            self._pool = ProcessPoolExecutor(self.workers, mp_context=context, initializer=_warm)
        return self._pool

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None

    def __enter__(self) -> ShiftEngine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def apply(self, condition: ShiftCondition, sample: Sample, seed: int) -> Sample:
        result = self.apply_many(condition, [sample], seed)[0]
        if isinstance(result, Exception):
            raise result
        return result

    def apply_many(self, condition: ShiftCondition, samples: Sequence[Sample], seed: int) -> list[Sample | Exception]:
        shift = condition.shift
        image_shift = shift.image if isinstance(shift, JointShift) else shift
        text_shift = shift.text if isinstance(shift, JointShift) else None
        if not hasattr(image_shift, "apply_image"):  # text, clean, domain, or a plugin without the per-image step
            results = [self._guarded(shift, s, sample_rng(seed, condition.label, s.sample_id)) for s in samples]
            return [r if isinstance(r, Exception) else r.with_changes(meta={**r.meta, "shift": {
                "label": condition.label, "seed": seed, "image_keys": []}}) for r in results]

        rngs = []
        jobs: list[tuple[int, int, Image.Image, int]] = []  # (sample index, image index, image, per-image seed)
        for i, sample in enumerate(samples):
            rng = sample_rng(seed, condition.label, sample.sample_id)
            image_rng, text_rng = rng.spawn(2) if text_shift is not None else (rng, None)
            rngs.append(text_rng)
            for j, (image, image_seed) in enumerate(zip(sample.images, draw_image_seeds(image_rng, len(sample.images)))):
                jobs.append((i, j, image, image_seed))
        images: dict[tuple[int, int], Image.Image | Exception] = {}
        keys: dict[tuple[int, int], str] = {}
        missing = []
        for i, j, image, image_seed in jobs:
            try:
                keys[i, j] = key = shifted_image_key(image, image_shift, image_seed)
            except Exception as exc:  # noqa: BLE001 - e.g. an image that cannot be read
                images[i, j] = exc
                continue
            cached = self.cache.get(key) if self.cache is not None else None
            if cached is not None:
                images[i, j] = cached
            else:
                missing.append((i, j, image, image_seed))
        for (i, j, _, _), out in zip(missing, self._compute(image_shift, missing)):
            images[i, j] = out
            self.computed += 1
            if self.cache is not None and isinstance(out, Image.Image):
                self.cache.put(keys[i, j], out)

        results: list[Sample | Exception] = []
        for i, sample in enumerate(samples):
            shifted = [images[i, j] for j in range(len(sample.images))]
            error = next((im for im in shifted if isinstance(im, Exception)), None)
            if error is not None:
                results.append(error)
                continue
            out = sample.with_changes(images=tuple(shifted)) if sample.images else sample
            if text_shift is not None:
                out = self._guarded(text_shift, out, rngs[i])
                if isinstance(out, Exception):
                    results.append(out)
                    continue
            provenance = {"label": condition.label, "seed": seed,
                          "image_keys": [keys.get((i, j), "") for j in range(len(sample.images))]}
            results.append(out.with_changes(meta={**out.meta, "shift": provenance}))
        return results

    def _compute(self, shift: Any, missing: list[tuple[int, int, Image.Image, int]]) -> list[Image.Image | Exception]:
        if self.workers == 1 or len(missing) < 2:
            return [_shift_image(shift, image, image_seed) for _, _, image, image_seed in missing]
        chunk = max(1, len(missing) // (4 * self.workers))
        try:
            return list(self._executor().map(_shift_image, [shift] * len(missing), [m[2] for m in missing],
                                             [m[3] for m in missing], chunksize=chunk))
        except BrokenProcessPool as exc:  # a worker died (e.g. out of memory): these samples fail, the run goes on
            self._pool = None
            return [RuntimeError(f"shift worker process died: {exc}") for _ in missing]

    @staticmethod
    def _guarded(shift: Any, sample: Sample, rng: np.random.Generator) -> Sample | Exception:
        try:
            return shift.apply(sample, rng)
        except Exception as exc:  # noqa: BLE001 - a bad sample must not stop the batch
            return exc
