"""A third-party shift package (the docs/plugins.md example, installed into a throw-away directory) shows up
in `vittle-bench list shifts`, composes into joint conditions and runs through `vittle-bench run`."""

from __future__ import annotations

import json
import os
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


def install_by_hand(site: Path) -> Path:
    """What `pip install` leaves behind: the module and a .dist-info with the entry point."""
    site.mkdir(parents=True, exist_ok=True)
    (site / "vb_invert_shift.py").write_text(PLUGIN_SOURCE)
    info = site / "vb_invert_shift-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: vb-invert-shift\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[vittle_bench.shifts]\ninvert = vb_invert_shift:Invert\n")
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
    out = run_with(install_by_hand(tmp_path / "site"), _CHECK)
    listed = [line for line in out.splitlines() if line.startswith("invert ")]
    assert listed and "image" in listed[0]
    results = {line.split()[1]: line.split() for line in out.splitlines() if line.startswith("RESULT")}
    inverted = int(next(line for line in out.splitlines() if line.startswith("CLEAN")).split()[1])
    assert results["invert@5"][2] == "image" and int(results["invert@5"][3]) == inverted  # full inversion at 5
    assert results["invert@2+keyboard@3"][2] == "joint" and results["invert@2+keyboard@3"][4:] != \
        "What is in the cup?".split()


def test_plugin_runs_in_vittle_bench_run(tmp_path, monkeypatch, tiny_random_checkpoint, world_cache):
    from vittle_bench.cli import main
    from vittle_bench.shifts import SHIFTS

    site = install_by_hand(tmp_path / "site")
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setattr(SHIFTS, "_entries", dict(SHIFTS._entries))  # restored after the test
    monkeypatch.setattr(SHIFTS, "_plugins_loaded", False)  # rescan entry points, as a fresh process would
    out = tmp_path / "run"
    code = main(["run", "--model", f"hf:{tiny_random_checkpoint}", "--tasks", "shapes_mc", "--shifts",
                 "invert@4,invert@1+char_swap@2", "--limit", "3", "--output", str(out), "--cache-dir", str(world_cache)])
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
