"""Image shifts: the 19 ImageNet-C corruptions, through the maintained `imagecorruptions-imaug` fork.

We wrap the library rather than re-implement it. Its randomness is pinned per image:
- 15 corruptions draw from numpy's global RNG, which `pinned_global_rngs` seeds with the image's seed;
- `impulse_noise` gets the seed as its `seed` argument (passed to scikit-image's `random_noise(rng=...)`);
- `glass_blur` seeds numba's own RNG from its `seed` argument; we run our bit-identical re-implementation
  with that seed (no numba compile per process); `brightness` and `saturate` run our bit-identical, faster
  HSV round trip, and `zoom_blur` our faster equivalent (`_fast_corruptions.py` documents and the tests check
  each against the library).
Any image mode is converted to RGB first (the corruptions expect HxWx3 uint8); images under 32 px on a side
(the library's minimum) are enlarged by an integer factor and reduced back afterwards. Output: RGB, same size.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

from vittle_bench.shifts import _fast_corruptions
from vittle_bench.shifts._global_rng import pinned_global_rngs
from vittle_bench.shifts._imaging import SEEDED_BY_IMAGE, ImageShift, to_rgb, with_min_side
from vittle_bench.shifts.base import ShiftFactory, register_shifts

# In the library's order: 15 "common" corruptions, then the 4 held-out validation ones.
IMAGENET_C = (
    "gaussian_noise", "shot_noise", "impulse_noise", "defocus_blur", "glass_blur", "motion_blur", "zoom_blur",
    "snow", "frost", "fog", "brightness", "contrast", "elastic_transform", "pixelate", "jpeg_compression",
    "speckle_noise", "gaussian_blur", "spatter", "saturate",
)
FAMILIES = {
    "noise": ("gaussian_noise", "shot_noise", "impulse_noise", "speckle_noise"),
    "blur": ("defocus_blur", "glass_blur", "motion_blur", "zoom_blur", "gaussian_blur"),
    "weather": ("snow", "frost", "fog", "spatter"),
    "digital": ("brightness", "contrast", "elastic_transform", "pixelate", "jpeg_compression", "saturate"),
}
LIBRARY_VERSION = "imagecorruptions-imaug-1.1.5"
MIN_SIDE = 32  # the library refuses smaller images
_OWN = {"glass_blur": "+vittle-exact-1", "zoom_blur": "+vittle-fast-1", "brightness": "+vittle-exact-1",
        "saturate": "+vittle-exact-1"}
# The corruptions whose output depends on the seed (tested): their versions carry SEEDED_BY_IMAGE.
RANDOM = ("gaussian_noise", "shot_noise", "impulse_noise", "glass_blur", "motion_blur", "snow", "frost", "fog",
          "elastic_transform", "speckle_noise", "spatter")


def _corrupt(array: np.ndarray, name: str, severity: int, seed: int) -> np.ndarray:
    if name == "glass_blur":
        return _fast_corruptions.glass_blur(array, severity, seed).astype(np.uint8)
    if name == "zoom_blur":
        return _fast_corruptions.zoom_blur(array, severity).astype(np.uint8)
    if name in ("brightness", "saturate"):
        return getattr(_fast_corruptions, name)(array, severity).astype(np.uint8)
    from imagecorruptions import corrupt  # imported on first use: it costs ~0.5 s

    if name == "impulse_noise":
        return corrupt(array, corruption_name=name, severity=severity, seed=seed)
    with pinned_global_rngs(seed):
        return corrupt(array, corruption_name=name, severity=severity)


@dataclass(frozen=True)
class Corruption(ImageShift):
    name: str
    severity: int
    kind: str = "image"
    version: str = LIBRARY_VERSION

    @property
    def family(self) -> str:
        return next(f for f, names in FAMILIES.items() if self.name in names)

    def params(self) -> dict[str, Any]:
        return {"library": "imagecorruptions", "corruption": self.name, "family": self.family,
                "library_severity": self.severity}

    def apply_image(self, image: Image.Image, seed: int) -> Image.Image:
        def run(rgb: Image.Image) -> Image.Image:
            array = np.asarray(rgb)
            out = _corrupt(array, self.name, self.severity, seed)
            result = Image.fromarray(np.uint8(out))
            return result if out.shape[:2] == array.shape[:2] else result.resize(rgb.size)

        return with_min_side(to_rgb(image), MIN_SIDE, run)


def _corruption(name: str) -> ShiftFactory:
    version = LIBRARY_VERSION + _OWN.get(name, "") + (SEEDED_BY_IMAGE if name in RANDOM else "")
    return lambda severity: Corruption(name, severity, version=version)


register_shifts({name: _corruption(name) for name in IMAGENET_C})
