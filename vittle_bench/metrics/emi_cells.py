"""EMI per cell and EMID per shift for a finished run: what `vittle-bench run --metrics emi` adds to results.csv.

`emi_rows` is pure given its inputs (records, samples, conditions, encoders, seed): it re-applies each shift
with the run's per-sample RNG (shifts are pure, so this reproduces exactly what the model saw), embeds the
shifted image and question, the model's answer and the reference answer (through the content-keyed embedding
cache), fits one CLUB estimator on the pooled pairs of all cells (or uses the one given) and evaluates it per
cell. Metric names carry the encoder names, e.g. `emi[effnet-lite0+minilm-l6]`: results.csv files are merged
across runs by the leaderboard, and EMI values from different encoders must never land in one column.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np

from vittle_bench.encoders import Encoder
from vittle_bench.encoders.cache import EmbeddingCache
from vittle_bench.metrics.emi import (N_BOOT, ClubConfig, ClubEstimator, emi_estimate, emid_bound, emid_estimate,
                                      fit_pooled)
from vittle_bench.results_io import cell_seed
from vittle_bench.schema import CellResult, Sample
from vittle_bench.shifts import ShiftCondition, sample_rng

CellKey = tuple[str, str, str]  # (model name, task, shift condition label), e.g. ("tiny", "shapes_open", "clean")
MIN_PAIRS = 20  # fewer pooled pairs than this cannot support a held-out split; EMI is then skipped


def emi_metric(base: str, encoders: tuple[Encoder, Encoder]) -> str:
    """`emi`, `emid`, ... qualified by the encoders: `emi[effnet-lite0+minilm-l6]`."""
    return f"{base}[{encoders[0].name}+{encoders[1].name}]"


def combine_inputs(image: np.ndarray, text: np.ndarray) -> np.ndarray:
    """The EMI input x: the mean of image and question embeddings (the reference code, same widths), or their
    concatenation when the widths differ (e.g. 1280-d EfficientNet with 384-d MiniLM), which keeps both."""
    return (image + text) / 2 if image.shape[1] == text.shape[1] else np.concatenate([image, text], axis=1)


@dataclass
class CellEmbeddings:
    sample_ids: list[str]
    image: np.ndarray
    question: np.ndarray
    answer: np.ndarray  # the model's answers Ŷ
    reference: np.ndarray  # the reference answers Y_ref

    @property
    def x(self) -> np.ndarray:
        return combine_inputs(self.image, self.question)

    def subset(self, ids: Sequence[str]) -> CellEmbeddings:
        index = {s: i for i, s in enumerate(self.sample_ids)}
        rows = [index[s] for s in ids]
        return CellEmbeddings(list(ids), self.image[rows], self.question[rows], self.answer[rows], self.reference[rows])


@dataclass
class EmiReport:
    """rows: CellResults to append to results.csv; estimator: save it with the run; manifest: its `emi` entry."""

    rows: list[CellResult]
    estimator: ClubEstimator | None
    manifest: dict[str, Any] = field(default_factory=dict)


def _field(record: Any, name: str) -> Any:
    return record.get(name) if isinstance(record, Mapping) else getattr(record, name, None)


def _usable(record: Any) -> bool:
    return (_field(record, "error") is None and _field(record, "raw_output") is not None
            and bool(_field(record, "answer")))


def input_embeddings(samples: Sequence[Sample], condition: ShiftCondition, seed: int, encoders: tuple[Encoder, Encoder],
                      cache: EmbeddingCache) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """sample_id -> (image, question) embeddings of the shifted sample; a sample without image gets zeros."""
    shifted = [condition.shift.apply(s, sample_rng(seed, condition.label, s.sample_id)) for s in samples]
    with_image = [s for s in shifted if s.images]
    images = cache.encode(encoders[0], [s.images[0] for s in with_image])
    image_of = {s.sample_id: v for s, v in zip(with_image, images)}
    questions = cache.encode(encoders[1], [s.question for s in shifted])
    zeros = np.zeros(encoders[0].dim, dtype=np.float32)
    return {s.sample_id: (image_of.get(s.sample_id, zeros), q) for s, q in zip(shifted, questions)}


def embed_cells(records_by_cell: Mapping[CellKey, Sequence[Any]], samples: Mapping[str, Sequence[Sample]],
                conditions: Sequence[ShiftCondition], encoders: tuple[Encoder, Encoder], seed: int,
                cache: EmbeddingCache) -> dict[CellKey, CellEmbeddings]:
    """Embeddings of every usable record (no error, an answer and a reference), cell by cell, in record order."""
    by_label = {c.label: c for c in conditions}
    needed: dict[tuple[str, str], set[str]] = {}
    for (model, task, label), records in records_by_cell.items():
        needed.setdefault((task, label), set()).update(_field(r, "sample_id") for r in records if _usable(r))
    inputs: dict[tuple[str, str], dict[str, tuple[np.ndarray, np.ndarray]]] = {}
    for (task, label), ids in needed.items():  # shift + embed once per (task, condition), shared by all models
        chosen = [s for s in samples[task] if s.sample_id in ids]
        inputs[(task, label)] = input_embeddings(chosen, by_label[label], seed, encoders, cache)
    cells = {}
    for key, records in records_by_cell.items():
        usable = [r for r in records if _usable(r)]
        if not usable:
            continue
        emb = inputs[(key[1], key[2])]
        ids = [_field(r, "sample_id") for r in usable]
        cells[key] = CellEmbeddings(
            ids, np.stack([emb[i][0] for i in ids]), np.stack([emb[i][1] for i in ids]),
            cache.encode(encoders[1], [_field(r, "raw_output") for r in usable]),
            cache.encode(encoders[1], [_field(r, "answer") for r in usable]))
    return cells


def emi_rows(records_by_cell: Mapping[CellKey, Sequence[Any]], samples: Mapping[str, Sequence[Sample]],
             conditions: Sequence[ShiftCondition], encoders: tuple[Encoder, Encoder], *, seed: int = 0,
             cache: EmbeddingCache | None = None, estimator: ClubEstimator | None = None,
             config: ClubConfig = ClubConfig(), n_boot: int = N_BOOT) -> EmiReport:
    """EMI rows per cell and EMID rows per shifted cell of a run.

    records_by_cell: (model, task, condition label) -> that cell's records (SampleResult or its JSON dict; fields
        used: sample_id, raw_output, answer, error). Pass only tasks whose `answer` is a free-text reference
        (open-ended tasks): EMI compares the model's answer with a reference answer.
    samples: task -> its unshifted Samples (as loaded by `load_samples`); conditions: the run's conditions.
    estimator: a previously saved one (e.g. to compare runs); by default one is fitted on all cells pooled.
    Per cell: `emi`, `mi_model`, `mi_ref` (bootstrap CIs over the cell's rows). Per (model, task, shift) with a
    clean cell: `emid` = EMI(clean) − EMI(shift), paired over the samples both cells scored, and `emid_bound`,
    the scale-adjusted JSD bound on the same samples (no CI: it is a bound, not an estimate).
    """
    cache = cache or EmbeddingCache(None)
    cells = embed_cells(records_by_cell, samples, conditions, encoders, seed, cache)
    names = {"image": encoders[0].name, "text": encoders[1].name}
    manifest: dict[str, Any] = {"encoders": names, "metric_suffix": emi_metric("", encoders), "cells": len(cells)}
    n_pairs = sum(len(c.sample_ids) for c in cells.values())
    if estimator is None:
        if n_pairs < MIN_PAIRS:
            manifest["skipped"] = f"{n_pairs} usable pairs (< {MIN_PAIRS}): no EMI"
            return EmiReport([], None, manifest)
        # Held-out split by (task, sample): no sample is seen in training under any model or shift.
        estimator = fit_pooled([(c.x, c.answer, c.reference) for c in cells.values()], config, meta={"encoders": names},
                               groups=[[f"{key[1]}\x1f{s}" for s in c.sample_ids] for key, c in cells.items()])
        manifest["fit"] = {k: v for k, v in estimator.history.items() if k != "val_nll"} | {"config": vars(config)}
    elif estimator.meta.get("encoders", names) != names:
        raise ValueError(f"the estimator was fitted on encoders {estimator.meta['encoders']}, not {names}")
    by_label = {c.label: c for c in conditions}
    rows: list[CellResult] = []

    def row(model: str, task: str, label: str, metric: str, value: float, low: float | None, high: float | None,
            n: int) -> CellResult:
        c = by_label[label]
        return CellResult(model=model, task=task, shift=c.name, shift_kind=c.kind, severity=c.severity,
                          metric=emi_metric(metric, encoders), value=value, ci_low=low, ci_high=high, n=n, condition=label)

    for (model, task, label), cell in cells.items():
        if len(cell.sample_ids) < 2:
            continue
        estimates = emi_estimate(estimator, cell.x, cell.answer, cell.reference, n_boot=n_boot,
                                 seed=cell_seed(seed, model, task, label, "emi"))
        rows += [row(model, task, label, k, e.value, e.ci_low, e.ci_high, e.n) for k, e in estimates.items()]
    for (model, task, label), q in cells.items():
        p = cells.get((model, task, "clean"))
        if label == "clean" or p is None:
            continue
        q_ids = set(q.sample_ids)
        common = [s for s in p.sample_ids if s in q_ids]
        if len(common) < 2:
            continue
        pc, qc = p.subset(common), q.subset(common)
        emid = emid_estimate(estimator, (pc.x, pc.answer, pc.reference), (qc.x, qc.answer, qc.reference), paired=True,
                             n_boot=n_boot, seed=cell_seed(seed, model, task, label, "emid"))
        bound = emid_bound(pc.image, pc.question, qc.image, qc.question, (pc.answer, pc.reference),
                           (qc.answer, qc.reference))
        rows += [row(model, task, label, "emid", emid.value, emid.ci_low, emid.ci_high, emid.n),
                 row(model, task, label, "emid_bound", bound.value, None, None, len(common))]
    return EmiReport(rows, estimator, manifest)
