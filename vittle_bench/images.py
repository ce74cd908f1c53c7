"""Image preparation: the one function every loader applies when it builds a Sample, so that every condition
(clean, text, image, joint, domain) starts from the same pixels and a measured drop is the shift's alone.

Imports only PIL and numpy, so loaders, shifts and commands can all depend on it.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

_SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N")
_SIXTEEN_BIT_MAX = 2**16 - 1
_INT32_MAX = 2**31 - 1


def prepare_image(image: Image.Image) -> Image.Image:
    """The image as every model and shift receives it: 8-bit RGB of the same size.

    - RGB is returned as it is (the same object).
    - 8-bit modes (RGBA, LA, P with or without transparency, L, 1, CMYK, YCbCr, ...) get `image.convert("RGB")`,
      exactly what the papers' pipelines do (LLaVA / Vittle: `Image.open(f).convert("RGB")`; lmms-eval:
      `doc["image"].convert("RGB")`): alpha is dropped, not composited, so a transparent pixel shows its colour.
    - Where PIL's convert is broken (it clips 16-bit, 32-bit and float values to 0-255, so a 16-bit photo comes
      out white), the grey value v is rescaled by the format's full range and rounded to the nearest level:
      I;16* (16-bit): round(v * 255 / 65535); I (32-bit integer, which older Pillow also decodes 16-bit PNGs
      into): the same 16-bit scale when every value lies in 0..65535, else round(v * 255 / (2**31 - 1)) with
      negatives at 0; F (float): round(v * 255) over the float convention 0..1, clipped, NaN as 0. The grey
      level is copied to R, G and B.

    Raises ValueError for an empty image or a mode PIL cannot convert; loaders record it on the sample.
    """
    if image.width == 0 or image.height == 0:
        raise ValueError(f"empty image ({image.width}x{image.height})")
    if image.mode == "RGB":
        return image
    if image.mode in _SIXTEEN_BIT_MODES or image.mode in ("I", "F"):
        return Image.fromarray(_grey_levels(image), "L").convert("RGB")
    try:
        return image.convert("RGB")
    except (ValueError, OSError) as exc:
        raise ValueError(f"image mode {image.mode!r} cannot be converted to RGB ({exc})") from None


def _grey_levels(image: Image.Image) -> np.ndarray:
    """8-bit grey levels of a 16-bit, 32-bit integer or float image, by the rules in prepare_image."""
    values = np.asarray(image, dtype=np.float64)
    if image.mode == "F":
        scaled = np.clip(np.nan_to_num(values, nan=0.0), 0.0, 1.0) * 255
    else:
        top = _SIXTEEN_BIT_MAX if image.mode != "I" or (values.min() >= 0 and values.max() <= _SIXTEEN_BIT_MAX) \
            else _INT32_MAX
        scaled = np.clip(values, 0, top) * (255 / top)
    return np.rint(scaled).astype(np.uint8)
