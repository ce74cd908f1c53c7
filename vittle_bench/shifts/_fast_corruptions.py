"""Faster re-implementations of four imagecorruptions-imaug 1.1.5 corruptions, tested against the library.

Why: `glass_blur` runs a numba-compiled pixel loop that is compiled in every new process (~2.4 s before the
first image; the loop itself is fast afterwards), and `zoom_blur` calls scipy's generic `ndimage.zoom` 11-16
times per image (~0.2 s for 336 px, 40 % of the 19 corruptions). Both matter when shifts run in short-lived
worker processes. `brightness` and `saturate` were then the slowest two: scikit-image's HSV conversions
stack six full-size candidate images and `np.choose` among them.

- `glass_blur`: **bit-identical** to `imagecorruptions.corrupt(x, "glass_blur", s, seed=seed)`. The library
  seeds numba's Mersenne Twister with `seed` and, for every pixel of the inner region in reverse raster order,
  draws `(dx, dy) = randint(-d, d, size=2)` and copies the pixel at `(h+dy, w+dx)` into `(h, w)` (its tuple
  "swap" of two array views copies in one direction only). We draw the same integers from numpy's MT19937 with
  the same legacy seeding and numba's masked-rejection rule, and resolve the sequential copies at once: a
  pixel whose source was already overwritten earlier in the pass takes that pixel's final source (pointer
  jumping), otherwise the source's value at the start of the pass.
- `zoom_blur`: the same bilinear zooms (scipy's `order=1`, `grid_mode=False` coordinate mapping:
  out i -> in i*(n_crop-1)/(n_out-1)) evaluated with two gathers in float32 instead of scipy's float64
  spline code. Tolerance (tested): after the library's uint8 conversion, at most 1 grey level apart on at
  most 0.1 % of pixel values.
- `brightness`, `saturate`: **bit-identical** (the float output, hence every byte). The library's steps on
  scikit-image 0.26's `rgb2hsv` / `hsv2rgb` formulas, each value computed by the same float operations in
  the same order; only how values are selected changes (`np.where` for the hue's masked assignments, a
  gather instead of stacking six candidate images for `np.choose`), and selecting a value does not change it.
"""

from __future__ import annotations

import numpy as np
from skimage.filters import gaussian

# (sigma, max_delta, iterations) per severity: imagecorruptions-imaug 1.1.5, glass_blur.
GLASS_BLUR = [(0.7, 1, 2), (0.9, 2, 1), (1, 2, 3), (1.1, 3, 2), (1.5, 4, 2)]
# Zoom factors per severity: imagecorruptions-imaug 1.1.5, zoom_blur.
ZOOM_BLUR = [np.arange(1, 1.11, 0.01), np.arange(1, 1.16, 0.01), np.arange(1, 1.21, 0.02),
             np.arange(1, 1.26, 0.02), np.arange(1, 1.31, 0.03)]
_MT_N = 624


def _legacy_mt19937(seed: int) -> np.random.MT19937:
    """MT19937 seeded like `np.random.seed(seed)` / numba's `np.random.seed` (Knuth's init_genrand)."""
    key = [seed & 0xFFFFFFFF]
    for i in range(1, _MT_N):
        prev = key[-1]
        key.append((1812433253 * (prev ^ (prev >> 30)) + i) & 0xFFFFFFFF)
    bit_generator = np.random.MT19937()
    bit_generator.state = {"bit_generator": "MT19937", "state": {"key": np.array(key, dtype=np.uint32), "pos": _MT_N}}
    return bit_generator


def _randint_pairs(bit_generator: np.random.MT19937, delta: int, count: int) -> tuple[np.ndarray, np.ndarray]:
    """`count` draws of numba's `np.random.randint(-delta, delta, size=(2,))`: low bits under a mask, rejected
    when >= 2*delta (numba's rule for numpy-style randint)."""
    span = 2 * delta
    mask = (1 << (span - 1).bit_length()) - 1
    needed, parts, total = 2 * count, [], 0
    while total < needed:
        raw = bit_generator.random_raw(int((needed - total) * 1.4) + 64) & mask
        accepted = raw[raw < span]
        parts.append(accepted)
        total += accepted.size
    values = np.concatenate(parts)[:needed].astype(np.int64) - delta
    return values[0::2], values[1::2]  # dx, dy


def _shuffle_pixels(x: np.ndarray, delta: int, iterations: int, seed: int) -> np.ndarray:
    height, width = x.shape[:2]
    rows = np.arange(height - delta, delta, -1)
    cols = np.arange(width - delta, delta, -1)
    per_pass = rows.size * cols.size
    if per_pass == 0:
        return x
    all_dx, all_dy = _randint_pairs(_legacy_mt19937(seed), delta, per_pass * iterations)
    h = np.repeat(rows, cols.size)
    w = np.tile(cols, rows.size)
    target = h * width + w
    flat = x.reshape(height * width, -1)
    for it in range(iterations):
        dx, dy = all_dx[it * per_pass:(it + 1) * per_pass], all_dy[it * per_pass:(it + 1) * per_pass]
        src_h, src_w = h + dy, w + dx
        source = src_h * width + src_w
        in_region = (src_h > delta) & (src_h <= height - delta) & (src_w > delta) & (src_w <= width - delta)
        done_before = in_region & ((src_h > h) | ((src_h == h) & (src_w > w)))
        link = np.arange(height * width)
        link[target[done_before]] = source[done_before]
        value_of = np.arange(height * width)
        value_of[target] = source
        while True:  # pointer jumping: follow links to the pixel whose source was untouched when it was copied
            jumped = link[link]
            if np.array_equal(jumped, link):
                break
            link = jumped
        flat = flat[value_of[link]]
    return flat.reshape(x.shape)


def glass_blur(x: np.ndarray, severity: int, seed: int) -> np.ndarray:
    """Bit-identical to imagecorruptions' glass_blur(x, severity, seed) for an HxWx3 uint8 array."""
    sigma, delta, iterations = GLASS_BLUR[severity - 1]
    blurred = (gaussian(np.asarray(x) / 255., sigma=sigma, channel_axis=-1) * 255).astype(np.uint8)
    shuffled = _shuffle_pixels(blurred, delta, iterations, seed & 0xFFFFFFFF)
    return np.clip(gaussian(shuffled / 255., sigma=sigma, channel_axis=-1), 0, 1) * 255


def _zoom_axis(n: int, factor: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """Source indices and weights of scipy's order-1 zoom of the centred crop, for the first min(n, n_out) outputs."""
    crop = int(np.ceil(n / float(factor)))
    top = (n - crop) // 2
    n_out = int(round(crop * factor))
    keep = min(n_out, n)
    coord = np.arange(keep, dtype=np.float64) * ((crop - 1) / (n_out - 1)) if n_out > 1 else np.zeros(keep)
    i0 = np.minimum(np.floor(coord).astype(np.int64), crop - 1)
    i1 = np.minimum(i0 + 1, crop - 1)
    return top + i0, top + i1, (coord - i0).astype(np.float32), keep


def zoom_blur(x: np.ndarray, severity: int) -> np.ndarray:
    """imagecorruptions' zoom_blur(x, severity) for an HxWx3 uint8 array, within the tolerance above."""
    image = (np.asarray(x) / 255.).astype(np.float32)
    height, width = image.shape[:2]
    factors = ZOOM_BLUR[severity - 1]
    out = np.zeros_like(image)
    for factor in factors:
        r0, r1, fr, nh = _zoom_axis(height, factor)
        c0, c1, fc, nw = _zoom_axis(width, factor)
        fr, fc = fr[:, None, None], fc[None, :, None]
        rows = np.take(image, r0, axis=0) * (1 - fr) + np.take(image, r1, axis=0) * fr
        out[:nh, :nw] += np.take(rows, c0, axis=1) * (1 - fc) + np.take(rows, c1, axis=1) * fc
    return np.clip((image + out) / (len(factors) + 1), 0, 1) * 255


# imagecorruptions-imaug 1.1.5: brightness adds c to V; saturate maps S to S * a + b.
BRIGHTNESS = (.1, .2, .3, .4, .5)
SATURATE = ((0.3, 0), (0.1, 0), (2, 0), (5, 0.1), (20, 0.2))
# hsv2rgb's channel sources per sextant 0..5, as indices into (v, t, p, q): scikit-image's np.choose table.
_SEXTANT = np.array([[0, 1, 2], [3, 0, 2], [2, 0, 1], [2, 3, 0], [1, 2, 0], [0, 2, 3]])


def _rgb2hsv(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """scikit-image's rgb2hsv of a float HxWx3 array, as (hue, saturation, value); where several channels hold
    the maximum, blue's formula wins over green's over red's, as its successive masked assignments do."""
    red, green, blue = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    value = rgb.max(-1)
    delta = value - rgb.min(-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        saturation = delta / value
        hue = np.where(blue == value, 4.0 + (red - green) / delta,
                       np.where(green == value, 2.0 + (blue - red) / delta, (green - blue) / delta))
    hue = (hue / 6.0) % 1.0
    flat = delta == 0.0
    saturation[flat] = 0.0
    hue[flat] = 0.0
    return hue, saturation, value


def _hsv2rgb(hue: np.ndarray, saturation: np.ndarray, value: np.ndarray) -> np.ndarray:
    """scikit-image's hsv2rgb: the same p, q, t, each output channel gathered from them by sextant."""
    sextant = np.floor(hue * 6)
    f = hue * 6 - sextant
    p = value * (1 - saturation)
    q = value * (1 - f * saturation)
    t = value * (1 - (1 - f) * saturation)
    sources = np.stack((value, t, p, q))
    which = _SEXTANT[sextant.astype(np.uint8) % 6]
    return np.take_along_axis(sources, np.moveaxis(which, -1, 0), 0).transpose(1, 2, 0)


def brightness(x: np.ndarray, severity: int) -> np.ndarray:
    """Bit-identical to imagecorruptions' brightness(x, severity) for an HxWx3 uint8 array."""
    hue, saturation, value = _rgb2hsv(np.asarray(x) / 255.)
    return np.clip(_hsv2rgb(hue, saturation, np.clip(value + BRIGHTNESS[severity - 1], 0, 1)), 0, 1) * 255


def saturate(x: np.ndarray, severity: int) -> np.ndarray:
    """Bit-identical to imagecorruptions' saturate(x, severity) for an HxWx3 uint8 array."""
    scale, shift = SATURATE[severity - 1]
    hue, saturation, value = _rgb2hsv(np.asarray(x) / 255.)
    return np.clip(_hsv2rgb(hue, np.clip(saturation * scale + shift, 0, 1), value), 0, 1) * 255
