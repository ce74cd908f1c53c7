"""What changed for each sample between its clean condition and a shift: the rows the report's galleries show.

A sample is *worse* under a shift when its score there is lower than on clean, *better* when it is higher: for a
binary-scored task (accuracy: scores 0 or 1) that is a flip, right on clean and wrong under the shift or the
reverse; for a judged task (relative score) any drop or rise of the judge's score. A sample enters only where
both conditions were scored; the others are counted (`unscored`), never dropped silently. Examples are picked
per (task, condition, model, direction) up to a cap: the largest changes first, ties in a fixed pseudo-random
order of sample ids (a hash), so the gallery does not show only a dataset's first rows.
"""

from __future__ import annotations

import difflib
import hashlib
import re
from dataclasses import dataclass

import numpy as np
import pandas as pd

WORSE, BETTER = "worse", "better"
_TOKENS = re.compile(r"\s+|[^\s]+")


@dataclass(frozen=True)
class CellCounts:
    """One model's sample outcomes on one shifted cell (a task under one condition)."""

    paired: int  # samples scored on clean and under the shift
    worse: int
    better: int
    unscored: int  # samples of the cell without a score on one side (a failed sample or judgment)


def _order_key(sample_id: str) -> str:
    return hashlib.sha1(sample_id.encode()).hexdigest()


def paired_scores(records: pd.DataFrame) -> pd.DataFrame:
    """Every shifted record beside its clean twin (same run, model, task and sample id): columns model, task,
    condition, shift, shift_kind, severity, category, sample_id, clean_score, score, change."""
    keys = ["run", "model", "task", "sample_id"]
    clean = records[records["shift_kind"] == "clean"][[*keys, "score"]].rename(columns={"score": "clean_score"})
    shifted = records[records["shift_kind"] != "clean"]
    pairs = shifted.merge(clean, on=keys, how="left")
    pairs["change"] = pairs["score"].astype(float) - pairs["clean_score"].astype(float)
    return pairs


def cell_counts(pairs: pd.DataFrame) -> dict[tuple[str, str, str], CellCounts]:
    """(task, condition, model) -> its outcome counts."""
    out = {}
    for (task, condition, model), g in pairs.groupby(["task", "condition", "model"], sort=False):
        change = g["change"].to_numpy(dtype=float)
        scored = np.isfinite(change)
        out[str(task), str(condition), str(model)] = CellCounts(
            int(scored.sum()), int((change[scored] < 0).sum()), int((change[scored] > 0).sum()),
            int((~scored).sum()))
    return out


def pick_examples(pairs: pd.DataFrame, cap: int) -> pd.DataFrame:
    """Up to `cap` worse and `cap` better samples per (task, condition, model): columns task, condition,
    sample_id, model, direction (the rows a gallery card is made of; one sample can be worse for one model and
    better for another)."""
    scored = pairs[np.isfinite(pairs["change"].to_numpy(dtype=float)) & (pairs["change"] != 0)].copy()
    scored["direction"] = np.where(scored["change"] < 0, WORSE, BETTER)
    scored["magnitude"] = scored["change"].abs()
    scored["order"] = scored["sample_id"].map(_order_key)
    scored = scored.sort_values(["magnitude", "order"], ascending=[False, True], kind="stable")
    picked = scored.groupby(["task", "condition", "model", "direction"], sort=False).head(cap)
    return picked[["task", "condition", "sample_id", "model", "direction"]].reset_index(drop=True)


def keeps_and_loses(pairs: pd.DataFrame, model_a: str, model_b: str, cap: int) -> pd.DataFrame:
    """Samples one model keeps and the other loses under the same shift: A's score under the shift is at least
    its clean score while B's falls (loser "B"), or the reverse (loser "A"); for accuracy, A right on clean and
    under the shift while B flips to wrong. Up to `cap` per (task, condition, loser); columns task, condition,
    sample_id, loser."""
    key = ["task", "condition", "sample_id"]
    kept = pairs["change"].ge(0) & pairs["clean_score"].gt(0)  # right on clean (or scored above 0) and no worse
    states = pairs[key].assign(state=np.select([kept, pairs["change"].lt(0)], ["keeps", "loses"], ""),
                               drop=-pairs["change"])
    a = states[pairs["model"] == model_a]
    b = states[pairs["model"] == model_b]
    both = a.merge(b, on=key, suffixes=("_a", "_b"))
    both["loser"] = np.select([(both["state_a"] == "keeps") & (both["state_b"] == "loses"),
                               (both["state_b"] == "keeps") & (both["state_a"] == "loses")], ["B", "A"], "")
    both = both[both["loser"] != ""].copy()
    both["magnitude"] = np.where(both["loser"] == "B", both["drop_b"], both["drop_a"])
    both["order"] = both["sample_id"].map(_order_key)
    both = both.sort_values(["magnitude", "order"], ascending=[False, True], kind="stable")
    picked = both.groupby(["task", "condition", "loser"], sort=False).head(cap)
    return picked[[*key, "loser"]].reset_index(drop=True)


def word_diff(before: str, after: str) -> list[tuple[str, bool]]:
    """`after` as (text, changed) runs against `before`, word by word (whitespace kept), so the report can mark
    what a text shift changed in the question."""
    old, new = _TOKENS.findall(before or ""), _TOKENS.findall(after or "")
    runs: list[tuple[str, bool]] = []
    for tag, _, _, j1, j2 in difflib.SequenceMatcher(None, old, new, autojunk=False).get_opcodes():
        text = "".join(new[j1:j2])
        if not text:
            continue
        changed = tag != "equal" and not text.isspace()
        if runs and runs[-1][1] == changed:
            runs[-1] = (runs[-1][0] + text, changed)
        else:
            runs.append((text, changed))
    return runs
