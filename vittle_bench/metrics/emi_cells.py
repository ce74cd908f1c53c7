"""EMI per cell and EMID per shift for a finished run: what `vittle-bench run --metrics emi` adds to results.csv.

`emi_rows` is pure given its inputs (records, the rows each cell used, conditions, encoders, seed): it applies
each cell's condition to that cell's rows with the run's per-sample RNG (shifts are pure, so this reproduces
exactly what the model saw; under a domain condition the rows are the swapped-in ones and the shift is the
identity), embeds the shifted image and question, the model's answer and the reference answer (through the
content-keyed embedding cache), fits one CLUB estimator on the pooled pairs of all cells (or uses the one
given) and evaluates it per cell.

Metric keys carry the encoders and the estimator, `emi[effnet-lite0+minilm-l6;club-reference@1a2b3c4d]`
(`parse_metric` reads them back): results.csv files are merged across runs by the leaderboard, and EMI values
from different encoders or estimators must never land in one column. `emid_bound` depends on the embeddings
only, so its key names the encoders alone.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, NamedTuple

import numpy as np

from vittle_bench.encoders import Encoder
from vittle_bench.encoders.cache import EmbeddingCache
from vittle_bench.errors import ConfigError
from vittle_bench.metrics.club import ClubEstimator
from vittle_bench.metrics.club_net import REFERENCE, ClubConfig
from vittle_bench.metrics.emi import N_BOOT, emi_estimate, emid_estimate, fit_pooled
from vittle_bench.metrics.emid_bound import emid_bound
from vittle_bench.metrics.stats import cell_seed
from vittle_bench.schema import CellResult, Sample
from vittle_bench.shifts import ShiftCondition

CellKey = tuple[str, str, str]  # (model name, task, condition label), e.g. ("tiny", "shapes_open", "clean")
RowsKey = tuple[str, str]  # (task, condition label)
BASES = ("emi", "mi_model", "mi_ref", "emid", "emid_bound")
ESTIMATOR_FREE = ("emid_bound",)
MIN_PAIRS = 20  # fewer pooled pairs than this cannot support a fit; EMI is then skipped


class EmiKey(NamedTuple):
    base: str  # one of BASES
    encoders: str  # "<image encoder>+<text encoder>"
    estimator: str | None  # "<estimator name>@<fingerprint>"; None for emid_bound


def emi_metric(base: str, encoders: tuple[Encoder, Encoder], estimator: ClubEstimator) -> str:
    """`emi[effnet-lite0+minilm-l6;club-reference@1a2b3c4d]`; `emid_bound[effnet-lite0+minilm-l6]`."""
    names = f"{encoders[0].name}+{encoders[1].name}"
    return f"{base}[{names}]" if base in ESTIMATOR_FREE else f"{base}[{names};{estimator.label}]"


def parse_metric(key: str) -> EmiKey | None:
    """(base, encoders, estimator) of an EMI metric key, None for any other metric, so that a table can refuse
    to put EMI from different estimators in one column. An EMI key without an estimator (written before keys
    named one) gives estimator None."""
    base, bracket, rest = key.partition("[")
    if base not in BASES or not bracket or not rest.endswith("]"):
        return None
    encoders, semicolon, estimator = rest[:-1].rpartition(";")
    return EmiKey(base, encoders, estimator) if semicolon else EmiKey(base, estimator, None)


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

    @property
    def triple(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return self.x, self.answer, self.reference

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
    shifted = [condition.apply(s, seed) for s in samples]  # the pixels and text the run's model saw
    with_image = [s for s in shifted if s.images]
    images = cache.encode(encoders[0], [s.images[0] for s in with_image])
    image_of = {s.sample_id: v for s, v in zip(with_image, images)}
    questions = cache.encode(encoders[1], [s.question for s in shifted])
    zeros = np.zeros(encoders[0].dim, dtype=np.float32)
    return {s.sample_id: (image_of.get(s.sample_id, zeros), q) for s, q in zip(shifted, questions)}


def embed_cells(records_by_cell: Mapping[CellKey, Sequence[Any]], samples: Mapping[RowsKey, Sequence[Sample]],
                conditions: Sequence[ShiftCondition], encoders: tuple[Encoder, Encoder], seed: int,
                cache: EmbeddingCache) -> dict[CellKey, CellEmbeddings]:
    """Embeddings of every usable record (no error, an answer and a reference), cell by cell, in record order."""
    by_label = {c.label: c for c in conditions}
    needed: dict[RowsKey, set[str]] = {}
    for (_, task, label), records in records_by_cell.items():
        needed.setdefault((task, label), set()).update(_field(r, "sample_id") for r in records if _usable(r))
    inputs: dict[RowsKey, dict[str, tuple[np.ndarray, np.ndarray]]] = {}
    for (task, label), ids in needed.items():  # shift + embed once per (task, condition), shared by all models
        if (task, label) not in samples:
            raise ValueError(f"no rows given for task {task} under {label}")
        chosen = [s for s in samples[(task, label)] if s.sample_id in ids]
        inputs[(task, label)] = input_embeddings(chosen, by_label[label], seed, encoders, cache)
    cells = {}
    for key, records in records_by_cell.items():
        usable = [r for r in records if _usable(r)]
        if not usable:
            continue
        emb = inputs[(key[1], key[2])]
        order = [_field(r, "sample_id") for r in usable]
        cells[key] = CellEmbeddings(
            order, np.stack([emb[i][0] for i in order]), np.stack([emb[i][1] for i in order]),
            cache.encode(encoders[1], [_field(r, "raw_output") for r in usable]),
            cache.encode(encoders[1], [_field(r, "answer") for r in usable]))
    return cells


def _checked(estimator: ClubEstimator, cells: Mapping[CellKey, CellEmbeddings], names: dict[str, str]) -> None:
    """A given estimator must take these encoders' embeddings: a user's mistake, reported in one line."""
    fitted_on = estimator.meta.get("encoders", names)
    if fitted_on != names:
        raise ConfigError(f"the EMI estimator was fitted on encoders {fitted_on['image']}+{fitted_on['text']}, "
                          f"not {names['image']}+{names['text']}")
    cell = next(iter(cells.values()))
    if (cell.x.shape[1], cell.answer.shape[1]) != (estimator.x_dim, estimator.y_dim):
        raise ConfigError(f"the EMI estimator takes {estimator.x_dim}-d inputs and {estimator.y_dim}-d answers; "
                          f"encoders {names['image']}+{names['text']} give {cell.x.shape[1]}-d and "
                          f"{cell.answer.shape[1]}-d")


def _few_pairs(cells: Mapping[CellKey, CellEmbeddings], width: int) -> dict[str, Any] | None:
    """Cells with fewer pairs than the answer embedding has dimensions. CLUB sums one term per dimension, each
    estimated from the cell's pairs, so its sampling error grows with d/n; below n = d a cell's EMI, and any
    EMID it enters, is mostly noise (e.g. 50 pairs of 384-d embeddings)."""
    small = {key: len(c.sample_ids) for key, c in cells.items() if len(c.sample_ids) < width}
    if not small:
        return None
    counts = sorted(small.values())
    message = (f"EMI: {len(small)} of {len(cells)} cells have fewer pairs ({counts[0]}-{counts[-1]}) than the "
               f"{width} dimensions of the answer embeddings; their EMI and EMID say little beyond their wide CIs "
               "(more samples per cell, e.g. a larger --limit, narrow them)")
    return {"threshold": width, "cells": ["/".join(k) for k in small], "message": message}


def emi_rows(records_by_cell: Mapping[CellKey, Sequence[Any]], samples: Mapping[RowsKey, Sequence[Sample]],
             conditions: Sequence[ShiftCondition], encoders: tuple[Encoder, Encoder], *, seed: int = 0,
             cache: EmbeddingCache | None = None, estimator: ClubEstimator | ClubConfig = REFERENCE,
             n_boot: int = N_BOOT) -> EmiReport:
    """EMI rows per cell and EMID rows per shifted cell of a run.

    records_by_cell: (model, task, condition label) -> that cell's records (SampleResult or its JSON dict; fields
        used: sample_id, raw_output, answer, error). Pass only tasks whose `answer` is a free-text reference
        (open-ended tasks): EMI compares the model's answer with a reference answer.
    samples: (task, condition label) -> the unshifted rows that cell was built from: the task's own rows, or
        under a domain condition the rows the domain swapped in (as `DomainResolver.samples` returns them).
    estimator: an estimator to evaluate with (saved by an earlier run to compare runs, or the EMI repository's
        checkpoint), or the recipe of one to fit on all cells pooled (default: `club-reference`); see
        `resolve_estimator` for the run's `--emi-estimator NAME|PATH`.
    Per cell: `emi`, `mi_model`, `mi_ref` (bootstrap CIs over the cell's rows). Per (model, task, condition) with
    a clean cell: `emid` = EMI(clean) − EMI(condition) and `emid_bound`, the scale-adjusted JSD bound (no CI: it
    is a bound, not an estimate). When the condition's rows carry exactly the clean rows' sample ids (a shift of
    the task's rows, or a domain that is their row-for-row counterpart, like the EMI paper's translated splits)
    both are computed on the samples both cells scored and the CI resamples them in pairs; otherwise (e.g. a
    long-tail set swapped in) on all of each cell's rows, resampled independently, as the reference does.
    """
    cache = cache or EmbeddingCache(None)
    cells = embed_cells(records_by_cell, samples, conditions, encoders, seed, cache)
    names = {"image": encoders[0].name, "text": encoders[1].name}
    manifest: dict[str, Any] = {"encoders": names, "cells": len(cells)}
    ready = _ready_estimator(estimator, cells, names, manifest)
    if ready is None:
        return EmiReport([], None, manifest)
    _describe_estimator(manifest, ready, encoders, cells)
    builder = _RowBuilder({c.label: c for c in conditions}, encoders, ready)
    rows = _emi_cell_rows(cells, builder, seed, n_boot)
    emid_rows, unpaired = _emid_rows(cells, samples, builder, seed, n_boot)
    if unpaired:
        manifest["emid_unpaired"] = sorted(set(unpaired))
    return EmiReport(rows + emid_rows, ready, manifest)


def _ready_estimator(estimator: ClubEstimator | ClubConfig, cells: Mapping[CellKey, CellEmbeddings],
                     names: dict[str, str], manifest: dict[str, Any]) -> ClubEstimator | None:
    """The estimator to evaluate every cell with: the one given (checked against these encoders' embeddings) or
    one fitted on all cells pooled, its fit recorded in `manifest`; None, with the reason recorded there, when
    there are too few pairs to fit one."""
    if not isinstance(estimator, ClubConfig):
        if cells:
            _checked(estimator, cells, names)
        return estimator
    n_pairs = sum(len(c.sample_ids) for c in cells.values())
    if n_pairs < MIN_PAIRS:
        manifest["skipped"] = f"{n_pairs} usable pairs (< {MIN_PAIRS}): no EMI"
        return None
    # Fit groups are (task, sample): a sample's pairs under every model and shift fall on one side of a split.
    fitted = fit_pooled([c.triple for c in cells.values()], estimator, meta={"encoders": names},
                        groups=[[f"{key[1]}\x1f{s}" for s in c.sample_ids] for key, c in cells.items()])
    manifest["fit"] = {k: v for k, v in fitted.history.items() if k != "val_nll"}
    return fitted


def _describe_estimator(manifest: dict[str, Any], estimator: ClubEstimator, encoders: tuple[Encoder, Encoder],
                        cells: Mapping[CellKey, CellEmbeddings]) -> None:
    """Record the estimator and the metric-key suffix in `manifest`, and warn on stderr about cells with too few
    pairs for their EMI to mean much."""
    manifest["club"] = {"name": estimator.name, "fingerprint": estimator.fingerprint, "fitted": "fit" in manifest,
                        "config": asdict(estimator.config), "x_dim": estimator.x_dim, "y_dim": estimator.y_dim}
    manifest["metric_suffix"] = emi_metric("", encoders, estimator)
    few = _few_pairs(cells, estimator.y_dim)
    if few is not None:
        manifest["few_pairs"] = few
        print(f"vittle-bench: {few['message']}", file=sys.stderr)


@dataclass(frozen=True)
class _RowBuilder:
    """Turns one estimate of a cell into its results.csv row, under the metric key of these encoders and estimator."""

    by_label: Mapping[str, ShiftCondition]
    encoders: tuple[Encoder, Encoder]
    estimator: ClubEstimator

    def build(self, cell: CellKey, metric: str, value: float, low: float | None, high: float | None,
              n: int) -> CellResult:
        model, task, label = cell
        c = self.by_label[label]
        return CellResult(model=model, task=task, shift=c.name, shift_kind=c.kind, severity=c.severity,
                          metric=emi_metric(metric, self.encoders, self.estimator), value=value, ci_low=low,
                          ci_high=high, n=n, condition=label)


def _emi_cell_rows(cells: Mapping[CellKey, CellEmbeddings], builder: _RowBuilder, seed: int,
                   n_boot: int) -> list[CellResult]:
    """`emi`, `mi_model` and `mi_ref` of every cell with at least 2 pairs."""
    rows: list[CellResult] = []
    for key, cell in cells.items():
        if len(cell.sample_ids) < 2:
            continue
        estimates = emi_estimate(builder.estimator, *cell.triple, n_boot=n_boot, seed=cell_seed(seed, *key, "emi"))
        rows += [builder.build(key, k, e.value, e.ci_low, e.ci_high, e.n) for k, e in estimates.items()]
    return rows


def _emid_rows(cells: Mapping[CellKey, CellEmbeddings], samples: Mapping[RowsKey, Sequence[Sample]],
               builder: _RowBuilder, seed: int, n_boot: int) -> tuple[list[CellResult], list[str]]:
    """`emid` and `emid_bound` of every shifted cell against its model's clean cell, and the labels of the
    conditions whose rows are not the clean rows (so their cells are resampled independently)."""
    rows: list[CellResult] = []
    unpaired = []
    for (model, task, label), q in cells.items():
        p = cells.get((model, task, "clean"))
        if label == "clean" or p is None:
            continue
        paired = {s.sample_id for s in samples[(task, label)]} == {s.sample_id for s in samples[(task, "clean")]}
        if paired:
            q_ids = set(q.sample_ids)
            common = [s for s in p.sample_ids if s in q_ids]
            p, q = p.subset(common), q.subset(common)
        else:
            unpaired.append(label)
        if min(len(p.sample_ids), len(q.sample_ids)) < 2:
            continue
        emid = emid_estimate(builder.estimator, p.triple, q.triple, paired=paired, n_boot=n_boot,
                             seed=cell_seed(seed, model, task, label, "emid"))
        bound = emid_bound(p.image, p.question, q.image, q.question, (p.answer, p.reference), (q.answer, q.reference))
        key = (model, task, label)
        rows += [builder.build(key, "emid", emid.value, emid.ci_low, emid.ci_high, emid.n),
                 builder.build(key, "emid_bound", bound.value, None, None, emid.n)]
    return rows, unpaired
