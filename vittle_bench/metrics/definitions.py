"""The suite's metrics, each declared once (see base.py for what a declaration holds and who reads it).

Per-sample parts read these samples.jsonl fields: `score` (the task's per-sample score: 1/0 when correct,
the judge's 1-10 score of the answer, the pairwise verdict), `reference_score` (the judge's score of the
reference answer), `answer` (gold, normalised at load), `parsed`, `parse_ok` and `error`.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

from vittle_bench.metrics.base import (
    COUNT,
    MCNEMAR,
    NATS,
    PERCENT,
    POINTS,
    RELATIVE_SCORE,
    VERDICT,
    WILCOXON,
    Metric,
    Parts,
    register_metric,
)


def _valid(r: pd.DataFrame) -> np.ndarray:
    return r["error"].isna().to_numpy()


def _share(flag: Callable[[pd.DataFrame], np.ndarray],
           among: Callable[[pd.DataFrame], np.ndarray] | None = None) -> Parts:
    """Share of the valid samples (or of those `among` selects) for which `flag` holds."""
    def parts(r: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        valid = _valid(r)
        den = valid if among is None else valid & among(r)
        return (flag(r) & den).astype(float), den.astype(float), valid
    return parts


def _correct(r: pd.DataFrame) -> np.ndarray:
    return r["score"].fillna(0).to_numpy(dtype=float) > 0.5


def _unparsed(r: pd.DataFrame) -> np.ndarray:
    return ~r["parse_ok"].fillna(False).to_numpy(dtype=bool)


def _gold_yes(r: pd.DataFrame) -> np.ndarray:
    return (r["answer"] == "yes").to_numpy()


def _pred_yes(r: pd.DataFrame) -> np.ndarray:
    return (r["parsed"] == "yes").to_numpy()


def _f1_parts(r: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """F1 = 2PR / (P + R) = 2 TP / (2 TP + FP + FN), a ratio of per-sample sums."""
    valid, gold, pred = _valid(r), _gold_yes(r), _pred_yes(r)
    tp = (gold & pred & valid).astype(float)
    return 2 * tp, 2 * tp + (pred & ~gold & valid) + (gold & ~pred & valid), valid


def _judged(r: pd.DataFrame) -> np.ndarray:
    return _valid(r) & r["score"].notna().to_numpy()


def _relative_parts(r: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    judged = _judged(r) & r["reference_score"].notna().to_numpy()
    return (np.where(judged, r["score"].fillna(0).astype(float), 0.0),
            np.where(judged, r["reference_score"].fillna(0).astype(float), 0.0), judged)


def _verdict_share(sign: int) -> Parts:
    """Share of judged samples whose pairwise verdict (-2..+2, the evaluated model's side) has this sign."""
    def parts(r: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        judged = _judged(r)
        verdict = np.sign(r["score"].fillna(0).to_numpy(dtype=float))
        return (judged & (verdict == sign)).astype(float), judged.astype(float), judged
    return parts


def _mean_verdict(r: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    judged = _judged(r)
    return np.where(judged, r["score"].fillna(0).astype(float), 0.0), judged.astype(float), judged


def _judge_failed(r: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Valid samples without a judgment (scored by a judge that failed); a count, not a rate."""
    valid = _valid(r)
    failed = valid & (r["score"].isna() | r["reference_score"].isna()).to_numpy()
    return failed.astype(float), valid.astype(float), valid


ACCURACY = register_metric(Metric(
    "accuracy", PERCENT, True, "share of samples answered correctly", _share(_correct), scale=100.0,
    paired_test=MCNEMAR))
UNPARSEABLE_RATE = register_metric(Metric(
    "unparseable_rate", PERCENT, False, "share of answers the task's parser could not read (scored wrong)",
    _share(_unparsed), scale=100.0, paired_test=MCNEMAR))
YES_RATIO = register_metric(Metric(
    "yes_ratio", PERCENT, None, "share of questions answered yes (POPE; 50 % is unbiased)", _share(_pred_yes),
    scale=100.0))
PRECISION = register_metric(Metric(
    "precision", PERCENT, True, "POPE: share of predicted yes that are right", _share(_gold_yes, _pred_yes),
    scale=100.0, zero=0.0))
RECALL = register_metric(Metric(
    "recall", PERCENT, True, "POPE: share of gold yes predicted yes", _share(_pred_yes, _gold_yes), scale=100.0,
    zero=0.0))
F1 = register_metric(Metric("f1", PERCENT, True, "POPE: F1 with yes as the positive class", _f1_parts, scale=100.0,
                            zero=0.0))


def _relative(name: str, description: str) -> Metric:
    return register_metric(Metric(name, RELATIVE_SCORE, True, description, _relative_parts, scale=100.0,
                                  paired_test=WILCOXON))


RELATIVE_SCORE_JUDGE = _relative("relative_score", "LLaVA-Bench relative score: 100 x mean(judge score of the "
                                 "answer) / mean(judge score of the reference)")
RELATIVE_SCORE_EMBEDDING = _relative("relative_score_embedding", "relative score from the offline embedding "
                                     "stand-in (cosine to the reference), NOT an LLM judge")
RELATIVE_SCORE_OVERLAP = _relative("relative_score_overlap", "relative score from the offline word-overlap "
                                   "stand-in (F1 with the reference), NOT an LLM judge")
JUDGE_FAILED = register_metric(Metric(
    "judge_failed", COUNT, False, "samples whose judgment failed (unparseable reply or failed request); left out",
    _judge_failed, count=True))
WIN_RATE = register_metric(Metric(
    "win_rate", PERCENT, True, "pairwise: share of judged samples the model wins against the baseline answer",
    _verdict_share(1), scale=100.0, paired_test=MCNEMAR))
TIE_RATE = register_metric(Metric(
    "tie_rate", PERCENT, None, "pairwise: share of judged samples tied with the baseline answer", _verdict_share(0),
    scale=100.0, paired_test=MCNEMAR))
LOSS_RATE = register_metric(Metric(
    "loss_rate", PERCENT, False, "pairwise: share of judged samples lost to the baseline answer", _verdict_share(-1),
    scale=100.0, paired_test=MCNEMAR))
MEAN_VERDICT = register_metric(Metric(
    "mean_verdict", VERDICT, True, "pairwise: mean verdict, -2 (much worse) .. +2 (much better)", _mean_verdict,
    paired_test=WILCOXON))
N_ERRORS = register_metric(Metric(
    "n_errors", COUNT, False, "samples that failed (load, shift, request, generation or scoring) and were not scored"))

# MME (the authors' calculation.py): computed per image pair by the MME adapter.
ACCURACY_PLUS = register_metric(Metric(
    "accuracy_plus", PERCENT, True, "MME: share of images with both questions answered correctly"))
MME_CATEGORY_SCORE = register_metric(Metric(
    "score", POINTS, True, "MME: a category's accuracy + accuracy+ (0-200)"))
MME_PERCEPTION = register_metric(Metric(
    "mme_perception", POINTS, True, "MME: sum of the ten perception categories' scores (max 2000)"))
MME_COGNITION = register_metric(Metric(
    "mme_cognition", POINTS, True, "MME: sum of the four cognition categories' scores (max 800)"))

# EMI (Oh et al., ICML 2025), computed over a whole run (metrics/emi_cells.py).
EMI = register_metric(Metric("emi", NATS, True, "effective mutual information I(X;Y_model) - I(X;Y_ref)"))
MI_MODEL = register_metric(Metric("mi_model", NATS, True, "CLUB estimate of I(X; model answer)"))
MI_REF = register_metric(Metric("mi_ref", NATS, True, "CLUB estimate of I(X; reference answer)"))
EMID = register_metric(Metric("emid", NATS, False, "EMI(clean) - EMI(shifted): the EMI lost to the shift"))
EMID_BOUND = register_metric(Metric("emid_bound", NATS, False, "JSD-based upper bound on EMID (no interval)"))
