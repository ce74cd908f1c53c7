"""Photometric and geometric image shifts that MLLM robustness studies use beside ImageNet-C.

ImageNet-C has no rotation, no crop/zoom and no colour jitter, and its JPEG levels start at quality 25; these
fill the gap with plain PIL operations (deterministic given the image's seed). Severity scales (1 -> 5):

| shift         | what changes with severity                                                          |
|---------------|-------------------------------------------------------------------------------------|
| rotate        | angle 5, 10, 15, 20, 30 degrees, direction drawn per image; corners filled black    |
| crop_zoom     | keep the central 90, 80, 70, 60, 50 % of each side, resized back (a zoom-in)        |
| color_jitter  | brightness, contrast, saturation x (1 +/- 0.1 ... 0.5), hue +/- 0.02 ... 0.10 turn    |
| jpeg_quality  | JPEG quality 90, 70, 50, 30, 10 (ImageNet-C's jpeg_compression: 25 ... 7)            |

Magnitudes are fixed per severity, so severity orders the distortion. The rotation direction is drawn from
the image's seed; the four jitter directions are drawn from the image's content digest instead, so one image
drifts the same way at every severity (with per-severity random signs, brightening by 40 % can disturb less
than darkening by 30 %). The crop is centred for the same reason: a random window misaligns more at
severity 1 than a centred zoom at 5. Output: RGB, same size as the input.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
from PIL import Image, ImageEnhance

from vittle_bench.schema import image_digest
from vittle_bench.shifts._imaging import SEEDED_BY_IMAGE, ImageShift, to_rgb
from vittle_bench.shifts.base import register_shifts

ROTATE_DEGREES = (5, 10, 15, 20, 30)
CROP_KEEP = (0.9, 0.8, 0.7, 0.6, 0.5)
JITTER = (0.1, 0.2, 0.3, 0.4, 0.5)
HUE_TURN = (0.02, 0.04, 0.06, 0.08, 0.10)
JPEG_QUALITY = (90, 70, 50, 30, 10)
VERSION = "vittle-photometric-1"


@dataclass(frozen=True)
class PhotometricShift(ImageShift):
    """A PIL shift whose magnitudes at severity s are entry s - 1 of its per-severity tables (`levels`); its
    manifest parameters are those magnitudes followed by its fixed settings (`settings`)."""

    severity: int
    version: str = VERSION
    name: ClassVar[str]
    levels: ClassVar[dict[str, tuple[Any, ...]]]
    settings: ClassVar[dict[str, Any]]

    def level(self, parameter: str) -> Any:
        return self.levels[parameter][self.severity - 1]

    def params(self) -> dict[str, Any]:
        return {**{parameter: self.level(parameter) for parameter in self.levels}, **self.settings}


@dataclass(frozen=True)
class Rotate(PhotometricShift):
    version: str = VERSION + SEEDED_BY_IMAGE  # the only one of these four whose pixels depend on the seed
    name = "rotate"
    family = "geometric"
    levels = {"degrees": ROTATE_DEGREES}
    settings = {"direction": "random", "fill": "black"}

    def apply_image(self, image: Image.Image, seed: int) -> Image.Image:
        sign = 1 if np.random.default_rng(seed).random() < 0.5 else -1
        return to_rgb(image).rotate(sign * self.level("degrees"), resample=Image.Resampling.BILINEAR,
                                    expand=False, fillcolor=(0, 0, 0))


@dataclass(frozen=True)
class CropZoom(PhotometricShift):
    name = "crop_zoom"
    family = "geometric"
    levels = {"keep_fraction": CROP_KEEP}
    settings = {"position": "centre", "resample": "bicubic"}

    def apply_image(self, image: Image.Image, seed: int) -> Image.Image:
        rgb = to_rgb(image)
        keep = self.level("keep_fraction")
        width, height = max(1, round(rgb.width * keep)), max(1, round(rgb.height * keep))
        left, top = (rgb.width - width) // 2, (rgb.height - height) // 2
        return rgb.crop((left, top, left + width, top + height)).resize(rgb.size, Image.Resampling.BICUBIC)


_ENHANCERS = (("brightness", ImageEnhance.Brightness), ("contrast", ImageEnhance.Contrast),
              ("saturation", ImageEnhance.Color))


def _shift_hue(image: Image.Image, turn: float) -> Image.Image:
    hsv = np.array(image.convert("HSV"))
    hsv[..., 0] = (hsv[..., 0].astype(np.int16) + round(turn * 256)) % 256
    return Image.fromarray(hsv, "HSV").convert("RGB")


@dataclass(frozen=True)
class ColorJitter(PhotometricShift):
    name = "color_jitter"
    family = "digital"
    levels = {"brightness": JITTER, "contrast": JITTER, "saturation": JITTER, "hue_turn": HUE_TURN}
    settings = {"signs": "from the image digest", "order": "brightness, contrast, saturation, hue"}

    def apply_image(self, image: Image.Image, seed: int) -> Image.Image:
        out = to_rgb(image)
        signs = np.where(np.random.default_rng(int(image_digest(out)[:16], 16)).random(4) < 0.5, -1.0, 1.0)
        for sign, (parameter, enhancer) in zip(signs[:3], _ENHANCERS):
            out = enhancer(out).enhance(1.0 + sign * self.level(parameter))
        return _shift_hue(out, signs[3] * self.level("hue_turn"))


@dataclass(frozen=True)
class JpegQuality(PhotometricShift):
    name = "jpeg_quality"
    family = "digital"
    levels = {"quality": JPEG_QUALITY}
    settings = {"encoder": "PIL/libjpeg"}

    def apply_image(self, image: Image.Image, seed: int) -> Image.Image:
        buffer = io.BytesIO()
        to_rgb(image).save(buffer, format="JPEG", quality=self.level("quality"))
        with Image.open(buffer) as decoded:
            return decoded.convert("RGB")


register_shifts({shift.name: shift for shift in (Rotate, CropZoom, ColorJitter, JpegQuality)})
