"""Entry points load lazily, per name: a plugin that cannot be imported or built breaks only the lookups of its
own name, with one line naming its package and entry point; a name claimed twice is an error naming both."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from vittle_bench.registry import PluginError, Registry, UnknownNameError, unknown_name_message

GROUP = "vittle_bench.things"


def install(site: Path, package: str, source: str, entry_points: dict[str, str], group: str = GROUP) -> None:
    """A package as pip leaves it: its module and a .dist-info listing its entry points."""
    module = package.replace("-", "_")
    site.mkdir(parents=True, exist_ok=True)
    (site / f"{module}.py").write_text(textwrap.dedent(source))
    info = site / f"{module}-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {package}\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(f"[{group}]\n" + "".join(f"{k} = {v}\n" for k, v in entry_points.items()))


@pytest.fixture
def site(tmp_path, monkeypatch):
    """Packages installed here are found by the next lookup, as in a new process (the path is restored after)."""
    path = tmp_path / "site"
    path.mkdir()
    monkeypatch.syspath_prepend(str(path))
    for module in ("vbt_good", "vbt_kaput", "vbt_boom", "vbt_other"):
        monkeypatch.delitem(sys.modules, module, raising=False)
    return path


def test_a_lookup_imports_only_its_own_plugin(site):
    install(site, "vbt-good", "def make(x):\n    return ('good', x)\n", {"good": "vbt_good:make"})
    install(site, "vbt-kaput", "raise ImportError('vbt_kaput needs a library that is not installed')\n",
            {"kaput": "vbt_kaput:make"})
    things: Registry = Registry("things")
    assert "good" in things and "kaput" in things and "vbt_good" not in sys.modules  # claimed, nothing imported
    assert things.build("good", 3) == ("good", 3)
    assert "vbt_kaput" not in sys.modules  # never imported: the good plugin's lookup is unaffected
    with pytest.raises(PluginError) as raised:
        things.get("kaput")
    message = str(raised.value)
    assert "\n" not in message and "package vbt-kaput 1.0" in message and "`kaput = vbt_kaput:make`" in message
    assert "ImportError: vbt_kaput needs a library" in message
    assert things.names() == ["good"] and list(things.broken()) == ["kaput"]
    with pytest.raises(UnknownNameError, match="did you mean good"):
        things.get("goood")


def test_a_factory_that_raises_is_the_plugins_error_a_rejected_argument_is_not(site):
    install(site, "vbt-boom", """
        def make(x):
            if x == 0:
                raise ValueError("boom accepts 1-5")
            raise RuntimeError("internal failure")
    """, {"boom": "vbt_boom:make"})
    things: Registry = Registry("things")
    with pytest.raises(PluginError, match=r"`boom = vbt_boom:make`.* of package vbt-boom 1.0 cannot be built: "
                                          r"RuntimeError: internal failure"):
        things.build("boom", 3)
    with pytest.raises(ValueError, match="boom accepts 1-5"):
        things.build("boom", 0)
    things.register("ours")(lambda x: 1 / x)
    with pytest.raises(ZeroDivisionError):  # a built-in's exception is our bug: it propagates as it is
        things.build("ours", 0)


def test_a_name_claimed_twice_is_an_error_naming_both(site):
    install(site, "vbt-good", "def make(x):\n    return x\n", {"twin": "vbt_good:make", "frost": "vbt_good:make"},
            group="vittle_bench.shifts")
    install(site, "vbt-other", "def make(x):\n    return x\n", {"twin": "vbt_other:make"},
            group="vittle_bench.shifts")
    from vittle_bench.shifts import SHIFTS

    with pytest.raises(PluginError) as raised:
        SHIFTS.get("frost")
    assert "the built-in in vittle_bench.shifts.image" in str(raised.value) and "vbt-good" in str(raised.value)
    with pytest.raises(PluginError) as raised:
        SHIFTS.get("twin")
    assert "vbt-good" in str(raised.value) and "vbt-other" in str(raised.value)
    assert SHIFTS.get("snow") is not None and {"frost", "twin"} <= set(SHIFTS.broken())
    assert "frost" not in SHIFTS.names() and "snow" in SHIFTS.names()


def test_the_built_ins_survive_plugins_coming_and_going(tmp_path, monkeypatch):
    """Installing a plugin for one test and removing it (its path) leaves the registry as it found it."""
    from vittle_bench.shifts import SHIFTS

    before = SHIFTS.names()
    with monkeypatch.context() as patch:
        path = tmp_path / "site"
        install(path, "vbt-good", "def make(x):\n    return x\n", {"extra": "vbt_good:make"},
                group="vittle_bench.shifts")
        patch.syspath_prepend(str(path))
        patch.delitem(sys.modules, "vbt_good", raising=False)
        assert SHIFTS.names() == sorted([*before, "extra"])
    assert SHIFTS.names() == before and "extra" not in SHIFTS


def test_on_add_sees_each_plugin_once_and_its_failure_breaks_only_that_plugin(site):
    install(site, "vbt-good", """
        class Good:
            declares = ("metric_a",)

        class Odd:
            declares = None
    """, {"good": "vbt_good:Good", "odd": "vbt_good:Odd"})
    declared: list[str] = []

    def on_add(name: str, obj: Any) -> None:
        declared.extend(obj.declares)  # TypeError for Odd

    things: Registry = Registry("things", on_add=on_add)
    things.get("good")
    things.get("good")
    assert declared == ["metric_a"] and things.names() == ["good"]
    assert "TypeError" in things.broken()["odd"] and "vbt-good" in things.broken()["odd"]


def test_declared_metric_finds_a_plugin_adapters_metrics_beside_a_broken_adapter(tmp_path):
    """Through `vittle_bench.tasks` (in a fresh process: the metric registry keeps what a plugin declares)."""
    from test_shift_plugin import run_with
    from test_task_plugin import plugin_source

    site = tmp_path / "site"
    install(site, "vb-count-task", plugin_source(), {"count": "vb_count_task:CountAdapter"}, "vittle_bench.tasks")
    install(site, "vbt-kaput", "raise ImportError('not today')\n", {"kaput": "vbt_kaput:Adapter"},
            "vittle_bench.tasks")
    out = run_with(site, textwrap.dedent("""
        from vittle_bench.adapters import TASK_ADAPTERS
        from vittle_bench.adapters.base import declared_metric
        print("METRIC", declared_metric("count_error").unit, declared_metric("accuracy/colour").unit)
        print("BROKEN", *TASK_ADAPTERS.broken())
    """))
    assert "METRIC objects %" in out and "BROKEN kaput" in out


def test_plugins_may_import_the_adapter_base_from_vittle_bench_tasks():
    """docs/plugins.md: `vittle_bench.tasks` exports the adapter base and registry of `vittle_bench.adapters`."""
    from vittle_bench import adapters, tasks

    assert tasks.TaskAdapter is adapters.TaskAdapter and tasks.TASK_ADAPTERS is adapters.TASK_ADAPTERS


def test_an_unknown_name_points_to_a_list_command_only_where_one_exists():
    """`vittle-bench list` covers models, tasks, adapters, shifts and judges; an unknown encoder or metric gets
    the closest names but no pointer to a command that does not exist."""
    assert unknown_name_message("shifts", "frots", ["frost"]).endswith("(see `vittle-bench list shifts`)")
    for kind in ("encoders", "metrics", "row_formats"):
        message = unknown_name_message(kind, "minilm", ["minilm-l6"])
        assert "did you mean minilm-l6?" in message and "vittle-bench list" not in message
