"""Domain declarations and the rows they swap in: instead of transforming rows, a domain shift swaps them for
another split / config / language of the same benchmark (pre-translated questions, long-tail subsets, the EMI
paper's pre-shifted copies).

A domain shift is written `domain:NAME` in `--shifts` or a suite's `conditions`. What NAME means for a task is
declared in YAML, either as another task whose rows to use, or as overrides of the task's own source fields:

    # in a suite YAML (applies to the tasks named)      # ... or in a task YAML (applies to that task)
    domains:                                             domains:
      coco_de:                                             adversarial:
        applies_to: [llava_bench_coco]                       subset: pope_adversarial
        task: emi_nat_coco_german                          count_only:
                                                             where: {category: count}

Keys: `task` (take source, subset, split, columns and revision from that task config), overrides of those
TaskSpec fields and of adapter / adapter_args, and `where` (keep only rows whose Sample field or meta key
equals a value or is in a list). `applies_to` matches a task's name or its source (with or without the `hf:`
prefix).

How the swapped rows are scored (the judge protocol) is part of the declaration, so a domain cell differs
from the clean one by its rows only:
- `judged_as: TASK`: the rows are the same items as TASK's (a translation, a pre-shifted copy), matched by
  sample id: each takes TASK's reference answer, context, category and meta, and the cell is scored by TASK's
  adapter with its arguments (rubric, judge temperature and repeats). A row without a match in TASK is a
  per-sample error, never judged without its context.
- otherwise a `task:` domain is scored as that task is (its own adapter and arguments: a long-tail benchmark
  swapped in keeps its own judge protocol), and an override domain as the task it applies to.
- `question_suffix`: text appended to every question that does not already end with it (the EMI data's
  translated prompts end with " Please answer in English.").
The headline metric of the scoring adapter must be the task's own, or the cell could not share its row. A task
for which a domain is not declared has no cell for it (the grid skips it, it is not an error); a domain declared
for none of the selected tasks is a ConfigError. Domain shifts are not graded: severity is 1 (graded subsets are
separate names, e.g. wild_easy / wild_normal / wild_hard).

`DomainResolver.samples` tags the rows it returns with `meta["domain"]`, the mark `DomainShift.apply` checks.
"""


from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from vittle_bench.config import TaskSpec, config_files, load_task_specs, load_yaml
from vittle_bench.data.lazy import MappedSamples
from vittle_bench.data.sources import load_samples
from vittle_bench.schema import Sample
from vittle_bench.shifts import ShiftCondition
from vittle_bench.shifts.domain import DomainShift

SPEC_KEYS = ("source", "subset", "split", "columns", "revision", "adapter", "adapter_args")
SOURCE_KEYS = ("source", "subset", "split", "columns", "revision")
DECLARATION_KEYS = {*SPEC_KEYS, "task", "description", "applies_to", "where", "judged_as", "question_suffix"}
JOINED_FIELDS = ("answer", "context", "category")  # taken, with meta, from the `judged_as` task's matching row


class DomainError(ValueError):
    """A malformed or unusable domain declaration (the runner turns it into a ConfigError)."""


@dataclass(frozen=True)
class DomainDeclaration:
    name: str
    overrides: dict[str, Any]
    origin: Path
    applies_to: tuple[str, ...] = ()  # empty: the task whose YAML declares it
    where: dict[str, Any] = field(default_factory=dict)
    description: str = ""
    task: str | None = None  # take the source fields of this task config
    judged_as: str | None = None  # the rows are this task's items: scored with its answers, context and adapter
    question_suffix: str = ""

    def describe(self) -> dict[str, Any]:
        optional = {"task": self.task, "judged_as": self.judged_as, "question_suffix": self.question_suffix}
        return {"domain": self.name, "declared_in": str(self.origin), **{k: v for k, v in optional.items() if v},
                **self.overrides, **({"where": self.where} if self.where else {})}


def parse_declarations(data: Any, origin: Path, in_task: bool) -> dict[str, DomainDeclaration]:
    """Validate a `domains:` mapping from a task YAML (`in_task`) or a suite YAML."""
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise DomainError(f"{origin}: `domains` must map domain names to their overrides")
    declarations = {}
    for name, body in data.items():
        if not isinstance(body, dict):
            raise DomainError(f"{origin}: domain {name!r} must be a mapping of overrides")
        unknown = set(body) - DECLARATION_KEYS
        if unknown:
            raise DomainError(f"{origin}: domain {name!r} has unknown keys {sorted(unknown)} "
                              f"(allowed: {', '.join(sorted(DECLARATION_KEYS))})")
        applies_to = body.get("applies_to") or ()
        applies_to = (applies_to,) if isinstance(applies_to, str) else tuple(applies_to)
        if not in_task and not applies_to:
            raise DomainError(f"{origin}: domain {name!r} declared in a suite needs `applies_to` "
                              "(task names or sources)")
        overrides = {k: body[k] for k in SPEC_KEYS if k in body}
        if not overrides and not body.get("where") and not body.get("task"):
            raise DomainError(f"{origin}: domain {name!r} changes nothing "
                              "(give a task, source, split, subset or where)")
        DomainShift(str(name))  # validates the name
        declarations[str(name)] = DomainDeclaration(
            str(name), overrides, origin, applies_to, dict(body.get("where") or {}), str(body.get("description", "")),
            body.get("task"), body.get("judged_as"), str(body.get("question_suffix") or ""))
    return declarations


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = load_yaml(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise DomainError(f"{path}: cannot read domain declarations ({str(exc).splitlines()[0]})") from None
    return data if isinstance(data, dict) else {}


def _suite_files(include_paths: Sequence[Path]) -> list[Path]:
    """The suite files `load_suites` reads (`.yaml` and `.yml`, each once)."""
    return [path for path, _ in config_files("shifts", [Path(p) for p in include_paths])]


def _domain(condition: ShiftCondition) -> str:
    """The domain a `domain:NAME` condition names (callers pass domain conditions only)."""
    assert isinstance(condition.shift, DomainShift), condition.label
    return condition.shift.domain


def _identities(spec: TaskSpec) -> set[str]:
    source = spec.source
    return {spec.task, source, source.split(":", 1)[1] if ":" in source else source}


class DomainResolver:
    """Finds, for a task and a domain condition, the TaskSpec whose rows replace the task's own. Each task
    YAML's declarations are parsed once, and a `judged_as` task's items are loaded once per resolver."""

    def __init__(self, include_paths: Sequence[Path] = ()) -> None:
        self.include_paths = list(include_paths)
        self._task_specs: dict[str, TaskSpec] | None = None
        self._own: dict[Path, dict[str, DomainDeclaration]] = {}
        self._items: dict[tuple[str, Path, Path | None], dict[str, Sample]] = {}
        self.suite_declarations: list[DomainDeclaration] = []
        for path in _suite_files(include_paths):
            data = _read_yaml(path)
            if "suite" in data:
                self.suite_declarations += parse_declarations(data.get("domains"), path, in_task=False).values()

    def _own_declarations(self, path: Path) -> dict[str, DomainDeclaration]:
        if path not in self._own:
            self._own[path] = (parse_declarations(_read_yaml(path).get("domains"), path, in_task=True)
                               if path.is_file() else {})
        return self._own[path]

    def declaration(self, spec: TaskSpec, domain: str) -> DomainDeclaration | None:
        """The task YAML's own declaration first, then a suite's whose `applies_to` names the task or its source."""
        own = self._own_declarations(spec.path)
        if domain in own:
            return own[domain]
        identities = _identities(spec)
        for declaration in self.suite_declarations:
            if declaration.name == domain and identities & {a.strip() for a in declaration.applies_to}:
                return declaration
        return None

    def _named(self, name: str, declaration: DomainDeclaration) -> TaskSpec:
        """The TaskSpec of a task a declaration names (`task:` or `judged_as:`)."""
        if self._task_specs is None:
            self._task_specs = load_task_specs(self.include_paths)
        named = self._task_specs.get(name)
        if named is None:
            raise DomainError(f"{declaration.origin}: domain {declaration.name!r} refers to unknown task {name!r}")
        return named

    def _derive(self, spec: TaskSpec, declaration: DomainDeclaration) -> TaskSpec:
        if declaration.task is None:
            return replace(spec, **declaration.overrides, path=declaration.origin)
        base = self._named(declaration.task, declaration)
        return replace(spec, **{k: getattr(base, k) for k in SOURCE_KEYS}, **declaration.overrides, path=base.path)

    def task_spec(self, spec: TaskSpec, condition: ShiftCondition) -> TaskSpec | None:
        """The derived TaskSpec (same task name, overridden source fields; `path` = the declaring YAML so that
        relative `local:` sources resolve against it), or None when the domain is not declared for this task."""
        declaration = self.declaration(spec, _domain(condition))
        return None if declaration is None else self._derive(spec, declaration)

    def scoring_spec(self, spec: TaskSpec, condition: ShiftCondition) -> TaskSpec | None:
        """The TaskSpec (under the task's own name) whose adapter scores the task's cell under a domain
        condition: the `judged_as` task's, else the `task:` domain's own, else the task's with the declared
        overrides; None when the domain is not declared for this task."""
        declaration = self.declaration(spec, _domain(condition))
        if declaration is None:
            return None
        scorer = declaration.judged_as or declaration.task
        if scorer is None:
            return self._derive(spec, declaration)
        named = self._named(scorer, declaration)
        adapter = {k: declaration.overrides.get(k, getattr(named, k)) for k in ("adapter", "adapter_args")}
        return replace(spec, **adapter)

    def undeclared(self, specs: Sequence[TaskSpec], conditions: Sequence[ShiftCondition]) -> list[ShiftCondition]:
        """The domain conditions that no selected task declares (they would have no cell)."""
        return [c for c in conditions if c.kind == "domain" and not any(self.task_spec(s, c) for s in specs)]

    def check(self, specs: Sequence[TaskSpec], conditions: Sequence[ShiftCondition]) -> None:
        """Every domain condition must be declared for at least one selected task (else: a typo)."""
        for condition in self.undeclared(specs, conditions):
            known = sorted({d.name for d in self.suite_declarations})
            raise DomainError(f"{condition.label}: no selected task declares domain {_domain(condition)!r} "
                              f"(declare it under `domains:` in the task or suite YAML; suites declare: "
                              f"{', '.join(known[:12]) or 'none'})")

    def _judged_items(self, declaration: DomainDeclaration, cache_dir: Path,
                      data_dir: Path | None) -> dict[str, Sample]:
        """The `judged_as` task's items by sample id, without their images (only the joined fields are read),
        so that several domain cells judged as one task neither reload it nor hold its images."""
        name = str(declaration.judged_as)
        key = (name, Path(cache_dir), data_dir)
        if key not in self._items:
            items = load_samples(self._named(name, declaration), cache_dir, None, data_dir)
            self._items[key] = {s.sample_id: s.with_changes(images=()) for s in items}
        return self._items[key]

    def samples(self, spec: TaskSpec, condition: ShiftCondition, cache_dir: Path, limit: int | None = None,
                data_dir: Path | None = None) -> Sequence[Sample] | None:
        """The rows of a task under a domain condition (None when not declared for this task), each tagged
        with `meta["domain"]` as it is built."""
        declaration = self.declaration(spec, _domain(condition))
        if declaration is None:
            return None
        rows = load_samples(self._derive(spec, declaration), cache_dir, None if declaration.where else limit,
                            data_dir)
        if declaration.where:
            rows = select_rows(rows, declaration.where)
            rows = rows[:limit] if limit else rows
        if declaration.judged_as:
            rows = MappedSamples(rows, _JudgedAs(declaration.judged_as,
                                                 self._judged_items(declaration, cache_dir, data_dir)))
        if declaration.question_suffix:
            rows = MappedSamples(rows, _QuestionSuffix(declaration.question_suffix))
        return MappedSamples(rows, _Tag(_domain(condition)))


@dataclass(frozen=True)
class _JudgedAs:
    """A swapped-in row takes its matching item's reference answer, context, category and meta."""

    task: str
    items: dict[str, Sample]

    def __call__(self, row: Sample) -> Sample:
        item = self.items.get(row.sample_id)
        if row.load_error:
            return row
        if item is None or item.load_error:
            why = "has no row" if item is None else f"row failed to load ({item.load_error})"
            return row.with_changes(load_error=f"task {self.task} {why} with sample id {row.sample_id!r}, so this "
                                               "row has no reference answer and judge context")
        return row.with_changes(**{f: getattr(item, f) for f in JOINED_FIELDS}, meta={**item.meta, **row.meta})


@dataclass(frozen=True)
class _QuestionSuffix:
    suffix: str

    def __call__(self, row: Sample) -> Sample:
        if row.load_error or row.question.endswith(self.suffix):
            return row
        return row.with_changes(question=row.question + self.suffix)


@dataclass(frozen=True)
class _Tag:
    """Marks a row as belonging to a domain (`DomainShift.apply` checks the mark)."""

    domain: str

    def __call__(self, row: Sample) -> Sample:
        return row.with_changes(meta={**row.meta, "domain": self.domain})


def _field(sample: Sample, key: str) -> Any:
    return getattr(sample, key) if key in Sample.__dataclass_fields__ else sample.meta.get(key)


def select_rows(samples: Sequence[Sample], where: dict[str, Any]) -> list[Sample]:
    """Rows whose field (or meta key) equals the value, or is in the list, for every key of `where`."""
    def keep(sample: Sample) -> bool:
        return all(_field(sample, k) in (v if isinstance(v, list) else [v]) for k, v in where.items())

    return [s for s in samples if keep(s)]
