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
from typing import Any

import numpy as np
from PIL import Image, ImageEnhance

from vittle_bench.schema import image_digest
from vittle_bench.shifts._imaging import ImageShift, to_rgb
from vittle_bench.shifts.base import register_shifts

ROTATE_DEGREES = (5, 10, 15, 20, 30)
CROP_KEEP = (0.9, 0.8, 0.7, 0.6, 0.5)
JITTER = (0.1, 0.2, 0.3, 0.4, 0.5)
HUE_TURN = (0.02, 0.04, 0.06, 0.08, 0.10)
JPEG_QUALITY = (90, 70, 50, 30, 10)
VERSION = "vittle-photometric-1"


@dataclass(frozen=True)
class Rotate(ImageShift):
    severity: int
    name: str = "rotate"
    version: str = VERSION

    def params(self) -> dict[str, Any]:
        return {"degrees": ROTATE_DEGREES[self.severity - 1], "direction": "random", "fill": "black"}

    def apply_image(self, image: Image.Image, seed: int) -> Image.Image:
        sign = 1 if np.random.default_rng(seed).random() < 0.5 else -1
        return to_rgb(image).rotate(sign * ROTATE_DEGREES[self.severity - 1], resample=Image.Resampling.BILINEAR,
                                    expand=False, fillcolor=(0, 0, 0))


@dataclass(frozen=True)
class CropZoom(ImageShift):
    severity: int
    name: str = "crop_zoom"
    version: str = VERSION

    def params(self) -> dict[str, Any]:
        return {"keep_fraction": CROP_KEEP[self.severity - 1], "position": "centre", "resample": "bicubic"}

    def apply_image(self, image: Image.Image, seed: int) -> Image.Image:
        rgb = to_rgb(image)
        keep = CROP_KEEP[self.severity - 1]
        width, height = max(1, round(rgb.width * keep)), max(1, round(rgb.height * keep))
        left, top = (rgb.width - width) // 2, (rgb.height - height) // 2
        return rgb.crop((left, top, left + width, top + height)).resize(rgb.size, Image.Resampling.BICUBIC)


def _shift_hue(image: Image.Image, turn: float) -> Image.Image:
    hsv = np.array(image.convert("HSV"))
    hsv[..., 0] = (hsv[..., 0].astype(np.int16) + round(turn * 256)) % 256
    return Image.fromarray(hsv, "HSV").convert("RGB")


@dataclass(frozen=True)
class ColorJitter(ImageShift):
    severity: int
    name: str = "color_jitter"
    version: str = VERSION

    def params(self) -> dict[str, Any]:
        a = JITTER[self.severity - 1]
        return {"brightness": a, "contrast": a, "saturation": a, "hue_turn": HUE_TURN[self.severity - 1],
                "signs": "from the image digest", "order": "brightness, contrast, saturation, hue"}

    def apply_image(self, image: Image.Image, seed: int) -> Image.Image:
        out = to_rgb(image)
        signs = np.where(np.random.default_rng(int(image_digest(out)[:16], 16)).random(4) < 0.5, -1.0, 1.0)
        a = JITTER[self.severity - 1]
        for sign, enhancer in zip(signs[:3], (ImageEnhance.Brightness, ImageEnhance.Contrast, ImageEnhance.Color)):
            out = enhancer(out).enhance(1.0 + sign * a)
        return _shift_hue(out, signs[3] * HUE_TURN[self.severity - 1])


@dataclass(frozen=True)
class JpegQuality(ImageShift):
    severity: int
    name: str = "jpeg_quality"
    version: str = VERSION

    def params(self) -> dict[str, Any]:
        return {"quality": JPEG_QUALITY[self.severity - 1], "encoder": "PIL/libjpeg"}

    def apply_image(self, image: Image.Image, seed: int) -> Image.Image:
        buffer = io.BytesIO()
        to_rgb(image).save(buffer, format="JPEG", quality=JPEG_QUALITY[self.severity - 1])
        with Image.open(buffer) as decoded:
            return decoded.convert("RGB")


register_shifts({"rotate": Rotate, "crop_zoom": CropZoom, "color_jitter": ColorJitter, "jpeg_quality": JpegQuality})
