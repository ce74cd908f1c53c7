"""Image shifts: the ImageNet-C corruptions, through the maintained `imagecorruptions-imaug` fork.

We wrap the library rather than re-implement it; it reads numpy's global RNG, which `seeded_global_rngs`
pins to the sample's own RNG. Any image mode is converted to RGB first (the corruptions expect HxWx3 uint8).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from vittle_bench.schema import Sample
from vittle_bench.shifts._global_rng import seeded_global_rngs
from vittle_bench.shifts.base import SHIFTS

# The corruptions whose randomness goes through numpy's global RNG (and so can be pinned); the others
# (impulse_noise, glass_blur) draw from unseeded generators inside the library and are left out until
# they are wrapped with their own seeding.
IMAGENET_C = (
    "gaussian_noise", "shot_noise", "speckle_noise", "defocus_blur", "motion_blur", "zoom_blur", "gaussian_blur",
    "snow", "frost", "fog", "spatter", "brightness", "contrast", "saturate", "elastic_transform", "pixelate",
    "jpeg_compression",
)


def to_rgb(image: Image.Image) -> Image.Image:
    """RGB view of any PIL image; transparency is composited on white, 16-bit greyscale is rescaled to 8 bits."""
    if image.mode == "RGB":
        return image
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        array = np.asarray(image, dtype=np.float64)
        peak = array.max() or 1.0
        return Image.fromarray((array / peak * 255).astype(np.uint8)).convert("RGB")
    if image.mode in ("RGBA", "LA", "P", "PA"):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


@dataclass(frozen=True)
class Corruption:
    name: str
    severity: int
    kind: str = "image"
    version: str = "imagecorruptions-imaug-1.1.5"

    def apply(self, sample: Sample, rng: np.random.Generator) -> Sample:
        from imagecorruptions import corrupt  # imported on first use: it costs ~0.5 s

        shifted = []
        for image in sample.images:
            array = np.asarray(to_rgb(image))
            with seeded_global_rngs(rng):
                out = corrupt(array, corruption_name=self.name, severity=self.severity)
            shifted.append(Image.fromarray(np.uint8(out)).resize(image.size) if out.shape[:2] != array.shape[:2]
                           else Image.fromarray(np.uint8(out)))
        return sample.with_changes(images=tuple(shifted))


def _register(name: str) -> None:
    SHIFTS.register(name)(lambda severity: Corruption(name, severity))


for _name in IMAGENET_C:
    _register(_name)
