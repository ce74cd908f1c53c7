"""Applying a condition to many samples: the shifted-image cache and worker processes, same bytes as `apply`.

`ShiftEngine.apply_many(condition, samples, seed)` returns, per sample, exactly what
`condition.shift.apply(sample, sample_rng(seed, condition.label, sample.sample_id))` returns (tested), or the
exception it raised (a per-sample error, never a crash of the batch). The engine holds every shift, plugins
included, to the contract (docs/plugins.md): a shifted image must be a PIL image of its input's size (another
mode is made RGB with `prepare_image`, as loaders do), and a shift must leave `answer`, `choices` and `context`
alone; a sample whose shift breaks it fails with a `ShiftContractError` naming the shift.

For shifts deriving from `ImageShift` (every built-in image shift), whose per-image step is
`apply_image(image, seed)`, each image is looked up in the `ShiftedImageCache` by content key first; misses are
computed inline or, with `workers > 1`, in a pool of worker processes (forkserver: no inherited threads or model
weights), then stored. Each shifted sample carries its provenance in `meta["shift"]`: condition label, seed,
and the cache keys of its shifted images.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

import numpy as np
from PIL import Image

from vittle_bench.images import prepare_image
from vittle_bench.schema import Sample
from vittle_bench.shifts._contract import Shift
from vittle_bench.shifts._imaging import ImageShift, draw_image_seeds
from vittle_bench.shifts.base import JointShift, ShiftCondition, sample_rng
from vittle_bench.shifts.image_cache import ShiftedImageCache, shifted_image_key

_PRELOAD = ["vittle_bench.shifts.image", "vittle_bench.shifts.photometric", "imagecorruptions"]
GROUND_TRUTH = ("answer", "choices", "context")  # what a shift must never change


class ShiftContractError(ValueError):
    """A shift's output broke the Shift contract on one sample: that sample fails, the run goes on."""


def checked_image(shift_name: str, before: Image.Image, after: object) -> Image.Image | Exception:
    """A shifted image as the contract wants it: a PIL image of the input's size, in RGB (another mode is
    converted with the loaders' `prepare_image`), else the error the sample fails with."""
    if isinstance(after, Exception):
        return after
    if not isinstance(after, Image.Image):
        return ShiftContractError(f"shift {shift_name!r} returned {type(after).__name__}, not a PIL image")
    if after.size != before.size:
        return ShiftContractError(f"shift {shift_name!r} returned a {after.width}x{after.height} image for a "
                                  f"{before.width}x{before.height} input (an image shift keeps the input's size)")
    if after.mode == "RGB":
        return after
    try:
        return prepare_image(after)
    except ValueError as exc:
        return ShiftContractError(f"shift {shift_name!r} returned an image that cannot be made RGB: {exc}")


def checked_sample(shift_name: str, before: Sample, after: object) -> Sample | Exception:
    """A shift's output sample checked against its input: the same ground truth, as many images, each valid."""
    if after is before or isinstance(after, Exception):
        return after
    if not isinstance(after, Sample):
        return ShiftContractError(f"shift {shift_name!r} returned {type(after).__name__}, not a Sample")
    changed = next((f for f in GROUND_TRUTH if getattr(after, f) != getattr(before, f)), None)
    if changed is not None:
        return ShiftContractError(f"shift {shift_name!r} changed the sample's {changed} (a shift perturbs what the "
                                  "model sees, never the ground truth)")
    if after.images is before.images:
        return after
    if len(after.images) != len(before.images):
        return ShiftContractError(f"shift {shift_name!r} returned {len(after.images)} images for "
                                  f"{len(before.images)}")
    images = [checked_image(shift_name, b, a) for b, a in zip(before.images, after.images)]
    error = next((im for im in images if isinstance(im, Exception)), None)
    if error is not None:
        return error
    converted = any(a is not b for a, b in zip(images, after.images))
    return after.with_changes(images=tuple(images)) if converted else after


def _shift_image(shift: ImageShift, image: Image.Image, seed: int) -> Image.Image | Exception:
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
        if not isinstance(image_shift, ImageShift):  # text, clean, domain, or an image shift without the per-image step
            outs = [checked_sample(shift.name, s, self._guarded(shift, s, sample_rng(seed, condition.label,
                                                                                      s.sample_id)))
                    for s in samples]
            return [r if isinstance(r, Exception) else r.with_changes(meta={**r.meta, "shift": {
                "label": condition.label, "seed": seed, "image_keys": []}}) for r in outs]

        rngs = []
        jobs: list[tuple[int, int, Image.Image, int]] = []  # (sample index, image index, image, per-image seed)
        for i, sample in enumerate(samples):
            rng = sample_rng(seed, condition.label, sample.sample_id)
            image_rng, text_rng = rng.spawn(2) if text_shift is not None else (rng, rng)  # text_rng unused
            rngs.append(text_rng)
            image_seeds = draw_image_seeds(image_rng, len(sample.images))
            jobs += [(i, j, image, image_seed) for j, (image, image_seed) in enumerate(zip(sample.images, image_seeds))]
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
                images[i, j] = checked_image(image_shift.name, image, cached)
            else:
                missing.append((i, j, image, image_seed))
        for (i, j, image, _), computed in zip(missing, self._compute(image_shift, missing)):
            images[i, j] = valid = checked_image(image_shift.name, image, computed)
            self.computed += 1
            if self.cache is not None and isinstance(valid, Image.Image):
                self.cache.put(keys[i, j], valid)

        results: list[Sample | Exception] = []
        for i, sample in enumerate(samples):
            shifted = [images[i, j] for j in range(len(sample.images))]
            error = next((im for im in shifted if isinstance(im, Exception)), None)
            if error is not None:
                results.append(error)
                continue
            out = sample.with_changes(images=tuple(shifted)) if sample.images else sample
            if text_shift is not None:
                checked = checked_sample(text_shift.name, out, self._guarded(text_shift, out, rngs[i]))
                if isinstance(checked, Exception):
                    results.append(checked)
                    continue
                out = checked
            provenance = {"label": condition.label, "seed": seed,
                          "image_keys": [keys.get((i, j), "") for j in range(len(sample.images))]}
            results.append(out.with_changes(meta={**out.meta, "shift": provenance}))
        return results

    def _compute(self, shift: ImageShift,
                 missing: list[tuple[int, int, Image.Image, int]]) -> list[Image.Image | Exception]:
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
    def _guarded(shift: Shift, sample: Sample, rng: np.random.Generator) -> Sample | Exception:
        try:
            return shift.apply(sample, rng)
        except Exception as exc:  # noqa: BLE001 - a bad sample must not stop the batch
            return exc
