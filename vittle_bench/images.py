"""Image loading: the one path by which every loader turns a file, encoded bytes or a decoded image into the pixels
a Sample holds (decode, orient, bound the size, prepare), so that every source shows a model the same pixels for
the same file and every condition (clean, text, image, joint, domain) starts from them: a measured drop is the
shift's alone.

Imports only PIL and numpy, so loaders, shifts and commands can all depend on it.
"""

from __future__ import annotations

import hashlib
import io
import math
import os
import threading
from collections.abc import Hashable, Sequence
from pathlib import Path
from typing import IO, Any

import numpy as np
from cachetools import LRUCache
from PIL import ExifTags, Image, ImageOps

ImageSource = str | Path | bytes | IO[bytes] | Image.Image

# Pillow's own default for Image.MAX_IMAGE_PIXELS (1024**3 // 4 // 3: a quarter GiB of 24-bit pixels).
DEFAULT_MAX_IMAGE_PIXELS = 89_478_485
MAX_IMAGE_PIXELS_ENV = "VITTLE_BENCH_MAX_IMAGE_PIXELS"
# Set this (library use, or a run option) to override the environment variable; None defers to it.
MAX_IMAGE_PIXELS: int | None = None

_SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N")
_SIXTEEN_BIT_MAX = 2**16 - 1
_INT32_MAX = 2**31 - 1
_DCT_SCALES = (8, 4, 2)  # the reductions libjpeg decodes at directly (Image.draft)
_SWAPS_AXES = (5, 6, 7, 8)  # EXIF orientations whose transpose turns width into height
_PILLOW_LIMIT = threading.Lock()
# Decoded images by source, the least recently used dropped past this many bytes of pixels: the questions about
# one image, and the conditions and tasks that show it again, decode it once per process.
DECODED_IMAGES_BYTES = 128 * 2**20


def max_image_pixels() -> int:
    """The pixel count beyond which load_image downscales: MAX_IMAGE_PIXELS when set, else the environment
    variable VITTLE_BENCH_MAX_IMAGE_PIXELS, else Pillow's default. Raises ValueError for a value that is not a
    positive whole number, so that a mistyped setting stops a run instead of being ignored."""
    value: Any = MAX_IMAGE_PIXELS
    where = "vittle_bench.images.MAX_IMAGE_PIXELS"
    if value is None:
        raw = os.environ.get(MAX_IMAGE_PIXELS_ENV, "").strip()
        if not raw:
            return DEFAULT_MAX_IMAGE_PIXELS
        where = MAX_IMAGE_PIXELS_ENV
        try:
            value = int(raw)
        except ValueError:
            value = raw
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{where}={value!r} is not a positive whole number of pixels "
                         f"(default {DEFAULT_MAX_IMAGE_PIXELS}, Pillow's)")
    return value


def load_image(source: ImageSource) -> Image.Image:
    """The image as a Sample holds it, from a path, encoded bytes (or a binary file) or a decoded image:

    1. decode; an image with more than max_image_pixels() pixels is reduced by the smallest whole factor k that
       brings it within the limit (each side divided by k, rounded up). A JPEG is decoded at 1/2, 1/4 or 1/8
       scale directly (libjpeg's DCT scaling, Image.draft), so its full size never sits in memory; what is left
       of k, and every other format, is a box average (Image.resize with BOX) of the prepared pixels;
    2. orient by the EXIF Orientation tag (ImageOps.exif_transpose), as `datasets` decodes hub images;
    3. prepare_image (8-bit RGB).

    A downscaled image carries its original (oriented) size in `info["downscaled_from"]`; loaders copy it into
    the Sample's meta (downscale_meta). Pillow's own decompression-bomb check is not applied: this limit
    replaces it, so a large image is downscaled rather than warned about or refused. Raises on data that cannot
    be decoded or prepared; loaders record that on the sample.

    A file (by path, device, inode, size and modification time) or encoded bytes (by their hash) decoded before
    in this process under the same limit is served from a bounded memory of decoded images, as a copy: every
    caller owns what it gets.
    """
    limit = max_image_pixels()
    if isinstance(source, Image.Image):
        return _bounded(source, source.size, limit)
    key = _source_key(source, limit)
    if key is None:
        return _decoded(source, limit)
    with _DECODED_LOCK:
        kept = _DECODED.get(key)
    if kept is not None:
        return kept.copy()
    image = _decoded(source, limit)
    if _pixel_bytes(image) <= DECODED_IMAGES_BYTES:  # one larger than the whole memory is not kept
        with _DECODED_LOCK:
            _DECODED[key] = image.copy()
    return image


def _pixel_bytes(image: Image.Image) -> int:
    return image.width * image.height * len(image.getbands())


_DECODED: LRUCache[Hashable, Image.Image] = LRUCache(DECODED_IMAGES_BYTES, getsizeof=_pixel_bytes)
_DECODED_LOCK = threading.Lock()  # the runner loads samples in a background thread too


def _source_key(source: str | Path | bytes | IO[bytes], limit: int) -> Hashable | None:
    """What identifies a file's or encoded bytes' content cheaply (None for an open binary file: not memoised).
    Raises what os.stat raises for a missing file, as decoding it would."""
    if isinstance(source, bytes):
        return "bytes", hashlib.blake2b(source, digest_size=16).digest(), limit
    if isinstance(source, (str, Path)):
        st = os.stat(source)
        return "file", os.path.abspath(source), st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, limit
    return None


def _decoded(source: str | Path | bytes | IO[bytes], limit: int) -> Image.Image:
    """Decode (reduced by JPEG DCT scaling where the limit asks for it), orient, prepare and bound."""
    if isinstance(source, bytes):
        source = io.BytesIO(source)
    with _open_without_pillow_limit(source) as image:
        size = image.size
        factor = reduction_factor(size, limit)
        scale = next((s for s in _DCT_SCALES if s <= factor and s <= min(size)), 1)
        if scale > 1:  # asking for (w // s, h // s) makes Pillow's JPEG reader pick exactly 1/s; others ignore it
            image.draft(None, (size[0] // scale, size[1] // scale))
        image.load()
        return _bounded(image, size, limit)


def reduction_factor(size: tuple[int, int], limit: int) -> int:
    """The smallest whole k for which ceil(w / k) * ceil(h / k) <= limit (1 when the image is within it)."""
    width, height = size
    k = max(1, math.ceil(math.sqrt(width * height / limit)))
    while math.ceil(width / k) * math.ceil(height / k) > limit:
        k += 1
    return k


def downscale_meta(images: Sequence[Image.Image]) -> dict[str, Any]:
    """{"downscaled_from": [[w, h] or None per image]} when load_image downscaled any of `images`, else {}."""
    sizes = [image.info.get("downscaled_from") for image in images]
    return {"downscaled_from": [list(s) if s else None for s in sizes]} if any(sizes) else {}


def _open_without_pillow_limit(source: str | Path | IO[bytes]) -> Image.Image:
    """Image.open (which reads only the header) with Pillow's module-wide bomb check off for the call."""
    with _PILLOW_LIMIT:
        saved, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
        try:
            return Image.open(source)
        finally:
            Image.MAX_IMAGE_PIXELS = saved


def _bounded(image: Image.Image, original: tuple[int, int], limit: int) -> Image.Image:
    """Orient, prepare and, past the limit, box-average an image decoded at its file size `original` or at a
    reduced JPEG scale."""
    orientation = image.getexif().get(ExifTags.Base.Orientation, 1)
    if orientation != 1:  # exif_transpose copies even an upright image: only a tagged one pays for it
        image = ImageOps.exif_transpose(image)
        if orientation in _SWAPS_AXES:
            original = (original[1], original[0])
    image = prepare_image(image)
    factor = reduction_factor(original, limit)
    if factor == 1:
        return image
    target = (math.ceil(original[0] / factor), math.ceil(original[1] / factor))
    if image.size != target:
        image = image.resize(target, Image.Resampling.BOX)
    image.info["downscaled_from"] = original
    return image


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
