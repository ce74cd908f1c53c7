"""Shared image plumbing for image shifts: any PIL mode to RGB, tiny images, and the per-image seeding.

Image shifts implement `apply_image(image, seed)`; `ImageShift.apply` draws one seed per image from the
sample's RNG (in image order) and maps them. Exposing the per-image step is what lets the engine cache
shifted images by content hash and farm them out to worker processes without changing a single byte.
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np
from PIL import Image

from vittle_bench.schema import Sample
from vittle_bench.shifts._global_rng import draw_seed

_HIGH_BIT_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I", "F")
_ALPHA_MODES = ("RGBA", "LA", "P", "PA", "RGBa", "La")


def to_rgb(image: Image.Image) -> Image.Image:
    """RGB view of any PIL image: transparency is composited on white, 16-bit / 32-bit / float images are
    rescaled to 8 bits (by their peak, or min-max when negative). Raises ValueError for an empty image."""
    if image.width == 0 or image.height == 0:
        raise ValueError(f"empty image ({image.width}x{image.height})")
    if image.mode == "RGB":
        return image
    if image.mode in _HIGH_BIT_MODES:
        array = np.nan_to_num(np.asarray(image, dtype=np.float64))
        low = min(float(array.min()), 0.0)
        span = float(array.max()) - low or 1.0
        return Image.fromarray(((array - low) / span * 255).astype(np.uint8)).convert("RGB")
    if image.mode in _ALPHA_MODES:
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    try:
        return image.convert("RGB")
    except (ValueError, OSError) as exc:
        raise ValueError(f"image mode {image.mode!r} cannot be converted to RGB ({exc})") from None


def with_min_side(image: Image.Image, min_side: int,
                  transform: Callable[[Image.Image], Image.Image]) -> Image.Image:
    """Apply `transform` to an image at least `min_side` pixels on each side: smaller images are enlarged by an
    integer factor (nearest neighbour) and the result is reduced back to the original size (box filter)."""
    if min(image.size) >= min_side:
        return transform(image)
    factor = math.ceil(min_side / min(image.size))
    large = image.resize((image.width * factor, image.height * factor), Image.NEAREST)
    return transform(large).resize(image.size, Image.BOX)


def draw_image_seeds(rng: np.random.Generator, n: int) -> list[int]:
    """One 32-bit seed per image, drawn in image order from the sample's generator."""
    return [draw_seed(rng) for _ in range(n)]


class ImageShift:
    """Base for image shifts: subclasses are frozen dataclasses with name/severity/version and `apply_image`."""

    kind = "image"
    name: str
    severity: int
    version: str

    def apply_image(self, image: Image.Image, seed: int) -> Image.Image:
        raise NotImplementedError

    def params(self) -> dict:
        return {}

    def apply(self, sample: Sample, rng: np.random.Generator) -> Sample:
        if not sample.images:
            return sample
        seeds = draw_image_seeds(rng, len(sample.images))
        return sample.with_changes(images=tuple(self.apply_image(im, s) for im, s in zip(sample.images, seeds)))
