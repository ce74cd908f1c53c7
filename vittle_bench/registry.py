"""One generic registry for models, task adapters, shifts, judges, encoders, metrics and row formats.

Built-ins register with a decorator when their module is imported (a registry imports its built-in modules on
first use). Third-party packages add entries through the entry-point group `vittle_bench.<kind>` (task
adapters: `vittle_bench.tasks`), and an entry point is imported only when its name is looked up, or when every
entry is enumerated (`names()`, `broken()`, as `vittle-bench list` does). So `import vittle_bench` stays cheap
and a broken plugin breaks only itself: it fails where it is used, with one line naming its package and entry
point (`PluginError`), and enumerations report it in `broken()` instead of failing. A name claimed twice (by a
built-in and a plugin, or by two plugins) is such an error too, naming both claimants: neither silently wins.
"""

from __future__ import annotations

import difflib
import importlib
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points
from types import FunctionType
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class UnknownNameError(KeyError):
    """An unknown name; its message names the closest valid ones (the CLI prints it and exits 2)."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class PluginError(UnknownNameError):
    """A name that cannot be served because of a plugin: it fails to import or to build, or another package
    claims the same name. Like an unknown name it is the installation's problem, not a bug of ours: the CLI
    prints its one line (naming the package and the entry point) and exits 2."""


@dataclass(frozen=True)
class _Origin:
    """Who registered a name: a plugin package (with its entry point), or a module of ours."""

    text: str
    package: str | None = None  # the distribution's name; None for vittle-bench itself


# The plugins being imported, innermost last: a registration made while one imports is that plugin's.
_importing_plugins: list[_Origin] = []


def _plugin_origin(ep: EntryPoint) -> _Origin:
    dist = getattr(ep, "dist", None)
    package = f"{dist.name} {dist.version}" if dist is not None else "an unnamed package"
    return _Origin(f"entry point `{ep.name} = {ep.value}` ({ep.group}) of package {package}",
                   dist.name if dist is not None else ep.value)


def _registration_origin(obj: object) -> _Origin:
    if _importing_plugins:
        return _importing_plugins[-1]
    module = getattr(obj, "__module__", None) if isinstance(obj, (type, FunctionType)) else None
    module = module or "vittle_bench"
    return _Origin(f"the built-in in {module}" if module.split(".")[0] == "vittle_bench" else f"module {module}")


def _one_line(exc: BaseException) -> str:
    first = next((line.strip() for line in str(exc).splitlines() if line.strip()), "")
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


class Registry(Generic[T]):
    """The entries of one kind (`shifts`, `adapters`, ...): built-ins, then the entry-point group `group`
    (`vittle_bench.<kind>` unless given). The kind names the entries in messages; an unknown name points to
    `vittle-bench list <kind>`."""

    def __init__(self, kind: str, builtin_modules: tuple[str, ...] = (),
                 on_add: Callable[[str, T], None] | None = None, group: str | None = None) -> None:
        self.kind = kind
        self.builtin_modules = builtin_modules  # imported on first use; they register with the decorator
        self.group = group or f"vittle_bench.{kind}"
        self.on_add = on_add  # called once per entry, built-in or plugin (e.g. to register what it declares)
        self._registered: dict[str, T] = {}  # decorator registrations: built-ins, and what plugins register
        self._origins: dict[str, _Origin] = {}  # for every registered or loaded name
        self._builtins_imported = False
        # Entry points are read from the installed packages' metadata (nothing is imported) once per sys.path:
        # a package that appears on the path later, or a test that adds one, is found as a new process would.
        self._plugins_loaded = False  # False forces a fresh read
        self._scanned_path: list[str] = []
        self._claims: dict[str, list[EntryPoint]] = {}  # name -> entry points of distinct packages
        self._entries: dict[str, T] = {}  # entry points loaded so far
        self._broken: dict[str, str] = {}  # name -> one-line error, for names that cannot be served

    @property
    def _singular(self) -> str:
        return {"adapters": "task adapter", "row_formats": "row format"}.get(self.kind, self.kind.rstrip("s"))

    def _add(self, name: str, obj: T) -> None:
        origin = _registration_origin(obj)
        existing = self._registered.get(name)
        if existing is obj:
            return
        if existing is not None:
            raise ValueError(f"{self._singular} {name!r} is registered twice: by {self._origins[name].text} and by "
                             f"{origin.text}")
        self._registered[name] = obj
        self._origins[name] = origin
        if self.on_add is not None:
            self.on_add(name, obj)

    def register(self, name: str) -> Callable[[T], T]:
        def decorator(obj: T) -> T:
            self._add(name, obj)
            return obj

        return decorator

    def _prepare(self) -> None:
        if not self._builtins_imported:
            self._builtins_imported = True  # first: a built-in module may look names up while it imports
            for module in self.builtin_modules:
                importlib.import_module(module)
        if not self._plugins_loaded or self._scanned_path != sys.path:
            self._scan()

    def _scan(self) -> None:
        claims: dict[str, list[EntryPoint]] = {}
        for ep in entry_points(group=self.group):
            others = claims.setdefault(ep.name, [])
            if all(_plugin_origin(e).package != _plugin_origin(ep).package for e in others):
                others.append(ep)
        self._plugins_loaded, self._scanned_path = True, list(sys.path)
        self._claims, self._entries, self._broken = claims, {}, {}

    def _fail(self, name: str, message: str) -> PluginError:
        self._broken[name] = message
        return PluginError(message)

    def _load(self, name: str) -> T:
        """The entry point claiming `name`, imported (once per scan), or the reason it cannot be."""
        claims = self._claims[name]
        registered = self._registered.get(name)
        if registered is not None and self._origins[name].package is None:
            raise self._fail(name, f"{self._singular} {name!r} is claimed twice: by {self._origins[name].text} and "
                                   f"by {_plugin_origin(claims[0]).text}; uninstall one of them")
        if len(claims) > 1:
            raise self._fail(name, f"{self._singular} {name!r} is claimed twice: by {_plugin_origin(claims[0]).text} "
                                   f"and by {_plugin_origin(claims[1]).text}; uninstall one of them")
        origin = _plugin_origin(claims[0])
        _importing_plugins.append(origin)
        try:
            obj = claims[0].load()
            registered = self._registered.get(name)  # the plugin's import may have registered it
            if registered is not None and registered is not obj:
                raise ValueError(f"the name is already registered by {self._origins[name].text}")
            if registered is None and self.on_add is not None:
                self.on_add(name, obj)
        except Exception as exc:  # noqa: BLE001 - any failure of a plugin's import is that plugin's error
            raise self._fail(name, f"{self._singular} {name!r}: {origin.text} cannot be loaded: "
                                   f"{_one_line(exc)}") from exc
        finally:
            _importing_plugins.pop()
        self._entries[name] = obj
        self._origins[name] = origin
        return obj

    def get(self, name: str) -> T:
        """The entry for `name`, importing its plugin (and only that) if a plugin provides it."""
        self._prepare()
        if name in self._broken:
            raise PluginError(self._broken[name])
        if name in self._entries:
            return self._entries[name]
        if name in self._claims:
            return self._load(name)
        if name in self._registered:
            return self._registered[name]
        raise UnknownNameError(unknown_name_message(self.kind, name, self._claimed()))

    def build(self, name: str, *args: Any, **kwargs: Any) -> Any:
        """`get(name)(*args, **kwargs)`, where a plugin's failure stays its own: any exception but ValueError
        (the documented way for a factory to reject an argument, e.g. a severity it does not support) becomes
        a PluginError naming its package. A built-in's exception propagates: that is our bug."""
        factory: Any = self.get(name)
        origin = self._origins.get(name)
        if origin is None or origin.package is None:
            return factory(*args, **kwargs)
        try:
            return factory(*args, **kwargs)
        except ValueError:
            raise
        except Exception as exc:  # noqa: BLE001 - a plugin's bug, reported in one line
            raise PluginError(f"{self._singular} {name!r}: {origin.text} cannot be built: {_one_line(exc)}") from exc

    def _claimed(self) -> list[str]:
        return sorted(set(self._registered) | set(self._claims))

    def _load_all(self) -> None:
        self._prepare()
        for name in self._claimed():
            try:
                self.get(name)
            except PluginError:
                continue  # recorded in self._broken

    def names(self) -> list[str]:
        """Every name that can be looked up; imports every plugin. Broken ones are left out: see `broken()`."""
        self._load_all()
        return [name for name in self._claimed() if name not in self._broken]

    def broken(self) -> dict[str, str]:
        """Names that cannot be served (plugins that fail to import, names claimed twice), each with its
        one-line reason; imports every plugin."""
        self._load_all()
        return dict(sorted(self._broken.items()))

    def __contains__(self, name: str) -> bool:
        """Whether anything claims `name`, without importing a plugin (a broken one counts: looking it up then
        reports why it cannot be used, rather than calling the name unknown)."""
        self._prepare()
        return name in self._registered or name in self._claims

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())


LISTED_KINDS = ("models", "tasks", "adapters", "shifts", "judges", "plans")  # what `vittle-bench list` accepts


def unknown_name_message(kind: str, name: str, valid: list[str]) -> str:
    """The closest valid names, and the command that lists them all where there is one."""
    close = difflib.get_close_matches(name, valid, n=3, cutoff=0.5)
    hint = f"did you mean {', '.join(close)}?" if close else f"valid: {', '.join(valid[:12])}"
    listed = f" (see `vittle-bench list {kind}`)" if kind in LISTED_KINDS else ""
    return f"unknown {kind.rstrip('s')} {name!r}; {hint}{listed}"
