"""Task sources backed by `datasets`: `hf:ORG/NAME` (the hub, through datasets.load_dataset, with an offline
mirror) and `disk:PATH` (a save_to_disk dataset or parquet files, e.g. written by `vittle-bench data pope`).

Where `hf:org/name` (task `subset` = hub config, `split`, `revision`) is looked for, in order:
1. with a data directory DIR (`--data-dir`): DIR/org/name/<config>, then DIR/org/name; each may hold a
   `save_to_disk` DatasetDict (the split is picked from it), a saved Dataset (at the root or at <split>/),
   or parquet files with the hub's schema (files named `<split>-*.parquet` / `<split>.parquet` or inside a
   `<split>/` folder, i.e. the hub repo's own layout or its refs/convert/parquet layout);
2. the hub, datasets.load_dataset(org/name, config, split=split, revision=revision). With `--limit N` only
   the first N rows are streamed (the same rows a full download would put first) and kept under the cache
   directory, so trying a 9,000-question split on 20 questions does not download all of it.
`lmms-lab/X` and `lmms-lab-encoder/X` are the same datasets (lmms-eval moved some ids): both are tried, in
both places.

Memory stays bounded for any split size: the rows stay in memory-mapped Arrow files (the hub cache, the
mirror, or a parquet conversion under the cache directory) and HubSamples builds one Sample at a time, so
only the batch the runner is working on is decoded.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any, overload

from vittle_bench.config import TaskSpec
from vittle_bench.data.rows import ColumnMap, decode_image
from vittle_bench.data.sources import SAMPLE_SOURCES, SampleSource
from vittle_bench.errors import ConfigError
from vittle_bench.schema import Sample

_ALIASES = {"lmms-lab": "lmms-lab-encoder", "lmms-lab-encoder": "lmms-lab"}

# Row counts of the hub splits our task configs use (from the dataset cards / viewers; see docs/datasets.md),
# shown by `vittle-bench list tasks` without touching the network.
KNOWN_SIZES: dict[tuple[str, str | None, str], str] = {
    ("lmms-lab/POPE", None, "test"): "9000",
    **{("lmms-lab/POPE", "Full", s): "3000" for s in ("adversarial", "popular", "random")},
    ("lmms-lab/llava-bench-coco", None, "train"): "90",
    ("lmms-lab/llava-bench-in-the-wild", None, "train"): "60",
    ("lmms-lab/LLaVA-Bench-Wilder", None, "test"): "~256",
    ("WildVision/wildvision-arena-data", "release_bench_0617_with_modelresponse", "test500"): "500",
    ("lmms-lab/ScienceQA", "ScienceQA-IMG", "test"): "2017",
    ("lmms-lab/ScienceQA", "ScienceQA-IMG", "validation"): "2097",
    ("lmms-lab/MMMU", None, "validation"): "900",
    ("lmms-lab/MMMU", None, "dev"): "150",
    ("lmms-lab/MME", None, "test"): "2374",
    ("Lin-Chen/MMStar", "val", "val"): "1500",
}
_EMI_NATURAL_SIZES = {"llava_bench_coco": "90", "llava_bench_in_the_wild_easy": "30",
                      "llava_bench_in_the_wild_normal": "60", "llava_bench_in_the_wild_hard": "30"}


def source_target(spec: TaskSpec) -> tuple[str, str]:
    """('hf', 'org/name') or ('disk', 'PATH') from a task's `source:`."""
    scheme, sep, target = spec.source.partition(":")
    if scheme not in ("hf", "disk") or not sep or not target:
        raise ConfigError(f"task {spec.task}: source {spec.source!r} is not hf:ORG/NAME or disk:PATH")
    if scheme == "hf" and target.count("/") != 1:
        raise ConfigError(f"task {spec.task}: hub source {spec.source!r} must be hf:ORG/NAME")
    return scheme, target


def repo_ids(repo: str) -> list[str]:
    org, _, name = repo.partition("/")
    return [repo] + ([f"{_ALIASES[org]}/{name}"] if org in _ALIASES else [])


def _config(spec: TaskSpec) -> str | None:
    return None if spec.subset in (None, "", "default") else spec.subset


def describe(spec: TaskSpec) -> str:
    scheme, target = source_target(spec)
    return f"{target} (config {_config(spec) or 'default'}, split {spec.split})"


def known_size(spec: TaskSpec) -> str:
    scheme, target = source_target(spec)
    for repo in repo_ids(target) if scheme == "hf" else []:
        size = KNOWN_SIZES.get((repo, _config(spec), spec.split or ""))
        if size:
            return size
    if target == "changdae/llavabench-shift-synthetic-v1":
        return "90"
    if target == "changdae/llavabench-shift-natural-v1":
        return _EMI_NATURAL_SIZES.get((spec.split or "").rsplit("_", 1)[0], "?")
    return "?"


def _parquet_files(root: Path, split: str) -> list[Path]:
    def matches(path: Path) -> bool:
        stem = path.name[: -len(".parquet")]
        return split in path.relative_to(root).parts[:-1] or stem == split or stem.startswith(f"{split}-")

    return sorted(p for p in root.rglob("*.parquet") if matches(p))


def load_local(root: Path, split: str, cache_dir: Path, task: str) -> Any | None:
    """The split's Dataset from one local directory, or None when the directory holds nothing for it."""
    from datasets import load_dataset, load_from_disk

    if (root / "dataset_dict.json").is_file():  # save_to_disk keeps each split in <root>/<split>/
        splits = json.loads((root / "dataset_dict.json").read_text()).get("splits", [])
        if split not in splits:
            raise ConfigError(f"task {task}: {root} is a saved DatasetDict without split {split!r} "
                              f"(it has {', '.join(splits)}); fix `split:` or save that split there")
        return load_from_disk(str(root / split))
    if (root / split / "state.json").is_file():
        return load_from_disk(str(root / split))
    if (root / "state.json").is_file():
        dataset = load_from_disk(str(root))
        if dataset.split is not None and str(dataset.split) != split:
            raise ConfigError(f"task {task}: {root} holds split {dataset.split!r}, not {split!r}")
        return dataset
    files = _parquet_files(root, split) if root.is_dir() else []
    if files:
        return load_dataset("parquet", data_files={split: [str(f) for f in files]}, split=split,
                            cache_dir=str(cache_dir / "hf-parquet"))
    return None


def _offline_hint(repo: str, config: str | None) -> str:
    folder = f"DIR/{repo}" + (f"/{config}" if config else "")
    return (f"To use it without the hub, on a machine with hub access run `python -c \"import datasets; "
            f"datasets.load_dataset('{repo}'{f', {config!r}' if config else ''}).save_to_disk('{folder}')\"`, "
            f"copy DIR here and pass --data-dir DIR (the hub repo's parquet files under DIR/{repo}/ work too).")


def open_dataset(spec: TaskSpec, cache_dir: Path, data_dir: Path | None = None,
                 limit: int | None = None) -> tuple[Any, str]:
    """(datasets.Dataset, where it came from) for a task, or a one-paragraph ConfigError saying how to fix it.
    `limit` only changes what is fetched from the hub (its first rows); local copies are opened whole."""
    scheme, target = source_target(spec)
    split, config = spec.split, _config(spec)
    if not split:
        raise ConfigError(f"task {spec.task}: a {scheme}: source needs `split:`")
    if scheme == "disk":
        root = Path(target).expanduser()
        root = root if root.is_absolute() else spec.path.parent / root
        dataset = load_local(root, split, cache_dir, spec.task) if root.exists() else None
        if dataset is None:
            raise ConfigError(f"task {spec.task}: no dataset with split {split!r} at {root} (expected a "
                              f"save_to_disk Dataset/DatasetDict or {split}-*.parquet files there)")
        return dataset, str(root)
    looked: list[Path] = []
    if data_dir is not None:
        for repo in repo_ids(target):
            for root in ([data_dir / repo / config] if config else []) + [data_dir / repo]:
                looked.append(root)
                dataset = load_local(root, split, cache_dir, spec.task) if root.exists() else None
                if dataset is not None:
                    return dataset, str(root)
    return _load_hub(spec, target, config, split, looked, data_dir, cache_dir, limit)


def _first_rows(repo: str, config: str | None, split: str, revision: str | None, limit: int,
                cache_dir: Path) -> Any:
    """The split's first `limit` rows, streamed once and then read from cache_dir (images kept as bytes)."""
    from datasets import Dataset, Image, load_dataset, load_from_disk

    path = cache_dir / "hf-first-rows" / repo / (config or "default") / (revision or "main") / f"{split}-{limit}"
    if (path / "state.json").is_file():
        return load_from_disk(str(path))
    stream = load_dataset(repo, config, split=split, revision=revision, streaming=True)
    features = stream.features
    if features is not None:
        for column, feature in features.items():
            if isinstance(feature, Image):
                stream = stream.cast_column(column, Image(decode=False))
        features = stream.features
    dataset = Dataset.from_list(list(stream.take(limit)), features=features)
    dataset.save_to_disk(str(path))
    return load_from_disk(str(path))


def _load_hub(spec: TaskSpec, target: str, config: str | None, split: str, looked: list[Path],
              data_dir: Path | None, cache_dir: Path, limit: int | None) -> tuple[Any, str]:
    from datasets import load_dataset

    failures: list[str] = []
    for repo in repo_ids(target):
        try:
            if limit:
                return (_first_rows(repo, config, split, spec.revision, limit, cache_dir),
                        f"hub:{repo} (first {limit} rows)")
            return load_dataset(repo, config, split=split, revision=spec.revision), f"hub:{repo}"
        except ValueError as exc:  # unknown split or config: the repo answered, the task config is wrong
            raise ConfigError(f"task {spec.task}: {describe(spec)}: {str(exc).splitlines()[0]}") from None
        except Exception as exc:  # noqa: BLE001 - offline, missing repo, gated repo: all end in the message below
            failures.append(f"{repo}: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
    where = (f"not found under --data-dir {data_dir} (looked in {', '.join(str(p) for p in looked)})"
             if data_dir is not None else "no --data-dir was given")
    raise ConfigError(f"task {spec.task}: dataset {describe(spec)} is not available: {where}, and the hub "
                      f"could not provide it ({'; '.join(failures)}). {_offline_hint(target, config)}")


class HubSamples(Sequence):
    """A lazy, sliceable view of a dataset as Samples: one row is read and decoded per access.

    A row that cannot become a Sample (undecodable image, empty question, bad answer index) becomes a Sample
    with no images and `load_error` set, so one bad row never stops a run; the runner records it.
    """

    def __init__(self, task: str, dataset: Any, cmap: ColumnMap, indices: range | None = None) -> None:
        from datasets import Image

        self.task, self.cmap = task, cmap
        present = [c for c in cmap.columns() if c in dataset.column_names]
        self._image_columns = [c for c in present if isinstance(dataset.features[c], Image)]
        dataset = dataset.select_columns(present)
        for column in self._image_columns:  # we decode ourselves: per-row errors are caught, not fatal
            dataset = dataset.cast_column(column, Image(decode=False))
        self._dataset = dataset
        self._indices = indices if indices is not None else range(len(dataset))

    def __len__(self) -> int:
        return len(self._indices)

    @overload
    def __getitem__(self, i: int) -> Sample: ...

    @overload
    def __getitem__(self, i: slice) -> HubSamples: ...

    def __getitem__(self, i: int | slice) -> Sample | HubSamples:
        if isinstance(i, slice):
            view = HubSamples.__new__(HubSamples)
            view.__dict__.update(self.__dict__)
            view._indices = self._indices[i]
            return view
        index = self._indices[i]
        row = self._dataset[index]
        try:
            for column in self._image_columns:
                row[column] = decode_image(row.get(column))
            return Sample(task=self.task, **self.cmap.build(self.task, row, index))
        except Exception as exc:  # noqa: BLE001 - recorded on the sample, the run goes on
            id_column = self.cmap.fields.get("sample_id", ("",))[0]
            raw_id = row.get(id_column)
            question = row.get(self.cmap.fields["question"][0])
            return Sample(task=self.task, sample_id=str(index if raw_id is None else raw_id),
                          question=str(question or ""), load_error=f"{type(exc).__name__}: {exc}",
                          meta={"row_index": index})


@SAMPLE_SOURCES.register("hf")
@SAMPLE_SOURCES.register("disk")
class HubSource(SampleSource):
    """`hf:ORG/NAME` (with an offline mirror under `--data-dir`) and `disk:PATH` (a `save_to_disk` copy)."""

    form = "hf:ORG/NAME or disk:PATH"

    def load(self, spec: TaskSpec, cache_dir: Path, data_dir: Path | None, limit: int | None) -> HubSamples:
        return load_hub_samples(spec, cache_dir, data_dir, limit)

    def size(self, spec: TaskSpec) -> str:
        return known_size(spec)


def load_hub_samples(spec: TaskSpec, cache_dir: Path, data_dir: Path | None = None,
                     limit: int | None = None) -> HubSamples:
    """The task's Samples (lazy) after checking that every column its `columns:` needs exists; with `limit`,
    a hub split is fetched only as far as its first `limit` rows."""
    cmap = ColumnMap.from_spec(spec.task, spec.columns)
    dataset, origin = open_dataset(spec, cache_dir, data_dir, limit)
    missing = cmap.missing(list(dataset.column_names))
    if missing:
        scheme, target = source_target(spec)
        fix = _offline_hint(target, _config(spec)) if scheme == "hf" else "Rewrite the dataset with those columns."
        raise ConfigError(
            f"task {spec.task}: dataset {describe(spec)} loaded from {origin} has no column"
            f"{'s' if len(missing) > 1 else ''} {', '.join(repr(m) for m in missing)}, which `columns:` in "
            f"{spec.path.name} needs (the dataset has: {', '.join(dataset.column_names)}). Fix `columns:`, or "
            f"provide the dataset with the hub's schema. {fix}")
    return HubSamples(spec.task, dataset, cmap)
