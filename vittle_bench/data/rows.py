"""Dataset row -> Sample: a declarative column mapping (the task YAML's `columns:`) plus, where a dataset
needs more than renaming, one small registered row format.

`columns:` maps Sample fields to dataset columns:

    sample_id: question_id          # str() of the value; a missing/None id falls back to the row index
    question: question
    images: image_1,image_2         # one or more image columns, in order; None values are skipped
    answer: answer
    choices: choices                # a list column
    category: category
    context: caption                # a list is joined with newlines; "" becomes None
    meta: question_type,img_type    # copied into Sample.meta
    row: mmmu                       # a registered row format applied after the mapping

A column name ending in `?` is optional: the dataset may lack it (used where the hub card is unverified).
Row formats are registered in ROW_FORMATS (plugins: entry-point group `vittle_bench.row_formats`); each is
`fn(fields, row, index) -> fields`, where `fields` are the Sample keyword arguments built from the mapping
and `row` is the raw row with its image columns already decoded.
"""

from __future__ import annotations

import ast
import re
import string
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from PIL import Image

from vittle_bench.errors import ConfigError
from vittle_bench.images import downscale_meta, load_image
from vittle_bench.registry import Registry

RowFormat = Callable[[dict[str, Any], dict[str, Any], int], dict[str, Any]]
ROW_FORMATS: Registry[RowFormat] = Registry("row_formats", ("vittle_bench.data.llava_bench",))
_SINGLE = ("sample_id", "question", "answer", "choices", "category", "context")
_MULTI = ("images", "meta")


@dataclass(frozen=True)
class ColumnMap:
    """The parsed `columns:` of a task: Sample field -> dataset columns, optional columns, row format."""

    fields: dict[str, tuple[str, ...]]
    optional: frozenset[str]
    row: str | None

    @classmethod
    def from_spec(cls, task: str, columns: dict[str, str]) -> ColumnMap:
        unknown = set(columns) - set(_SINGLE) - set(_MULTI) - {"row"}
        if unknown:
            raise ConfigError(f"task {task}: unknown `columns:` keys {sorted(unknown)} "
                              f"(valid: {', '.join(_SINGLE + _MULTI)}, row)")
        if "question" not in columns:
            raise ConfigError(f"task {task}: `columns:` must map `question` to a dataset column")
        fields: dict[str, tuple[str, ...]] = {}
        optional: set[str] = set()
        for key, value in columns.items():
            if key == "row":
                continue
            names = tuple(n.strip() for n in str(value).split(",") if n.strip())
            if key in _SINGLE and len(names) != 1:
                raise ConfigError(f"task {task}: `columns: {key}` takes exactly one column, got {value!r}")
            optional |= {n[:-1] for n in names if n.endswith("?")}
            fields[key] = tuple(n.rstrip("?") for n in names)
        row = columns.get("row")
        if row is not None:
            ROW_FORMATS.get(row)  # unknown formats fail here, before any data loads
        return cls(fields, frozenset(optional), row)

    def columns(self) -> list[str]:
        return list(dict.fromkeys(c for cols in self.fields.values() for c in cols))

    def missing(self, available: list[str]) -> list[str]:
        """Required columns the dataset does not have."""
        return [c for c in self.columns() if c not in available and c not in self.optional]

    def build(self, task: str, row: dict[str, Any], index: int) -> dict[str, Any]:
        """Sample keyword arguments (without `task`) for one row whose images are already decoded."""
        def value(field: str) -> Any:
            cols = self.fields.get(field)
            return row.get(cols[0]) if cols else None

        fields: dict[str, Any] = {}
        sample_id = value("sample_id")
        fields["sample_id"] = str(index) if sample_id is None else str(sample_id)
        question = value("question")
        if question is None:
            raise ValueError(f"column {self.fields['question'][0]!r} is empty")
        fields["question"] = str(question)
        fields["images"] = tuple(row[c] for c in self.fields.get("images", ()) if row.get(c) is not None)
        answer = value("answer")
        fields["answer"] = None if answer is None else answer if isinstance(answer, (int, float)) else str(answer)
        choices = value("choices")
        fields["choices"] = choices if isinstance(choices, str) else tuple(str(c) for c in choices or ())
        category = value("category")
        fields["category"] = None if category is None else str(category)
        context = value("context")
        if isinstance(context, (list, tuple)):
            context = "\n".join(str(c) for c in context)
        fields["context"] = str(context) if context not in (None, "") else None
        fields["meta"] = {c: row[c] for c in self.fields.get("meta", ()) if c in row}
        if self.row:
            fields = ROW_FORMATS.get(self.row)(fields, row, index)
        fields["meta"] = {**fields["meta"], **downscale_meta(fields["images"])}
        if isinstance(fields["answer"], (int, float)):
            raise ValueError(f"the answer is a number ({fields['answer']!r}); convert it with a row format "
                             f"(e.g. `row: scienceqa` for an option index)")
        if isinstance(fields["choices"], str):
            raise ValueError("the choices column holds a string, not a list; convert it with a row format "
                             "(e.g. `row: mmmu` for a list literal)")
        return fields


def index_to_letter(index: int, n_choices: int) -> str:
    if not 0 <= int(index) < n_choices:
        raise ValueError(f"answer index {index} is out of range for {n_choices} choices")
    return string.ascii_uppercase[int(index)]


MME_PROMPT_TAIL = " Please answer yes or no."


@ROW_FORMATS.register("mme")
def mme_row(fields: dict[str, Any], row: dict[str, Any], index: int) -> dict[str, Any]:
    """MME: drop the dataset's own " Please answer yes or no." (the adapter adds lmms-eval's instruction)
    and make the id unique: each image (question_id) carries two questions, so sample_id =
    f"{question_id}#{row index}"; the MME adapter pairs questions by the part before '#'. (Gold answers are
    normalised by the adapter, like every task's.)"""
    fields["question"] = fields["question"].strip().replace(MME_PROMPT_TAIL, "")
    fields["sample_id"] = f"{fields['sample_id']}#{index}"
    return fields


@ROW_FORMATS.register("scienceqa")
def scienceqa_row(fields: dict[str, Any], row: dict[str, Any], index: int) -> dict[str, Any]:
    """ScienceQA: `answer` is an index into `choices`; the empty hint is no context (lmms-eval's rule)."""
    fields["answer"] = index_to_letter(fields["answer"], len(fields["choices"]))
    return fields


_IMAGE_TOKEN = re.compile(r"<image (\d+)>")


@ROW_FORMATS.register("mmmu")
def mmmu_row(fields: dict[str, Any], row: dict[str, Any], index: int) -> dict[str, Any]:
    """MMMU: `options` is a Python list literal (empty for open questions); the images given to the model
    are those whose `<image k>` token appears in the question or options, ordered by k (lmms-eval's
    mmmu_doc_to_visual); the `<image k>` tokens stay in the text; category = the subject from the id
    (`validation_Art_Theory_12` -> `Art_Theory`)."""
    options = fields["choices"]
    parsed = ast.literal_eval(options) if isinstance(options, str) and options.strip() else list(options or ())
    if not isinstance(parsed, (list, tuple)):
        raise ValueError(f"options {options!r} is not a list literal")
    fields["choices"] = tuple(str(o) for o in parsed)
    text = fields["question"] + "\n" + "\n".join(fields["choices"])
    ks = sorted({int(k) for k in _IMAGE_TOKEN.findall(text)})
    missing = [k for k in ks if row.get(f"image_{k}") is None]
    if missing:
        raise ValueError(f"the question refers to <image {missing[0]}> but image_{missing[0]} is empty")
    fields["images"] = tuple(row[f"image_{k}"] for k in ks)
    subject = re.match(r"^[^_]+_(.+)_\d+$", fields["sample_id"])
    fields["category"] = subject.group(1) if subject else fields["category"]
    if not fields["choices"]:
        fields["answer"] = str(fields["answer"])
    return fields


_MMSTAR_OPTIONS = "\nOptions: "
_OPTION_LABEL = re.compile(r"(?:^|,\s*)([A-Z]):\s")


def split_inline_options(question: str) -> tuple[str, tuple[str, ...], bool] | None:
    """'stem\\nOptions: A: x, B: y, C: z' -> ('stem', ('x', 'y', 'z'), exact); exact is True when
    re-rendering gives back the original text byte for byte. None when no 'Options:' A, B, ... list is found."""
    head, sep, tail = question.rpartition("Options:")
    labels = list(_OPTION_LABEL.finditer(tail.lstrip()))
    tail = tail.lstrip()
    letters = [m.group(1) for m in labels]
    if not sep or len(labels) < 2 or letters != list(string.ascii_uppercase[: len(letters)]):
        return None
    ends = [m.start() for m in labels[1:]] + [len(tail)]
    choices = tuple(tail[m.end():end] for m, end in zip(labels, ends))
    stem = head[:-1] if head.endswith("\n") else head.rstrip()
    exact = stem + _MMSTAR_OPTIONS + format_inline(choices) == question
    return stem, choices, exact


def format_inline(choices: tuple[str, ...]) -> str:
    return ", ".join(f"{string.ascii_uppercase[i]}: {c}" for i, c in enumerate(choices))


@ROW_FORMATS.register("mmstar")
def mmstar_row(fields: dict[str, Any], row: dict[str, Any], index: int) -> dict[str, Any]:
    """MMStar writes its options inside the question ("...\\nOptions: A: x, B: y, C: z, D: w"). We split
    them off so text shifts touch the stem only; the closed-form adapter's `options_format: inline`
    re-renders them, giving lmms-eval's exact prompt. A question whose options do not re-render exactly
    keeps its full text and gets meta['options_in_question'] (the options are then not listed twice)."""
    split = split_inline_options(fields["question"])
    if split is None:
        raise ValueError("no 'Options: A: ..., B: ...' list found in the MMStar question")
    stem, choices, exact = split
    fields["choices"] = choices
    if exact:
        fields["question"] = stem
    else:
        fields["choices"] = tuple(c.strip() for c in choices)
        fields["meta"] = {**fields["meta"], "options_in_question": True}
    fields["answer"] = str(fields["answer"]).strip().upper()
    return fields


def decode_image(value: Any) -> Image.Image | None:
    """A datasets.Image cell read with decode=False ({'bytes', 'path'}), or an already decoded image -> the image
    as vittle_bench.images.load_image gives it (oriented, bounded in size, prepared RGB), the pixels every
    condition starts from. Raises on data that cannot be decoded or prepared; the caller records it per sample."""
    if value is None:
        return None
    if isinstance(value, Image.Image):
        return load_image(value)
    data, path = value.get("bytes"), value.get("path")
    return load_image(data if data is not None else path)
