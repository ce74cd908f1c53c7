"""`local:` task sources: a JSON-lines file of questions with image paths, for users' own data.

Each line: {"question_id", "question", "image" (path, or list of paths, relative to the file),
"answer", optional "choices", "category", "context"}. Images are prepared like every loader's (RGB, see
vittle_bench.images). A row whose image cannot be decoded or prepared, or whose required field is missing,
becomes a per-sample error (counted in `n_errors`), not a crash.
"""

from __future__ import annotations

import json
from pathlib import Path

from PIL import Image

from vittle_bench.config import ConfigError
from vittle_bench.data.lazy import LazySamples
from vittle_bench.images import prepare_image
from vittle_bench.schema import Sample

REQUIRED = ("question_id", "question")


def _open_image(path: Path) -> Image.Image:
    """The file's prepared RGB image (vittle_bench.images.prepare_image), decoded now: a truncated file or a
    mode that cannot be prepared fails here, inside the per-sample guard."""
    with Image.open(path) as image:
        image.load()
        return prepare_image(image)


def _row_to_sample(task: str, root: Path, row: dict) -> Sample:
    missing = [k for k in REQUIRED if k not in row]
    if missing:
        raise KeyError(f"missing column(s) {missing}")
    paths = row.get("image") or []
    paths = [paths] if isinstance(paths, str) else paths
    return Sample(task=task, sample_id=str(row["question_id"]), question=str(row["question"]),
                  images=tuple(_open_image(root / p) for p in paths), answer=row.get("answer"),
                  choices=tuple(row.get("choices") or ()), category=row.get("category"), context=row.get("context"))


def load_local_jsonl(task: str, path: Path) -> LazySamples:
    if not path.is_file():
        raise ConfigError(f"task {task}: {path} does not exist")
    rows = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise ConfigError(f"task {task}: {path}:{number} is not valid JSON ({exc.msg})") from None
    return LazySamples(task, rows, lambda row: _row_to_sample(task, path.parent, row),
                       lambda i, row: str(row.get("question_id", f"row-{i}")))
