"""`vittle-bench data pope`: build POPE from any COCO-format dataset, written with lmms-lab/POPE's schema.

The questions come from the same builder the built-in world uses (vittle_bench.data.coco_pope, the POPE
authors' construction); this command only adds the images and writes a `save_to_disk` DatasetDict with one
split per strategy, i.e. the layout of lmms-lab/POPE's `Full` config. Use it with a task whose source is
`disk:OUTPUT`, or write it to DIR/lmms-lab/POPE/Full and pass `--data-dir DIR` to run the pope_* tasks on it.

Columns (as lmms-lab/POPE): id (0-based row number), question_id (1-based), question, answer (yes/no),
image_source (the image file name without extension), image, category (the strategy). The card does not
say how id / question_id are numbered; this numbering is our choice.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from vittle_bench.config import ConfigError

POPE_COLUMNS = ("id", "question_id", "question", "answer", "image_source", "image", "category")


def register(sub: argparse._SubParsersAction) -> None:
    data = sub.add_parser("data", help="build datasets (POPE from COCO-format annotations)")
    kinds = data.add_subparsers(dest="dataset", required=True)
    pope = kinds.add_parser("pope", help="POPE questions from a COCO instances file, saved with lmms-lab/POPE's schema")
    pope.add_argument("--annotations", required=True, type=Path,
                      help="COCO instances JSON (e.g. instances_val2014.json)")
    pope.add_argument("--images", required=True, type=Path, help="folder holding the images' file_name paths")
    pope.add_argument("--output", required=True, type=Path, help="directory for the saved DatasetDict")
    pope.add_argument("--strategy", default="random,popular,adversarial",
                      help="comma-separated strategies, one split each (default: all three)")
    pope.add_argument("--num-images", type=int, default=500, help="images sampled (POPE: 500)")
    pope.add_argument("--k", type=int, default=3, help="ground-truth objects asked per image (POPE: 3)")
    pope.add_argument("--seed", type=int, default=0)
    pope.set_defaults(func=main)


def pope_features():
    from datasets import Features, Image, Value

    return Features({c: Image() if c == "image" else Value("string") for c in POPE_COLUMNS})


def write_pope_dataset(annotations: Path, images: Path, output: Path, strategies: list[str],
                       num_images: int = 500, k: int = 3, seed: int = 0, progress: bool = True) -> dict[str, int]:
    """Build and save; returns rows per split. Rows stream through an Arrow writer (images are read one at
    a time), so a full 3 x 3,000-question COCO build does not hold the images in memory."""
    from datasets import Dataset, DatasetDict
    from tqdm import tqdm

    from vittle_bench.data.coco_pope import STRATEGIES, build_pope

    unknown = [s for s in strategies if s not in STRATEGIES]
    if unknown or not strategies:
        raise ConfigError(f"--strategy: unknown {unknown or strategies}; choose from {', '.join(STRATEGIES)}")
    if num_images < 1 or k < 1:
        raise ConfigError(f"--num-images and --k must be at least 1 (got {num_images} and {k})")
    if not annotations.is_file():
        raise ConfigError(f"--annotations {annotations} is not a file")
    if not images.is_dir():
        raise ConfigError(f"--images {images} is not a directory")
    if output.exists() and (not output.is_dir() or any(output.iterdir())):
        raise ConfigError(f"--output {output} exists and is not an empty directory; choose a new directory")
    splits = {}
    for strategy in strategies:
        try:
            questions = build_pope(annotations, strategy, num_images=num_images, k=k, seed=seed)
        except (ValueError, KeyError, TypeError, AssertionError) as exc:  # pycocotools asserts the file's layout
            raise ConfigError(f"--annotations {annotations}: cannot build POPE ({type(exc).__name__}: {exc})") from None
        if not questions:  # every strategy draws from the same eligible images
            raise ConfigError(f"--k {k}: no image in {annotations.name} has {k} object categories and {k} it lacks "
                              "(POPE asks about k of each); lower --k")
        missing = sorted({q.file_name for q in questions if not (images / q.file_name).is_file()})
        if missing:
            raise ConfigError(f"--images {images}: {len(missing)} image(s) named in {annotations.name} are missing, "
                              f"e.g. {missing[0]}")
        splits[strategy] = questions
    try:  # before the images are read
        output.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"--output {output} cannot be created ({exc.strerror})") from None
    staging = Path(tempfile.mkdtemp(prefix="pope-build-"))
    try:
        with tqdm(total=sum(map(len, splits.values())), desc="POPE rows", unit="row", file=sys.stderr,
                  disable=not progress) as bar:
            # A fingerprint of our own: datasets would otherwise hash the generator's arguments, the bar included.
            built = {strategy: Dataset.from_generator(_rows, features=pope_features(), cache_dir=str(staging),
                                                      fingerprint=f"pope-{strategy}",
                                                      gen_kwargs={"questions": tuple(questions), "images": str(images),
                                                                  "bar": bar})
                     for strategy, questions in splits.items()}
        DatasetDict(built).save_to_disk(str(output))
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return {s: len(q) for s, q in splits.items()}


def _rows(questions: tuple[Any, ...], images: str, bar: Any) -> Iterator[dict[str, Any]]:
    """Rows in question order. `questions` is a tuple: datasets splits *list* gen_kwargs into shards."""
    for n, q in enumerate(questions):
        path = Path(images) / q.file_name
        yield {"id": str(n), "question_id": str(n + 1), "question": q.question, "answer": q.answer,
               "image_source": Path(q.file_name).stem, "image": {"bytes": path.read_bytes(), "path": q.file_name},
               "category": q.strategy}
        bar.update()


def main(args: argparse.Namespace) -> int:
    from vittle_bench.commands.common import library_bars_off

    strategies = [s.strip() for s in args.strategy.split(",") if s.strip()]
    with library_bars_off():
        counts = write_pope_dataset(args.annotations, args.images, args.output, strategies, args.num_images, args.k,
                                    args.seed)
    print(", ".join(f"{s}: {n} questions" for s, n in counts.items()) + f" -> {args.output.resolve()}/")
    print(f"use it with a task whose source is disk:{args.output.resolve()}, or save it as DIR/lmms-lab/POPE/Full "
          f"and pass --data-dir DIR to run the pope_* tasks on it")
    return 0
