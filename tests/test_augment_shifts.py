"""The image-shift breadth: the albumentations shifts and color_quantize keep the contract (RGB, the input's
size) at every declared severity, follow only their seed (the same bytes for one seed, in this process and in
two others; other bytes for another seed where they draw at random), list with families and their real
severities, preview by family, and make up the image_breadth suite."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import textwrap
from collections import Counter

import numpy as np
import pytest
import skimage.data
from PIL import Image

from vittle_bench.shifts import SHIFTS, parse_condition
from vittle_bench.shifts.augment import RECIPES, Augmentation
from vittle_bench.shifts.base import build_shift

NEW = (*RECIPES, "color_quantize")
FAMILIES = {"noise", "blur", "weather", "digital", "geometric"}
# The shifts whose output depends on the image alone: no draw at all, whatever the seed.
SEED_FREE = {"median_blur", "box_blur", "posterize", "solarize", "sharpen", "equalize", "grayscale", "invert_colors",
             "sepia", "webp_compression", "zoom_out", "hflip", "vflip", "color_quantize",
             *(f"{way}sample_{f}" for way in ("down", "up") for f in ("nearest", "bilinear", "bicubic"))}
CELLS = [(name, severity) for name in NEW for severity in build_shift(name, 1).severities]


def photo(size: tuple[int, int]) -> Image.Image:
    return Image.fromarray(skimage.data.astronaut()).resize(size)


IMAGE = photo((64, 48))


@pytest.mark.parametrize("name,severity", CELLS, ids=[f"{n}@{s}" for n, s in CELLS])
def test_every_new_shift_keeps_the_contract_and_follows_its_seed(name, severity):
    shift = parse_condition(f"{name}@{severity}").shift
    outputs = [shift.apply_image(IMAGE, seed).tobytes() for seed in (0, 0, 1, 2, 3)]
    out = shift.apply_image(IMAGE, 0)
    assert (out.mode, out.size) == ("RGB", IMAGE.size)
    assert outputs[0] == outputs[1] and outputs[0] != IMAGE.tobytes()
    assert (len(set(outputs)) == 1) == (name in SEED_FREE)
    json.dumps(shift.params())  # what manifest.json and the shifted-image cache keys record


def test_graded_shifts_change_the_image_more_with_each_level():
    """Mean absolute pixel change from the clean image (three photos, two seeds) grows from @1 to @2 to @3."""
    photos = [Image.fromarray(getattr(skimage.data, n)()).convert("RGB").resize((96, 72))
              for n in ("astronaut", "coffee", "chelsea")]
    for name in NEW:
        if build_shift(name, 1).severities != (1, 2, 3):
            continue
        change = [np.mean([np.abs(np.asarray(build_shift(name, level).apply_image(p, seed), float)
                                  - np.asarray(p, float)).mean() for p in photos for seed in (0, 1)])
                  for level in (1, 2, 3)]
        assert change[0] < change[1] < change[2], (name, change)


@pytest.mark.parametrize("size", [(1, 1), (7, 300), (301, 17)])
def test_tiny_and_thin_images_keep_their_size(size):
    image = photo(size)
    for name in NEW:
        shift = build_shift(name, build_shift(name, 1).severities[-1])
        assert shift.apply_image(image, 5).size == size, name


def test_the_library_lists_the_breadth_with_families_and_real_severities(capsys):
    from vittle_bench.cli import main

    image = [build_shift(name, 1) for name in SHIFTS.names() if build_shift(name, 1).kind == "image"]
    assert len(image) >= 49 and {shift.family for shift in image} == FAMILIES
    binary = {name for name in NEW if build_shift(name, 1).severities == (1,)}
    assert binary == {"equalize", "grayscale", "invert_colors", "sepia", "hflip", "vflip"}
    assert all(build_shift(name, 1).severities == (1, 2, 3) for name in set(NEW) - binary)
    with pytest.raises(ValueError, match="one of 1 for hflip"):
        parse_condition("hflip@2")
    with pytest.raises(ValueError, match="one of 1-3 for elastic_warp"):
        parse_condition("elastic_warp@4")
    assert main(["list", "shifts"]) == 0
    lines = capsys.readouterr().out.splitlines()
    listed = {line.split()[0]: line.split()[1:] for line in lines if "severities" in line}
    assert listed["hflip"] == ["image", "geometric", "severities", "1"]
    assert listed["upsample_bicubic"] == ["image", "digital", "severities", "1-3"]
    assert listed["frost"] == ["image", "weather", "severities", "1-5"]
    counts = Counter(shift.family for shift in image)
    summary = ", ".join(f"{family} {n}" for family, n in sorted(counts.items()))
    assert f"{len(image)} image shifts ({summary})" in lines


def test_manifest_parameters_name_the_transform_and_resolve_relative_magnitudes():
    elastic = parse_condition("elastic_warp@2").shift
    assert isinstance(elastic, Augmentation) and elastic.version.startswith("albumentations-2.0.8")
    assert elastic.params()["arguments"] == {"alpha": "1.5 x longer side", "sigma": "0.04 x longer side"}
    assert parse_condition("shear@1").shift.params()["arguments"] == {"shear": {"x": "+/-10", "y": 0}}
    assert parse_condition("upsample_nearest@3").shift.params()["arguments"] == {
        "interpolation_pair": {"downscale": "area", "upscale": "nearest"}, "scale_range": [0.125, 0.125]}


_SCRIPT = textwrap.dedent("""
    import hashlib, sys
    import skimage.data
    from PIL import Image
    from vittle_bench.shifts.base import build_shift
    image = Image.fromarray(skimage.data.astronaut()).resize((64, 48))
    for name in sys.argv[1:]:
        for severity in build_shift(name, 1).severities:
            out = build_shift(name, severity).apply_image(image, 11)
            print(name, severity, hashlib.sha256(out.tobytes()).hexdigest())
""")


def test_every_new_shift_is_byte_identical_in_two_processes():
    procs = [subprocess.Popen([sys.executable, "-c", _SCRIPT, *NEW], stdout=subprocess.PIPE, text=True)
             for _ in range(2)]
    outputs = [p.communicate(timeout=600)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs) and outputs[0] == outputs[1]
    assert len(outputs[0].splitlines()) == len(CELLS)
    here = build_shift("elastic_warp", 3).apply_image(IMAGE, 11).tobytes()
    assert f"elastic_warp 3 {hashlib.sha256(here).hexdigest()}" in outputs[0].splitlines()


def test_the_image_breadth_suite_grades_every_image_shift_and_runs_binaries_once():
    from vittle_bench.config import load_suites

    conditions = [parse_condition(c) for c in load_suites()["image_breadth"]["conditions"]]
    per_shift = Counter(c.name for c in conditions)
    image = {name for name in SHIFTS.names() if build_shift(name, 1).kind == "image"}
    assert set(per_shift) == image and all(c.kind == "image" for c in conditions)
    for name, count in per_shift.items():
        levels = sorted(c.severity for c in conditions if c.name == name)
        assert levels == {1: [1], 3: [1, 2, 3], 5: [1, 3, 5]}[len(build_shift(name, 1).severities)], name
        assert count == len(levels)


def test_preview_renders_a_family_sheet(tmp_path):
    from vittle_bench.cli import main

    IMAGE.save(tmp_path / "photo.png")
    out = tmp_path / "geometric"
    assert main(["shifts", "preview", "--image", str(tmp_path / "photo.png"), "--family", "geometric",
                 "--severities", "1,2,3", "--cell", "32", "--colors", "64", "--output", str(out)]) == 0
    cells = json.loads((out / "preview.json").read_text())["cells"]
    rows = {c["row"] for c in cells} - {"clean"}
    assert rows == {name for name in SHIFTS.names() if build_shift(name, 1).family == "geometric"}
    assert not any("error" in c for c in cells)
    with Image.open(out / "contact_sheet.png") as sheet:
        assert sheet.mode == "P" and sheet.size == (170 + 4 * 36, 24 + (len(rows) + 1) * 36)
    assert main(["shifts", "preview", "--image", str(tmp_path / "photo.png"), "--family", "wet",
                 "--output", str(out)]) == 2
    assert main(["shifts", "preview", "--image", str(tmp_path / "photo.png"), "--family", "blur", "--colors", "1",
                 "--output", str(out)]) == 2


def test_a_run_over_the_image_breadth_suite_shows_two_processes_the_same_inputs(world_cache, tmp_path):
    """The suite end to end on a built-in task, in two independent processes with no shared cache: every record
    of every condition is there, none failed, and each process recorded the same shifted-content hashes."""
    from vittle_bench.config import load_suites

    def command(name: str) -> list[str]:
        return [sys.executable, "-m", "vittle_bench", "run", "--model", "builtin:tiny-llava", "--tasks", "shapes_mc",
                "--shifts", "image_breadth", "--limit", "2", "--no-cache", "--cache-dir", str(world_cache),
                "--output", str(tmp_path / name)]

    procs = [subprocess.Popen(command(name), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
             for name in ("a", "b")]
    errors = [p.communicate(timeout=900)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], errors[0][-2000:]
    hashes = [{(r["condition"], r["sample_id"]): r["input_hash"] for r in map(json.loads, (tmp_path / name /
               "samples.jsonl").read_text().splitlines()) if r["error"] is None} for name in ("a", "b")]
    conditions = 1 + len(load_suites()["image_breadth"]["conditions"])  # and clean
    assert hashes[0] == hashes[1] and len(hashes[0]) == 2 * conditions
