"""Applying a condition to many samples: the shifted-image cache and worker processes, same bytes as `apply`.

`ShiftEngine.apply_many(condition, samples, seed)` returns, per sample, exactly what
`condition.apply(sample, seed)` returns (tested; the seed rule is defined there, base.py), or the exception it
raised (a per-sample error, never a crash of the batch). The engine holds every shift, plugins
included, to the contract (docs/plugins.md): a shifted image must be a PIL image of its input's size (another
mode is made RGB with `prepare_image`, as loaders do), and a shift must leave `answer`, `choices` and `context`
alone; a sample whose shift breaks it fails with a `ShiftContractError` naming the shift.

For shifts deriving from `ImageShift` (every built-in image shift), whose per-image step is
`apply_image(image, seed)`, each distinct image of a batch (by content key) is looked up in the
`ShiftedImageCache` first; misses are computed once each, inline or, with `workers > 1`, in a pool of worker
processes (forkserver: no inherited threads or model weights; started in the background with the engine, so
their start-up overlaps the caller's model loading), then stored. `counts` tells per condition how many
images were computed and how many were served from the cache (or from another sample of the same batch). Each
shifted sample carries its provenance in `meta["shift"]`: condition label, seed, and its shifted-image keys.
"""

from __future__ import annotations

import multiprocessing
import threading
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

import numpy as np
from PIL import Image

from vittle_bench.images import prepare_image
from vittle_bench.schema import Sample, image_digest
from vittle_bench.shifts._contract import Shift
from vittle_bench.shifts._imaging import ImageShift
from vittle_bench.shifts.base import JointShift, ShiftCondition
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
        self.counts: dict[str, Counter[str]] = {}  # per condition label: images computed / served from cache
        self._pool: ProcessPoolExecutor | None = None
        self._pool_lock = threading.Lock()
        if self.workers > 1:  # start the workers in the background: their start-up overlaps the caller's work
            threading.Thread(target=self._executor, name="vittle-shift-workers", daemon=True).start()

    def _executor(self) -> ProcessPoolExecutor:
        with self._pool_lock:
            if self._pool is None:
                context = multiprocessing.get_context("forkserver")
                context.set_forkserver_preload(_PRELOAD)
                self._pool = ProcessPoolExecutor(self.workers, mp_context=context, initializer=_warm)
                for _ in range(self.workers):  # the pool starts a worker for each task no idle worker can take
                    self._pool.submit(_warm)
            return self._pool

    def close(self) -> None:
        with self._pool_lock:
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
        image_shift = condition.image_shift
        if image_shift is None:  # text, clean, domain, or an image shift without the per-image step
            outs = [checked_sample(condition.name, s, self._guarded(condition, s, seed)) for s in samples]
            return [r if isinstance(r, Exception) else r.with_changes(meta={**r.meta, "shift": {
                "label": condition.label, "seed": seed, "image_keys": []}}) for r in outs]
        keys, images = self._shifted_images(condition, image_shift, samples, seed)
        return [self._assemble(condition, sample, [keys[i, j] for j in range(len(sample.images))], images, seed)
                for i, sample in enumerate(samples)]

    def _assemble(self, condition: ShiftCondition, sample: Sample, keys: list[str | Exception],
                  images: dict[str, Image.Image | Exception], seed: int) -> Sample | Exception:
        """One sample under the condition from its shifted images, then its text shift (a joint condition)."""
        shifted = [images[key] if isinstance(key, str) else key for key in keys]
        error = next((im for im in shifted if isinstance(im, Exception)), None)
        if error is not None:
            return error
        out = sample.with_changes(images=tuple(shifted)) if sample.images else sample
        if isinstance(condition.shift, JointShift):
            text = condition.shift.text
            checked = checked_sample(text.name, out,
                                     self._guarded_text(text, out, condition.text_rng(seed, sample.sample_id)))
            if isinstance(checked, Exception):
                return checked
            out = checked
        provenance = {"label": condition.label, "seed": seed,
                      "image_keys": [key if isinstance(key, str) else "" for key in keys]}
        return out.with_changes(meta={**out.meta, "shift": provenance})

    def _shifted_images(self, condition: ShiftCondition, shift: ImageShift, samples: Sequence[Sample], seed: int
                        ) -> tuple[dict[tuple[int, int], str | Exception], dict[str, Image.Image | Exception]]:
        """Per (sample, image) its shifted-image key (or why it has none), and per distinct key its shifted image:
        each distinct key is read from the cache or computed once, however many samples show the image."""
        keys: dict[tuple[int, int], str | Exception] = {}
        sources: dict[str, tuple[Image.Image, int]] = {}
        for i, sample in enumerate(samples):
            for j, image in enumerate(sample.images):
                try:
                    digest = image_digest(image)
                    image_seed = condition.image_seed(seed, digest)
                    keys[i, j] = key = shifted_image_key(digest, shift, image_seed)
                except Exception as exc:  # noqa: BLE001 - e.g. an image that cannot be read
                    keys[i, j] = exc
                    continue
                sources.setdefault(key, (image, image_seed))
        count = self.counts.setdefault(condition.label, Counter())
        count["served_from_cache"] += len(keys) - len(sources) - sum(isinstance(k, Exception) for k in keys.values())
        images: dict[str, Image.Image | Exception] = {}
        for key, (image, _) in sources.items():
            cached = self.cache.get(key) if self.cache is not None else None
            if cached is not None:
                images[key] = checked_image(shift.name, image, cached)
        missing = [(key, *source) for key, source in sources.items() if key not in images]
        count["served_from_cache"] += len(images)
        count["computed"] += len(missing)
        self.computed += len(missing)
        for (key, image, _), computed in zip(missing, self._compute(shift, missing)):
            images[key] = valid = checked_image(shift.name, image, computed)
            if self.cache is not None and isinstance(valid, Image.Image):
                self.cache.put(key, valid)
        return keys, images

    def _compute(self, shift: ImageShift, missing: list[tuple[str, Image.Image, int]]) -> list[Image.Image | Exception]:
        if self.workers == 1 or len(missing) < 2:
            return [_shift_image(shift, image, image_seed) for _, image, image_seed in missing]
        chunk = max(1, len(missing) // (4 * self.workers))
        try:
            return list(self._executor().map(_shift_image, [shift] * len(missing), [m[1] for m in missing],
                                             [m[2] for m in missing], chunksize=chunk))
        except BrokenProcessPool as exc:  # a worker died (e.g. out of memory): these samples fail, the run goes on
            self._pool = None
            return [RuntimeError(f"shift worker process died: {exc}") for _ in missing]

    @staticmethod
    def _guarded(condition: ShiftCondition, sample: Sample, seed: int) -> Sample | Exception:
        try:
            return condition.apply(sample, seed)
        except Exception as exc:  # noqa: BLE001 - a bad sample must not stop the batch
            return exc

    @staticmethod
    def _guarded_text(shift: Shift, sample: Sample, rng: np.random.Generator) -> Sample | Exception:
        try:
            return shift.apply(sample, rng)
        except Exception as exc:  # noqa: BLE001 - a bad sample must not stop the batch
            return exc
