"""Task and suite files: `.yml` read like `.yaml`, `groups` a list, a built-in task replaced only with
`override: true`, and every mistake one line naming the file (YAML errors with line and column)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from vittle_bench.config import PACKAGE_CONFIGS, ConfigError, load_suites, load_task_specs, resolve_tasks

MC = "source: builtin:shapes\nsubset: mc\nadapter: closed_form\n"


def write(root: Path, name: str, text: str) -> Path:
    root.mkdir(exist_ok=True)
    (root / name).write_text(text)
    return root


def test_yml_files_are_read_like_yaml(tmp_path):
    root = write(tmp_path / "own", "mine.yml", f"task: mine\n{MC}groups: [own]\n")
    write(root, "suite.yml", "suite: own_suite\nconditions: [frost@2]\n")
    assert [s.task for s in resolve_tasks("own", [root])] == ["mine"]
    assert load_suites([root])["own_suite"]["conditions"] == ["frost@2"]


def test_groups_must_be_a_list(tmp_path):
    root = write(tmp_path / "own", "mine.yaml", f"task: mine\n{MC}groups: own\n")
    with pytest.raises(ConfigError, match=r"mine.yaml: groups must be a list of names: write groups: \[own\]"):
        load_task_specs([root])
    write(root, "mine.yaml", f"task: mine\n{MC}groups: [own, 3]\n")
    with pytest.raises(ConfigError, match="groups must be a list of names, got list"):
        load_task_specs([root])


def test_a_built_in_task_is_replaced_only_with_override(tmp_path, capsys):
    from vittle_bench.cli import main

    root = write(tmp_path / "own", "shapes_mc.yaml", f"task: shapes_mc\n{MC}description: mine\n")
    assert main(["list", "tasks", "--include-path", str(root)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(root / "shapes_mc.yaml") in err
    assert str(PACKAGE_CONFIGS / "tasks" / "shapes_mc.yaml") in err and "override: true" in err

    write(root, "shapes_mc.yaml", f"task: shapes_mc\noverride: true\n{MC}description: mine\n")
    spec = load_task_specs([root])["shapes_mc"]
    assert spec.description == "mine" and spec.path == root / "shapes_mc.yaml"
    assert [s.path for s in resolve_tasks("shapes_mc", [root])] == [root / "shapes_mc.yaml"]

    write(root, "again.yml", f"task: shapes_mc\noverride: true\n{MC}")  # two users' files: a clash either way
    with pytest.raises(ConfigError, match="also defined in"):
        load_task_specs([root])


def test_the_package_folder_as_an_include_path_is_not_a_clash():
    assert load_task_specs([PACKAGE_CONFIGS / "tasks"]) == load_task_specs()


@pytest.mark.parametrize("text,where,message", [
    ("task: x\nsource: [a\nadapter: pope\n", ":3:8:", "expected ',' or ']', but got ':'"),
    ("task: x\n  source: a\n", ":2:9:", "mapping values are not allowed here"),
    ("task: x\nsource: a\x07\n", ":2:10:", "unacceptable character #x0007"),
])
def test_yaml_errors_name_file_line_and_column(tmp_path, text, where, message):
    root = write(tmp_path / "own", "bad.yaml", text)
    with pytest.raises(ConfigError) as raised:
        load_task_specs([root])
    assert str(raised.value).startswith(f"{root / 'bad.yaml'}{where} malformed YAML: ")
    assert message in str(raised.value) and "\n" not in str(raised.value)


@pytest.mark.parametrize("line,message", [
    ("source: 2017", "source must be a non-empty string, got int 2017 (quote it)"),
    ("adapter_args: [1]", "adapter_args must be a mapping"),
    ("columns: {question: 3}", "columns must be a mapping of names to strs"),
    ("override: maybe", "override must be true or false"),
])
def test_wrong_types_are_one_line(tmp_path, line, message):
    fields = dict(f.split(": ", 1) for f in MC.splitlines())
    fields.update(dict([line.split(": ", 1)]))
    root = write(tmp_path / "own", "mine.yaml", "task: mine\n" + "".join(f"{k}: {v}\n" for k, v in fields.items()))
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_task_specs([root])


def test_a_yml_suites_domains_are_read(tmp_path):
    from vittle_bench.domains import DomainResolver

    root = write(tmp_path / "own", "langs.yml", "suite: langs\nconditions: ['domain:de']\n"
                 "domains:\n  de:\n    applies_to: [shapes_mc]\n    subset: mc\n")
    for include in ([root], [root, root]):  # each file is read once, however often it is reached
        declared = DomainResolver(include).suite_declarations
        assert [d.name for d in declared if d.origin == root / "langs.yml"] == ["de"]


VARIANTS = ("source: builtin:shapes\nadapter: closed_form\nsubset: mc\ngroups: [family]\n"
            "adapter_args: {per_category: true}\n"
            "domains:\n  only_count:\n    where: {category: count}\n"
            "variants:\n"
            "  - {task: first, description: the first}\n"
            "  - {task: second, subset: open, adapter_args: {}}\n")


def test_variants_expand_into_one_task_each(tmp_path):
    from vittle_bench.domains import DomainResolver

    root = write(tmp_path / "own", "family.yaml", VARIANTS)
    specs = load_task_specs([root])
    first, second = specs["first"], specs["second"]
    assert [s.task for s in resolve_tasks("family", [root])] == ["first", "second"]
    assert (first.subset, first.description, first.adapter_args, first.groups) == ("mc", "the first",
                                                                                  {"per_category": True}, ("family",))
    assert (second.subset, second.description, second.adapter_args) == ("open", "", {})  # a mapping is replaced whole
    assert first.path == second.path == root / "family.yaml" and first.source == second.source == "builtin:shapes"
    resolver = DomainResolver([root])  # the file's own domains apply to every variant
    assert [resolver.declaration(s, "only_count") is not None for s in (first, second)] == [True, True]


@pytest.mark.parametrize("variants,message", [
    ("variants: first", "family.yaml: variants must be a non-empty list of mappings"),
    ("variants: []", "family.yaml: variants must be a non-empty list of mappings"),
    ("variants: [first]", "family.yaml: variants[0] must be a mapping such as {task: NAME, split: SPLIT}, got str"),
    ("variants: [{task: a}, {split: b}]", "family.yaml: variants[1]: task must be a non-empty string, got nothing"),
    ("variants: [{task: a, split: 3}]", "family.yaml: variants[0]: split must be a string, got int 3 (quote it)"),
    ("variants: [{task: a, sploit: b}]", "family.yaml: variants[0]: unknown keys ['sploit']"),
    ("variants: [{task: a, variants: []}]", "family.yaml: variants[0]: unknown keys ['variants']"),
    ("variants: [{task: a, domains: {}}]", "family.yaml: variants[0]: domains must be declared at the top level"),
    ("task: a\nvariants: [{task: b}]", "family.yaml: a file with variants names its tasks in the entries"),
])
def test_a_malformed_variants_file_is_one_line_naming_it(tmp_path, capsys, variants, message):
    from vittle_bench.cli import main

    root = write(tmp_path / "own", "family.yaml", f"{MC}{variants}\n")
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_task_specs([root])
    assert main(["list", "tasks", "--include-path", str(root)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(root / "family.yaml") in err


def test_a_task_name_is_declared_once(tmp_path):
    root = write(tmp_path / "own", "family.yaml", f"{MC}variants: [{{task: a}}, {{task: b}}, {{task: a}}]\n")
    with pytest.raises(ConfigError, match=re.escape("family.yaml: variants[2]: task 'a' is declared twice in this "
                                                    "file")):
        load_task_specs([root])
    write(root, "family.yaml", f"{MC}variants: [{{task: a}}, {{task: b}}]\n")
    write(root, "other.yaml", f"task: b\n{MC}")
    with pytest.raises(ConfigError, match=re.escape(f"other.yaml: task 'b' is also defined in {root / 'family.yaml'}")):
        load_task_specs([root])
    write(root, "other.yaml", f"{MC}variants: [{{task: shapes_mc}}]\n")  # a built-in is replaced only with override
    with pytest.raises(ConfigError, match=r"other.yaml: variants\[0\]: task 'shapes_mc' is the built-in task"):
        load_task_specs([root])
    write(root, "other.yaml", f"{MC}variants: [{{task: shapes_mc, override: true}}]\n")
    assert load_task_specs([root])["shapes_mc"].path == root / "other.yaml"


def test_a_user_suite_replaces_a_built_in_only_when_it_says_so(tmp_path):
    """As for tasks: a user suite named `quick` is refused unless it declares `override: true`; two user files
    never define one suite."""
    shadow = write(tmp_path / "shadow", "quick.yaml", "suite: quick\nconditions: [frost@1]\n")
    with pytest.raises(ConfigError, match=r"quick.yaml: suite 'quick' is the built-in suite of .*quick.yaml; add "
                                          r"`override: true`"):
        load_suites([shadow])
    own = write(tmp_path / "own", "quick.yaml", "suite: quick\noverride: true\nconditions: [frost@1]\n")
    assert load_suites([own])["quick"]["conditions"] == ["frost@1"]
    write(tmp_path / "own", "again.yaml", "suite: quick\noverride: true\nconditions: [frost@2]\n")
    with pytest.raises(ConfigError, match=r"suite 'quick' is also defined in"):
        load_suites([own])
