"""Declarative task configs and shift suites (YAML, shipped as package data; more via --include-path).

Everything here is checked before any model loads, so a typo costs a second, not a model load. Task and suite
files end in `.yaml` or `.yml`; a user task or suite named like a built-in replaces it only with
`override: true`.

A task file declares one task (`task: NAME` and its keys) or, with `variants:`, several tasks that share every
key but a few: its top-level keys are the base, and each entry of the `variants` list (a mapping holding at
least `task`) is one task, the entry's keys replacing the base's (a mapping such as `adapter_args` is replaced
whole, not merged). The file then has no top-level `task`; a task's own `domains:` stay at the top level and
apply to every variant; a task name appears once per file. Errors name the file and the entry (`variants[3]`):

    source: hf:org/dataset
    adapter: open_ended
    variants:
      - {task: set_en, split: english, description: English questions}
      - {task: set_de, split: german, description: German questions}
"""

from __future__ import annotations

import copy
import datetime
from dataclasses import dataclass, field
from functools import cache
from importlib.resources import files
from pathlib import Path
from typing import Any

import yaml

from vittle_bench.adapters import TASK_ADAPTERS
from vittle_bench.adapters.base import check_adapter_args
from vittle_bench.errors import ConfigError
from vittle_bench.registry import UnknownNameError, unknown_name_message
from vittle_bench.shifts import SHIFTS, ShiftCondition, parse_condition

PACKAGE_CONFIGS = Path(str(files("vittle_bench") / "configs"))
_TASK_KEYS = {"task", "description", "source", "subset", "split", "adapter", "adapter_args", "groups", "columns",
              "revision",
              "domains",  # read by shifts/domain.py (rows swapped under a domain condition)
              "override"}  # true: this user task replaces the built-in task of the same name
_SUFFIXES = (".yaml", ".yml")
DEFAULT_TASKS = "builtin"
DEFAULT_SHIFTS = "quick"


@dataclass(frozen=True)
class TaskSpec:
    task: str
    source: str
    adapter: str
    path: Path
    subset: str | None = None
    split: str | None = None
    description: str = ""
    groups: tuple[str, ...] = ()
    adapter_args: dict[str, Any] = field(default_factory=dict)
    columns: dict[str, str] = field(default_factory=dict)
    revision: str | None = None


def config_files(kind: str, include_paths: list[Path]) -> list[tuple[Path, bool]]:
    """(file, is built-in) for every YAML config: the package's `kind` folder, then each include path's tree. A
    file is read once, however it is reached (an include path may be, or hold, the package's own folder)."""
    def yaml_in(paths: Any) -> list[Path]:
        return sorted(p for p in paths if p.suffix in _SUFFIXES and p.is_file())

    found = [(p, True) for p in yaml_in((PACKAGE_CONFIGS / kind).iterdir())]
    seen = {p.resolve() for p, _ in found}
    for root in include_paths:
        if not root.is_dir():
            raise ConfigError(f"--include-path {root} is not a directory")
        for path in yaml_in(root.rglob("*")):
            if path.resolve() not in seen:
                seen.add(path.resolve())
                found.append((path, False))
    return found


def yaml_error_message(path: Path, text: str, exc: Exception) -> str:
    """`file:line:column: malformed YAML: the parser's message`, on one line (without a position where the
    parser gives none)."""
    where, message = str(path), str(exc)
    if isinstance(exc, yaml.MarkedYAMLError):
        mark = exc.problem_mark or exc.context_mark
        if mark is not None:
            where = f"{path}:{mark.line + 1}:{mark.column + 1}"
        message = "; ".join(m for m in (exc.context, exc.problem) if m) or message
    elif isinstance(exc, yaml.reader.ReaderError):
        line, column = text.count("\n", 0, exc.position) + 1, exc.position - text.rfind("\n", 0, exc.position)
        where = f"{path}:{line}:{column}"
        message = f"unacceptable character #x{exc.character:04x}: {exc.reason}" if isinstance(exc.character, int) \
            else exc.reason
    return f"{where}: malformed YAML: {' '.join(message.split())}"


# libyaml's loader where PyYAML was built with it: the same safe subset, parsed about ten times faster (every
# command reads the ~80 task and suite files).
_SAFE_LOADER = yaml.CSafeLoader if yaml.__with_libyaml__ else yaml.SafeLoader


def load_yaml(text: str) -> Any:
    """`yaml.safe_load`, through libyaml when it is there; a malformed file is parsed again by PyYAML's own
    parser, whose error messages are the ones its users know (and the tests pin)."""
    try:
        return yaml.load(text, Loader=_SAFE_LOADER)  # noqa: S506 - a safe loader
    except yaml.YAMLError:
        return yaml.safe_load(text)


def _parse(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    try:
        return load_yaml(text)
    except (yaml.YAMLError, ValueError) as exc:  # ValueError: a scalar its tag cannot hold (`2001-13-45`)
        raise ConfigError(yaml_error_message(path, text, exc)) from None


@cache
def _parse_package_file(path: Path, mtime_ns: int) -> Any:
    """The package's configs are read once per process: every command reads all of them, often twice."""
    return _parse(path)


def _read(path: Path, builtin: bool = False) -> dict[str, Any]:
    data = copy.deepcopy(_parse_package_file(path, path.stat().st_mtime_ns)) if builtin else _parse(path)
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    return data


def _describe(value: Any) -> str:
    return "nothing" if value is None else f"{type(value).__name__} {value!r}"[:60]


def _text(where: str, data: dict[str, Any], key: str, required: bool = False) -> str | None:
    """A string field; YAML's numbers, booleans and dates are refused rather than converted (`0123` would read
    as 83, `no` as false)."""
    value = data.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, str) or (required and not value.strip()):
        hint = " (quote it)" if isinstance(value, (int, float, datetime.date)) else ""
        raise ConfigError(f"{where}: {key} must be a {'non-empty ' if required else ''}string, got "
                          f"{_describe(value)}{hint}")
    return value


def _mapping(where: str, data: dict[str, Any], key: str, values: type | None = None) -> dict[str, Any]:
    value = data.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(k, str) for k in value) or \
            (values is not None and not all(isinstance(v, values) for v in value.values())):
        of = f"names to {values.__name__}s" if values is not None else "names to values"
        raise ConfigError(f"{where}: {key} must be a mapping of {of}, got {_describe(value)}")
    return dict(value)


def _task_entries(path: Path, data: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(where its errors point, its config) for each task of a file: the file itself, or each `variants` entry
    over the file's other keys."""
    if "variants" not in data:
        return [(str(path), data)]
    base = {k: v for k, v in data.items() if k != "variants"}
    if "task" in base:
        raise ConfigError(f"{path}: a file with variants names its tasks in the entries; remove the top-level "
                          f"task {_describe(base['task'])}")
    variants = data["variants"]
    if not isinstance(variants, list) or not variants:
        raise ConfigError(f"{path}: variants must be a non-empty list of mappings such as "
                          f"{{task: NAME, split: SPLIT}}, got {_describe(variants)}")
    entries = []
    for index, entry in enumerate(variants):
        where = f"{path}: variants[{index}]"
        if not isinstance(entry, dict):
            raise ConfigError(f"{where} must be a mapping such as {{task: NAME, split: SPLIT}}, got "
                              f"{_describe(entry)}")
        if "domains" in entry:  # domains.py reads a task's own domains from its file's top level
            raise ConfigError(f"{where}: domains must be declared at the top level of the file, where they apply "
                              "to every variant")
        entries.append((where, copy.deepcopy({**base, **entry})))
    return entries


def _task_spec(path: Path, data: dict[str, Any], where: str) -> TaskSpec:
    """A task config checked field by field: every mistake is one line naming `where` (the file, and the variant
    in a file of variants) and the key."""
    unknown = sorted(str(k) for k in set(data) - _TASK_KEYS)
    missing = sorted({"source", "adapter"} - set(data))
    if unknown or missing:
        raise ConfigError(f"{where}: " + "; ".join(filter(None, [
            f"unknown keys {unknown}" if unknown else "", f"missing keys {missing}" if missing else ""])))
    task, source, adapter = (_text(where, data, k, required=True) or "" for k in ("task", "source", "adapter"))
    if "," in task or task != task.strip():
        raise ConfigError(f"{where}: task name {task!r} must not contain commas or surrounding spaces")
    groups = [] if data.get("groups") is None else data["groups"]
    if isinstance(groups, str):
        raise ConfigError(f"{where}: groups must be a list of names: write groups: [{groups}] (a string is not "
                          "split into characters)")
    if not isinstance(groups, list) or not all(isinstance(g, str) and g.strip() for g in groups):
        raise ConfigError(f"{where}: groups must be a list of names, got {_describe(groups)}")
    if not isinstance(data.get("override", False), bool):
        raise ConfigError(f"{where}: override must be true or false, got {_describe(data['override'])}")
    if adapter not in TASK_ADAPTERS:
        raise ConfigError(f"{where}: {unknown_name_message('adapters', adapter, TASK_ADAPTERS.names())}")
    adapter_args = _mapping(where, data, "adapter_args")
    check_adapter_args(adapter, adapter_args, where)
    return TaskSpec(task=task, source=source, adapter=adapter, path=path, subset=_text(where, data, "subset"),
                    split=_text(where, data, "split"), description=_text(where, data, "description") or "",
                    groups=tuple(groups), adapter_args=adapter_args,
                    columns=_mapping(where, data, "columns", str), revision=_text(where, data, "revision"))


def load_task_specs(include_paths: list[Path] | None = None) -> dict[str, TaskSpec]:
    """Every task config, the package's and each include path's. A user task named like a built-in replaces it
    only with `override: true`, and two user files (or two variants of one file) never define one task: a name
    clash is never silent."""
    specs: dict[str, TaskSpec] = {}
    builtin: set[str] = set()
    for path, is_builtin in config_files("tasks", include_paths or []):
        data = _read(path, is_builtin)
        if "task" not in data and "variants" not in data:
            continue  # a shift suite living in an included directory
        in_file: set[str] = set()
        for where, entry in _task_entries(path, data):
            spec = _task_spec(path, entry, where)
            if spec.task in in_file:
                raise ConfigError(f"{where}: task {spec.task!r} is declared twice in this file")
            in_file.add(spec.task)
            previous = specs.get(spec.task)
            if previous is not None and not (spec.task in builtin and entry.get("override") is True):
                raise ConfigError(f"{where}: task {spec.task!r} is the built-in task of {previous.path}; add "
                                  "`override: true` to use this one instead" if spec.task in builtin else
                                  f"{where}: task {spec.task!r} is also defined in {previous.path}")
            if is_builtin:
                builtin.add(spec.task)
            else:
                builtin.discard(spec.task)  # overridden: a second user file of that name is a clash
            specs[spec.task] = spec
    return specs


def resolve_tasks(text: str, include_paths: list[Path] | None = None) -> list[TaskSpec]:
    """Comma-separated task names and/or group names, in order, without duplicates."""
    specs = load_task_specs(include_paths)
    groups: dict[str, list[str]] = {}
    for spec in specs.values():
        for group in spec.groups:
            groups.setdefault(group, []).append(spec.task)
    chosen: list[str] = []
    for name in filter(None, (n.strip() for n in text.split(","))):
        members = groups.get(name) or ([name] if name in specs else None)
        if members is None:
            raise UnknownNameError(unknown_name_message("tasks", name, sorted(specs) + sorted(groups)))
        chosen += [m for m in members if m not in chosen]
    return [specs[n] for n in chosen]


def load_suites(include_paths: list[Path] | None = None) -> dict[str, dict[str, Any]]:
    """Every shift suite, the package's and each include path's; as for tasks, a user suite named like a
    built-in replaces it only with `override: true`, and two user files never define one suite."""
    suites: dict[str, dict[str, Any]] = {}
    origins: dict[str, tuple[Path, bool]] = {}
    for path, is_builtin in config_files("shifts", include_paths or []):
        data = _read(path, is_builtin)
        if "suite" not in data:
            continue
        name = data["suite"]
        if not isinstance(name, str) or not name.strip():
            raise ConfigError(f"{path}: suite must be a non-empty string, got {_describe(name)}")
        conditions = data.get("conditions")
        if not isinstance(conditions, list) or not all(isinstance(c, str) for c in conditions):
            raise ConfigError(f"{path}: a suite needs a list of conditions (strings such as frost@3)")
        if not isinstance(data.get("override", False), bool):
            raise ConfigError(f"{path}: override must be true or false, got {_describe(data['override'])}")
        if name in origins:
            previous, previous_builtin = origins[name]
            if not (previous_builtin and data.get("override") is True):
                raise ConfigError(f"{path}: suite {name!r} is the built-in suite of {previous}; add `override: true` "
                                  "to use this one instead" if previous_builtin else
                                  f"{path}: suite {name!r} is also defined in {previous}")
        suites[name], origins[name] = data, (path, is_builtin)
    return suites


def named_conditions(text: str, include_paths: list[Path] | None = None) -> set[str]:
    """Labels of the conditions `--shifts` names directly, not through a suite (a suite may hold conditions
    that apply to other tasks than the selected ones; a condition named on its own must apply)."""
    suites = load_suites(include_paths)
    names = [n.strip() for n in text.split(",") if n.strip() and n.strip() not in suites]
    labels = set()
    for name in names:
        try:
            labels.add(parse_condition(name).label)
        except (ValueError, UnknownNameError):
            continue  # resolve_shifts reports it
    return labels


def resolve_shifts(text: str, include_paths: list[Path] | None = None) -> list[ShiftCondition]:
    """Suites and/or conditions (`name@sev`, `image@sev+text@sev`); clean always comes first, once."""
    return expand_conditions(["clean", *(n.strip() for n in text.split(","))], include_paths)


def is_condition(item: str) -> bool:
    """Written as a condition (`name@sev`, a joint, `domain:NAME`, clean), not as a suite's name."""
    return "@" in item or item == "clean" or item.startswith("domain:")


def expand_conditions(items: list[str], include_paths: list[Path] | None = None) -> list[ShiftCondition]:
    """Suites and conditions, in order, each condition once; nothing is added."""
    suites = load_suites(include_paths)
    labels: list[str] = []
    for item in filter(None, (i.strip() for i in items)):
        if item in suites:
            labels += [str(c) for c in suites[item]["conditions"]]
        elif is_condition(item):
            labels.append(item)
        else:
            raise UnknownNameError(unknown_name_message("shifts", item, sorted(suites) + SHIFTS.names()))
    conditions: list[ShiftCondition] = []
    for label in labels:
        try:
            condition = parse_condition(label)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        if condition.label not in {c.label for c in conditions}:
            conditions.append(condition)
    return conditions
