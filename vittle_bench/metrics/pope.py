"""POPE metrics as the POPE authors define them, with "yes" as the positive class."""

from __future__ import annotations

import numpy as np


def pope_metrics(gold_yes: np.ndarray, pred_yes: np.ndarray, pred_no: np.ndarray) -> dict[str, float]:
    """accuracy, precision, recall, F1 and yes-ratio (share of *predicted* yes over all questions).

    An unparseable answer (neither yes nor no) is wrong in accuracy, a missed positive when the gold answer
    is yes, never a false positive, and is reported as unparseable_rate. Precision is 0 when nothing is
    predicted yes (the official code would divide by zero).
    """
    n = len(gold_yes)
    tp = float(np.sum(pred_yes & gold_yes))
    fp = float(np.sum(pred_yes & ~gold_yes))
    tn = float(np.sum(pred_no & ~gold_yes))
    fn = float(np.sum(~pred_yes & gold_yes))
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {
        "accuracy": (tp + tn) / n if n else float("nan"),
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "yes_ratio": float(np.sum(pred_yes)) / n if n else float("nan"),
        "unparseable_rate": float(np.sum(~pred_yes & ~pred_no)) / n if n else float("nan"),
    }
