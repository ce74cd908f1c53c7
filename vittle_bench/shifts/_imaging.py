"""Shared image plumbing for image shifts: input preparation (`to_rgb`), tiny images, per-image seeding.

Image shifts derive from `ImageShift` and implement `apply_image(image, seed)`. In a run each image's seed
comes from its content and the condition (`ShiftCondition.apply`, base.py), so an image is shifted once per
condition however many questions show it; `ImageShift.apply(sample, rng)`, the contract's call for a caller
that holds only a generator, draws one seed per image from it instead. The per-image step is what lets the
engine cache shifted images by content hash and farm them out to worker processes without changing a byte.
"""

from __future__ import annotations

import math
from abc import abstractmethod
from collections.abc import Callable

import numpy as np
from PIL import Image

from vittle_bench.images import prepare_image
from vittle_bench.schema import Sample
from vittle_bench.shifts._contract import Shift
from vittle_bench.shifts._global_rng import draw_seed

# Shifts prepare their input with the loaders' function: a no-op on the prepared images every loader delivers,
# and the same pixels a loader would deliver when a shift is called directly on an image of another mode.
to_rgb = prepare_image


# Appended to the version of every image shift whose pixels depend on its seed: the seed rule changed from one
# seed per question to one per image content (base.py), so the same (name, version, seed) no longer meant the
# same pixels.
SEEDED_BY_IMAGE = "+seed-by-image"


def with_min_side(image: Image.Image, min_side: int,
                  transform: Callable[[Image.Image], Image.Image]) -> Image.Image:
    """Apply `transform` to an image at least `min_side` pixels on each side: smaller images are enlarged by an
    integer factor (nearest neighbour) and the result is reduced back to the original size (box filter)."""
    if min(image.size) >= min_side:
        return transform(image)
    factor = math.ceil(min_side / min(image.size))
    large = image.resize((image.width * factor, image.height * factor), Image.Resampling.NEAREST)
    return transform(large).resize(image.size, Image.Resampling.BOX)


def draw_image_seeds(rng: np.random.Generator, n: int) -> list[int]:
    """One 32-bit seed per image, drawn in image order from the sample's generator."""
    return [draw_seed(rng) for _ in range(n)]


class ImageShift(Shift):
    """Base for image shifts: subclasses are frozen dataclasses with name/severity/version and `apply_image`.
    Deriving from it is what declares the per-image step to the engine."""

    kind = "image"

    @abstractmethod
    def apply_image(self, image: Image.Image, seed: int) -> Image.Image: ...

    def apply(self, sample: Sample, rng: np.random.Generator) -> Sample:
        if not sample.images:
            return sample
        seeds = draw_image_seeds(rng, len(sample.images))
        return sample.with_changes(images=tuple(self.apply_image(im, s) for im, s in zip(sample.images, seeds)))
