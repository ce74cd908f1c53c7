"""`builtin:shapes`: the evaluation world, written once into the cache directory and then read from disk.

Layout (like a COCO release plus question files): images/, annotations.json (COCO instances),
pope_{random,popular,adversarial}.jsonl (built by the same POPE builder a user runs on COCO val2014),
mc.jsonl (count / colour / position, 4 options) and open.jsonl (descriptions with reference answers).
"""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

from vittle_bench.builtin.questions import multiple_choice_question, open_question
from vittle_bench.builtin.scenes import SceneObject, write_world_images
from vittle_bench.config import TaskSpec
from vittle_bench.data.coco_pope import STRATEGIES, build_pope, write_pope_jsonl
from vittle_bench.data.lazy import LazySamples
from vittle_bench.data.sources import SAMPLE_SOURCES, SampleSource
from vittle_bench.errors import ConfigError
from vittle_bench.images import downscale_meta, load_image
from vittle_bench.schema import Sample

WORLD_VERSION = 2
WORLD_SEED = 0
WORLD_IMAGES = 200
POPE_IMAGES = 50  # x 3 objects x (positive + negative) = 300 questions per POPE split
OPEN_QUESTIONS = 50
SUBSETS = tuple(f"pope_{s}" for s in STRATEGIES) + ("mc", "open")


def world_dir(cache_dir: Path, seed: int = WORLD_SEED) -> Path:
    return cache_dir / f"builtin-shapes-v{WORLD_VERSION}-seed{seed}"


def _objects_from_coco(coco: dict) -> dict[str, tuple[SceneObject, ...]]:
    by_image: dict[int, list[SceneObject]] = {}
    for ann in coco["annotations"]:
        x, y, w, h = ann["bbox"]
        a = ann["attributes"]
        by_image.setdefault(ann["image_id"], []).append(
            SceneObject(a["shape"], a["colour"], a["size"], x + w / 2, y + h / 2, max(w, h) / 2))
    return {img["file_name"]: tuple(by_image.get(img["id"], [])) for img in coco["images"]}


def _write_jsonl(path: Path, rows: list[dict]) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def build_world(directory: Path, seed: int = WORLD_SEED) -> None:
    annotations = write_world_images(directory, WORLD_IMAGES, seed)
    for strategy in STRATEGIES:
        write_pope_jsonl(build_pope(annotations, strategy, num_images=POPE_IMAGES, seed=seed),
                         directory / f"pope_{strategy}.jsonl")
    scenes = _objects_from_coco(json.loads(annotations.read_text()))
    mc_rows, open_rows = [], []
    for i, (file_name, objects) in enumerate(sorted(scenes.items())):
        q = multiple_choice_question(objects, random.Random(f"{seed}-mc-{i}"))
        mc_rows.append({"question_id": f"mc-{i}", "file_name": file_name, "question": q.question,
                        "choices": list(q.choices), "answer": q.answer, "category": q.kind})
        if i < OPEN_QUESTIONS:
            o = open_question(objects)
            open_rows.append({"question_id": f"open-{i}", "file_name": file_name, "question": o.question,
                              "answer": o.answer, "category": "detail"})
    _write_jsonl(directory / "mc.jsonl", mc_rows)
    _write_jsonl(directory / "open.jsonl", open_rows)


def ensure_world(cache_dir: Path, seed: int = WORLD_SEED) -> Path:
    """The world's directory, generating it first if needed (atomically: a killed build leaves no half world)."""
    target = world_dir(cache_dir, seed)
    if (target / "annotations.json").is_file():
        return target
    staging = target.with_name(target.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    build_world(staging, seed)
    staging.rename(target)
    return target


def _row_to_sample(task: str, directory: Path, row: dict) -> Sample:
    image = load_image(directory / "images" / row["file_name"])  # drawn upright in RGB: the loaders' rule holds
    return Sample(task=task, sample_id=str(row["question_id"]), question=row["question"], images=(image,),
                  answer=row["answer"], choices=tuple(row.get("choices", ())),
                  category=row.get("category") or row.get("strategy"),
                  meta={"file_name": row["file_name"], **downscale_meta((image,))})


@SAMPLE_SOURCES.register("builtin")
class BuiltinSource(SampleSource):
    """`builtin:shapes`: the embedded world, generated into the cache directory on first use."""

    form = "builtin:shapes"

    def load(self, spec: TaskSpec, cache_dir: Path, data_dir: Path | None, limit: int | None) -> LazySamples:
        if spec.source != self.form:
            raise ConfigError(f"task {spec.task}: source {spec.source!r}: the built-in world is {self.form}")
        return load_builtin_subset(spec.task, spec.subset or "", cache_dir)

    def size(self, spec: TaskSpec) -> str:
        return str({"mc": WORLD_IMAGES, "open": OPEN_QUESTIONS}.get(spec.subset or "", POPE_IMAGES * 3 * 2))


def load_builtin_subset(task: str, subset: str, cache_dir: Path) -> LazySamples:
    """The subset's questions; images are decoded only when a sample is reached."""
    if subset not in SUBSETS:
        raise ValueError(f"builtin:shapes has no subset {subset!r}; subsets: {', '.join(SUBSETS)}")
    directory = ensure_world(cache_dir)
    rows = [json.loads(line) for line in (directory / f"{subset}.jsonl").read_text().splitlines()]
    return LazySamples(task, rows, lambda row: _row_to_sample(task, directory, row),
                       lambda i, row: str(row.get("question_id", i)))
