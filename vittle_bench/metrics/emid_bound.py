"""EMID's data-only upper bound (PAPER.md §4): the scale-adjusted sum of square and fourth roots of
representation JSDs between the embedding sets of the clean cell P and the shifted cell Q. It needs no
estimator, only embeddings, so it can be computed before any model answers (the input terms alone)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from vittle_bench.metrics.embedding_arrays import as_2d


def von_neumann_entropy(c: np.ndarray) -> float:
    """Entropy of the eigenvalues of a PSD matrix normalised to sum 1 (zero and rounding-negative ones dropped)."""
    return _spectrum_entropy(np.linalg.eigvalsh(np.asarray(c, dtype=np.float64)))


def _spectrum_entropy(eig: np.ndarray) -> float:
    eig = eig[eig > eig.max() * 1e-12]
    eig = eig / eig.sum()
    return float(-(eig * np.log(eig)).sum())


def _gram_entropy(rows: np.ndarray) -> float:
    """von Neumann entropy of rowsᵀ·rows from whichever of rowsᵀ·rows (d×d) and rows·rowsᵀ (n×n) is smaller:
    both have the same non-zero eigenvalues, and embedding sets often have fewer rows than dimensions."""
    small = rows @ rows.T if rows.shape[0] < rows.shape[1] else rows.T @ rows
    return _spectrum_entropy(np.linalg.eigvalsh(small))


def representation_jsd(a: np.ndarray, b: np.ndarray) -> float:
    """Representation JSD of two embedding sets (rows), as the reference's `JSD_cov` (main.py of the EMI
    repository): with uncentered covariances C_A = AᵀA, C_B = BᵀB, H((C_A + C_B)/2) − (H(C_A) + H(C_B))/2.

    H normalises eigenvalues to sum 1, so each entropy ignores scale, but the mixture does not: the sets weigh
    by their traces (their sizes, for L2-normalised rows), e.g. 3:1 for 90 clean rows against 30 long-tail rows.
    In [0, log 2]; log 2 for equal traces on orthogonal supports.
    """
    a, b = as_2d(a, "a"), as_2d(b, "b")
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"embedding sets of different dimension: {a.shape[1]} and {b.shape[1]}")
    if np.array_equal(a, b):
        return 0.0
    mixed = np.concatenate([a, b])  # mixedᵀ·mixed = C_A + C_B, whose normalised spectrum is that of (C_A + C_B)/2
    return max(0.0, _gram_entropy(mixed) - (_gram_entropy(a) + _gram_entropy(b)) / 2)


@dataclass(frozen=True)
class BoundTerms:
    """JSD terms of the scale-adjusted EMID bound: √JSD_image + √JSD_text + JSD_out(P)^¼ + JSD_out(Q)^¼.

    jsd_image / jsd_text compare the inputs of P and Q; jsd_output_p / jsd_output_q compare model answers with
    reference answers within P and within Q (None when no model has answered: the input terms alone).
    """

    jsd_image: float
    jsd_text: float
    jsd_output_p: float | None = None
    jsd_output_q: float | None = None

    @property
    def input_terms(self) -> float:
        return math.sqrt(self.jsd_image) + math.sqrt(self.jsd_text)

    @property
    def complete(self) -> bool:
        return self.jsd_output_p is not None and self.jsd_output_q is not None

    @property
    def value(self) -> float:
        """The bound; with only the input terms it is their sum (a lower value than the full bound)."""
        p, q = self.jsd_output_p, self.jsd_output_q
        if p is None or q is None:
            return self.input_terms
        return self.input_terms + p ** 0.25 + q ** 0.25


def emid_bound(p_image: np.ndarray, p_text: np.ndarray, q_image: np.ndarray, q_text: np.ndarray,
               p_output: tuple[np.ndarray, np.ndarray] | None = None,
               q_output: tuple[np.ndarray, np.ndarray] | None = None) -> BoundTerms:
    """The bound's terms from embeddings alone; `*_output` = (model-answer, reference-answer) embeddings."""
    return BoundTerms(representation_jsd(p_image, q_image), representation_jsd(p_text, q_text),
                      representation_jsd(*p_output) if p_output is not None else None,
                      representation_jsd(*q_output) if q_output is not None else None)
