"""`local:` task sources: a JSON-lines file of questions with image paths, for users' own data (the format, with
an example: docs/datasets.md, "Your own questions: `local:`").

One JSON object per line: `question_id` and `question` (required), `image` (a path or a list of paths, relative
to the file), `answer`, `choices` (multiple choice: a list of option texts, lettered A, B, ... in order),
`category`, `context` (a string, or a list joined with newlines).

What is wrong with the file as a whole is the user's to fix and stops the run before any model loads (one line,
exit 2): a line that is not a JSON object, a `question_id` given twice. What is wrong with one row becomes that
sample's error (recorded and counted in `n_errors`): a missing required field, a field of the wrong type, a
multiple-choice answer that names no option, an image that cannot be read.
"""

from __future__ import annotations

import json
import string
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from vittle_bench.config import TaskSpec
from vittle_bench.data.lazy import LazySamples
from vittle_bench.data.sources import SAMPLE_SOURCES, SampleSource
from vittle_bench.errors import ConfigError
from vittle_bench.images import downscale_meta, load_image
from vittle_bench.schema import Sample

REQUIRED = ("question_id", "question")


def answer_letter(answer: str, choices: Sequence[str]) -> str:
    """A multiple-choice gold answer as its option letter, as the closed-form adapter compares it: a letter
    (either case) is kept, an option's text (ignoring case and surrounding spaces) becomes that option's letter.
    Raises ValueError for anything else, so that an answer that cannot be right is never scored 0 in silence:
    text that is no option, text that is several options, or a letter that is also another option's text."""
    letters = string.ascii_uppercase[: len(choices)]
    text = answer.strip()
    as_letter = text.upper() if len(text) == 1 and text.upper() in letters else None
    by_text = [letters[i] for i, choice in enumerate(choices) if choice.strip().casefold() == text.casefold()]
    if as_letter and by_text and by_text != [as_letter]:
        raise ValueError(f"answer {answer!r} is ambiguous: it is option {as_letter}'s letter and the text of option "
                         f"{' and '.join(by_text)}")
    if as_letter or len(by_text) == 1:
        return as_letter or by_text[0]
    if by_text:
        raise ValueError(f"answer {answer!r} is the text of several options ({' and '.join(by_text)})")
    raise ValueError(f"answer {answer!r} is neither an option letter ({letters[0]}-{letters[-1]}) nor the text of "
                     f"one of the {len(choices)} choices")


def _text(row: dict[str, Any], field: str) -> str | None:
    """A text field: a string, or a number written without quotes; None when absent."""
    value = row.get(field)
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    raise ValueError(f"`{field}` must be a string, got {type(value).__name__} {value!r}")


def _strings(row: dict[str, Any], field: str) -> list[str]:
    """A field holding one string or a list of them (image paths, choices, context lines)."""
    value = row.get(field)
    if value is None:
        return []
    values = [value] if isinstance(value, str) else value
    if not isinstance(values, list) or not all(isinstance(v, (str, int, float)) for v in values):
        raise ValueError(f"`{field}` must be a string or a list of strings, got {value!r}")
    return [str(v) for v in values]


def _row_to_sample(task: str, root: Path, row: dict[str, Any]) -> Sample:
    missing = [k for k in REQUIRED if row.get(k) is None]
    if missing:
        raise KeyError(f"missing column(s) {missing}")
    if isinstance(row.get("choices"), str):
        raise ValueError("`choices` must be a list of option texts, not one string")
    choices = tuple(_strings(row, "choices"))
    if len(choices) > len(string.ascii_uppercase):
        raise ValueError(f"{len(choices)} choices: options are lettered A-Z, so at most 26")
    answer = _text(row, "answer")
    if answer is not None and choices:
        answer = answer_letter(answer, choices)
    images = tuple(load_image(root / path) for path in _strings(row, "image"))
    return Sample(task=task, sample_id=str(row["question_id"]), question=str(_text(row, "question")), images=images,
                  answer=answer, choices=choices, category=_text(row, "category"),
                  context="\n".join(_strings(row, "context")) or None, meta=downscale_meta(images))


@SAMPLE_SOURCES.register("local")
class LocalSource(SampleSource):
    """`local:FILE.jsonl`: a user's own questions with image paths, relative to the task's YAML file."""

    form = "local:FILE.jsonl"

    def load(self, spec: TaskSpec, cache_dir: Path, data_dir: Path | None, limit: int | None) -> LazySamples:
        return load_local_jsonl(spec.task, spec.path.parent / spec.source.removeprefix("local:"))


def load_local_jsonl(task: str, path: Path) -> LazySamples:
    """The file's questions as lazy Samples (images are read when a sample is reached), after checking the file
    as a whole: JSON objects, one per line, and no `question_id` twice."""
    if not path.is_file():
        raise ConfigError(f"task {task}: {path} does not exist")
    rows: list[dict[str, Any]] = []
    first_line: dict[str, int] = {}
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"task {task}: {path}:{number} is not valid JSON ({exc.msg})") from None
        if not isinstance(row, dict):
            raise ConfigError(f"task {task}: {path}:{number} is not a JSON object (one question per line)")
        if row.get("question_id") is not None:
            key = str(row["question_id"])
            if key in first_line:
                raise ConfigError(f"task {task}: {path}: question_id {key!r} is on lines {first_line[key]} and "
                                  f"{number}; each question needs its own id")
            first_line[key] = number
        rows.append(row)
    return LazySamples(task, rows, lambda row: _row_to_sample(task, path.parent, row),
                       lambda i, row: f"row-{i}" if row.get("question_id") is None else str(row["question_id"]))
