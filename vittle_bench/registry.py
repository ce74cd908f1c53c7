"""One generic registry for models, tasks adapters, shifts, judges and encoders.

Built-ins register with a decorator; third-party packages add entries through the entry-point group
`vittle_bench.<kind>`, loaded lazily on the first lookup so that `import vittle_bench` stays cheap.
"""

from __future__ import annotations

import difflib
import importlib
from importlib.metadata import entry_points
from typing import Callable, Generic, Iterator, TypeVar

T = TypeVar("T")


class UnknownNameError(KeyError):
    """An unknown name; its message names the closest valid ones (the CLI prints it and exits 2)."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class Registry(Generic[T]):
    def __init__(self, kind: str, builtin_modules: tuple[str, ...] = (),
                 on_add: Callable[[str, T], None] | None = None) -> None:
        self.kind = kind
        self.builtin_modules = builtin_modules  # imported on first lookup; they register with the decorator
        self.group = f"vittle_bench.{kind}"
        self.on_add = on_add  # called once per entry, built-in or plugin (e.g. to register what it declares)
        self._entries: dict[str, T] = {}
        self._plugins_loaded = False

    def _add(self, name: str, obj: T) -> None:
        if name in self._entries and self._entries[name] is not obj:
            raise ValueError(f"{self.kind} {name!r} is registered twice")
        if name not in self._entries:
            self._entries[name] = obj
            if self.on_add is not None:
                self.on_add(name, obj)

    def register(self, name: str) -> Callable[[T], T]:
        def decorator(obj: T) -> T:
            self._add(name, obj)
            return obj

        return decorator

    def _load_plugins(self) -> None:
        if self._plugins_loaded:
            return
        self._plugins_loaded = True
        for module in self.builtin_modules:
            importlib.import_module(module)
        for ep in entry_points(group=self.group):
            if ep.name not in self._entries:
                self._add(ep.name, ep.load())

    def get(self, name: str) -> T:
        self._load_plugins()
        try:
            return self._entries[name]
        except KeyError:
            raise UnknownNameError(unknown_name_message(self.kind, name, self.names())) from None

    def names(self) -> list[str]:
        self._load_plugins()
        return sorted(self._entries)

    def __contains__(self, name: str) -> bool:
        self._load_plugins()
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())


def unknown_name_message(kind: str, name: str, valid: list[str]) -> str:
    close = difflib.get_close_matches(name, valid, n=3, cutoff=0.5)
    hint = f"did you mean {', '.join(close)}?" if close else f"valid: {', '.join(valid[:12])}"
    return f"unknown {kind.rstrip('s')} {name!r}; {hint} (see `vittle-bench list {kind}`)"
