"""A third-party shift package (the docs/plugins.md example, installed into a throw-away directory) shows up
in `vittle-bench list shifts`, composes into joint conditions and runs through `vittle-bench run`; broken
plugins installed beside it (one that cannot be imported, one whose factory raises) break only themselves."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PLUGIN_SOURCE = textwrap.dedent('''
    """A third-party shift for vittle-bench: colour inversion, blended in by severity (20 % per level)."""
    from dataclasses import dataclass

    from PIL import Image

    from vittle_bench.shifts import ImageShift


    @dataclass(frozen=True)
    class Invert(ImageShift):
        severity: int
        name: str = "invert"
        version: str = "1"

        def params(self):
            return {"blend": 0.2 * self.severity}

        def apply_image(self, image, seed):
            rgb = image.convert("RGB")
            return Image.blend(rgb, Image.eval(rgb, lambda v: 255 - v), 0.2 * self.severity)
''')


BROKEN_SOURCES = {
    "vb_kaput_shift": "import vb_a_module_nobody_installed  # fails on import\n",
    "vb_boom_shift": textwrap.dedent('''
        def make(severity):
            raise RuntimeError("the boom shift cannot be built")
    '''),
}
# A text shift as a plain class, no Shift subclass: refused where it is built.
PLAIN_SOURCE = textwrap.dedent('''
    from dataclasses import dataclass


    @dataclass(frozen=True)
    class Plain:
        severity: int
        name: str = "plain"
        kind: str = "text"
        version: str = "1"

        def apply(self, sample, rng):
            return sample.with_changes(question=sample.question.upper())
''')
NOT_A_SHIFT = "vb_plain_shift.Plain is not a vittle_bench.shifts.Shift subclass"
BROKEN = {"kaput": ("vb-kaput-shift", "kaput = vb_kaput_shift:Kaput", "cannot be loaded: ModuleNotFoundError"),
          "boom": ("vb-boom-shift", "boom = vb_boom_shift:make", "cannot be built: RuntimeError")}


def install_package(site: Path, module: str, source: str, entry_points: str) -> None:
    """What `pip install` leaves behind: the module and a .dist-info with its entry points."""
    site.mkdir(parents=True, exist_ok=True)
    (site / f"{module}.py").write_text(source)
    info = site / f"{module}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {module.replace('_', '-')}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(entry_points)


def install_by_hand(site: Path, broken: bool = False) -> Path:
    """The docs' invert plugin; with `broken`, also two broken shift plugins beside it."""
    install_package(site, "vb_invert_shift", PLUGIN_SOURCE, "[vittle_bench.shifts]\ninvert = vb_invert_shift:Invert\n")
    for package, entry_point, _ in BROKEN.values() if broken else ():
        module = package.replace("-", "_")
        install_package(site, module, BROKEN_SOURCES[module], f"[vittle_bench.shifts]\n{entry_point}\n")
    return site


def run_with(site: Path, code: str) -> str:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), str(REPO)])}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


_CHECK = textwrap.dedent("""
    import numpy as np, skimage.data
    from PIL import Image
    from vittle_bench.cli import main
    from vittle_bench.schema import Sample
    from vittle_bench.shifts import parse_condition, sample_rng
    main(["list", "shifts"])
    image = Image.fromarray(skimage.data.coffee()).resize((40, 30))
    sample = Sample("t", "1", "What is in the cup?", images=(image,))
    for label in ("invert@5", "invert@2+keyboard@3"):
        c = parse_condition(label)
        out = c.shift.apply(sample, sample_rng(0, c.label, "1"))
        print("RESULT", c.label, c.kind, int(np.asarray(out.images[0]).astype(int).sum()), out.question)
    print("CLEAN", int((255 - np.asarray(image).astype(int)).sum()))
""")


def test_hand_installed_plugin_is_listed_and_applies(tmp_path):
    """Beside two broken plugins: `list shifts` names each in one line and lists the rest as usual."""
    out = run_with(install_by_hand(tmp_path / "site", broken=True), _CHECK)
    lines = out.splitlines()
    assert re.match(r"invert\s+image\s+severities 1-5$", next(line for line in lines if line.startswith("invert ")))
    assert any(line.startswith("frost ") and "image" in line for line in lines)  # the built-ins as usual
    for name, (package, entry_point, reason) in BROKEN.items():
        (line,) = [line for line in lines if line.split()[0] == name]
        assert "BROKEN" in line and package in line and entry_point in line and reason in line, line
    results = {line.split()[1]: line.split() for line in lines if line.startswith("RESULT")}
    inverted = int(next(line for line in lines if line.startswith("CLEAN")).split()[1])
    assert results["invert@5"][2] == "image" and int(results["invert@5"][3]) == inverted  # full inversion at 5
    assert results["invert@2+keyboard@3"][2] == "joint" and results["invert@2+keyboard@3"][4:] != \
        "What is in the cup?".split()


@pytest.mark.parametrize("name", sorted(BROKEN))
def test_a_run_naming_a_broken_plugin_exits_2_with_one_line(name, tmp_path, monkeypatch, capsys):
    from vittle_bench.cli import main

    monkeypatch.syspath_prepend(str(install_by_hand(tmp_path / "site", broken=True)))
    code = main(["run", "--model", "builtin:tiny-llava", "--tasks", "shapes_mc", "--shifts",
                 f"invert@2,{name}@2", "--output", str(tmp_path / "run")])
    err = capsys.readouterr().err
    package, entry_point, reason = BROKEN[name]
    assert code == 2 and err.count("\n") == 1 and package in err and entry_point in err and reason in err, err


def test_a_plugin_that_builds_no_shift_is_refused_in_one_line(tmp_path, monkeypatch, capsys):
    """`list shifts` marks it BROKEN naming its class; a run naming it stops in one line, exit 2."""
    from vittle_bench.cli import main

    site = tmp_path / "site"
    install_package(site, "vb_plain_shift", PLAIN_SOURCE, "[vittle_bench.shifts]\nplain = vb_plain_shift:Plain\n")
    monkeypatch.syspath_prepend(str(site))
    assert main(["list", "shifts"]) == 0
    (line,) = [line for line in capsys.readouterr().out.splitlines() if line.split()[0] == "plain"]
    assert "BROKEN" in line and NOT_A_SHIFT in line, line
    code = main(["run", "--model", "builtin:tiny-llava", "--tasks", "shapes_mc", "--shifts", "plain@2",
                 "--output", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and NOT_A_SHIFT in err, err


def test_plugin_runs_in_vittle_bench_run(tmp_path, monkeypatch, tiny_random_checkpoint, world_cache):
    """Beside two broken plugins, which this run does not use."""
    from vittle_bench.cli import main

    monkeypatch.syspath_prepend(str(install_by_hand(tmp_path / "site", broken=True)))
    out = tmp_path / "run"
    code = main(["run", "--model", f"hf:{tiny_random_checkpoint}", "--tasks", "shapes_mc", "--shifts",
                 "invert@4,invert@1+char_swap@2", "--limit", "3", "--output", str(out),
                 "--cache-dir", str(world_cache)])
    assert code == 0
    records = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
    by_shift = {}
    for r in records:
        by_shift.setdefault(r["shift"], []).append(r)
    assert set(by_shift) == {"clean", "invert", "invert+char_swap"}
    assert all(r["error"] is None for r in records) and len(records) == 9
    clean_hashes = {r["sample_id"]: r["input_hash"] for r in by_shift["clean"]}
    assert all(r["input_hash"] != clean_hashes[r["sample_id"]] for r in by_shift["invert"])
    manifest = json.loads((out / "manifest.json").read_text())
    assert {"label": "invert@4", "name": "invert", "kind": "image", "severity": 4} .items() <= \
        next(s for s in manifest["shifts"] if s["label"] == "invert@4").items()


@pytest.mark.slow
def test_pip_installed_plugin_package(tmp_path):
    """The same plugin as a real package (pyproject + setuptools), installed with pip into a target dir."""
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "vb_invert_shift.py").write_text(PLUGIN_SOURCE)
    (package / "pyproject.toml").write_text(textwrap.dedent("""
        [build-system]
        requires = ["setuptools>=61"]
        build-backend = "setuptools.build_meta"

        [project]
        name = "vb-invert-shift"
        version = "0.1"

        [project.entry-points."vittle_bench.shifts"]
        invert = "vb_invert_shift:Invert"
    """))
    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index",
                    "--no-build-isolation", "--target", str(site), str(package)], check=True, timeout=300)
    out = run_with(site, _CHECK)
    assert any(line.startswith("invert ") for line in out.splitlines())
    assert any(line.startswith("RESULT invert@5 image") for line in out.splitlines())


def test_docs_text_shift_example_runs():
    """docs/plugins.md's text shift, exactly as shown: free words shouted, protected pieces verbatim."""
    import numpy as np

    from vittle_bench.schema import Sample
    from vittle_bench.shifts import ShiftCondition
    from vittle_bench.shifts.engine import ShiftEngine

    blocks = re.findall(r"```python\n(.*?)```", (REPO / "docs" / "plugins.md").read_text(), re.S)
    namespace: dict = {}
    exec(next(b for b in blocks if "class Shout" in b), namespace)
    shout = namespace["Shout"](3)
    question = "which animal is shown on the left side of the picture\nOptions: A. a cat B. a dog"
    sample = Sample("t", "1", question, answer="A", choices=("a cat", "a dog"))
    (out,) = ShiftEngine().apply_many(ShiftCondition("shout@3", shout), [sample], seed=0)
    assert isinstance(out, Sample) and out.question != question and out.question.lower() == question.lower()
    assert out.question.endswith("\nOptions: A. a cat B. a dog") and out.answer == "A"
    assert shout.severities == (1, 2, 3)
    assert shout.apply(sample, np.random.default_rng(1)).question.endswith("Options: A. a cat B. a dog")
