"""The built-in world (real COCO annotations, consistent questions) and the first shifts (seeded, pure)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter

import numpy as np
import pytest
from pycocotools.coco import COCO

from vittle_bench.builtin.questions import LETTERS, count_question, describe_answer
from vittle_bench.builtin.scenes import CATEGORIES, MAX_OBJECTS, draw_scene, scene_rng
from vittle_bench.builtin.world import OPEN_QUESTIONS, POPE_IMAGES, WORLD_IMAGES, load_builtin_subset, world_dir
from vittle_bench.schema import Sample
from vittle_bench.shifts import parse_condition, sample_rng


def test_world_annotations_are_valid_coco(world_cache):
    coco = COCO(str(world_dir(world_cache) / "annotations.json"))
    assert len(coco.getImgIds()) == WORLD_IMAGES
    assert [c["name"] for c in coco.loadCats(coco.getCatIds())] == list(CATEGORIES)
    per_image = Counter(a["image_id"] for a in coco.dataset["annotations"])
    assert set(per_image.values()) <= set(range(1, MAX_OBJECTS + 1)) and max(per_image.values()) == MAX_OBJECTS
    ann = coco.dataset["annotations"][0]
    mask = coco.annToMask(ann)
    assert mask.sum() > 0 and abs(mask.sum() - ann["area"]) / ann["area"] < 0.35
    x, y, w, h = ann["bbox"]
    ys, xs = np.nonzero(mask)
    assert x - 1 <= xs.min() and xs.max() <= x + w + 1 and y - 1 <= ys.min() and ys.max() <= y + h + 1


def test_world_questions_agree_with_annotations(world_cache):
    coco = json.loads((world_dir(world_cache) / "annotations.json").read_text())
    names = {c["id"]: c["name"] for c in coco["categories"]}
    file_to_id = {i["file_name"]: i["id"] for i in coco["images"]}
    present: dict[int, set[str]] = {}
    counts = Counter(a["image_id"] for a in coco["annotations"])
    for a in coco["annotations"]:
        present.setdefault(a["image_id"], set()).add(names[a["category_id"]])
    for strategy in ("random", "popular", "adversarial"):
        pope = load_builtin_subset("t", f"pope_{strategy}", world_cache)
        assert len(pope) == POPE_IMAGES * 3 * 2 and Counter(s.answer for s in pope) == {"yes": 150, "no": 150}
        for s in pope:
            obj = s.question.removeprefix("Is there a ").removesuffix(" in the image?")
            assert (obj in present[file_to_id[s.meta["file_name"]]]) == (s.answer == "yes")
    mc = load_builtin_subset("t", "mc", world_cache)
    assert len(mc) == WORLD_IMAGES and {s.category for s in mc} == {"count", "colour", "position"}
    for s in mc:
        assert len(s.choices) == 4 and s.answer in LETTERS and len(set(s.choices)) == 4
        if s.category == "count":
            assert s.choices[LETTERS.index(s.answer)] == str(counts[file_to_id[s.meta["file_name"]]])
    assert len(load_builtin_subset("t", "open", world_cache)) == OPEN_QUESTIONS


def test_count_and_description_follow_the_scene():
    scene = draw_scene(scene_rng(5, 3))
    q = count_question(scene.objects, __import__("random").Random(0))
    assert q.choices[LETTERS.index(q.answer)] == str(len(scene.objects))
    text = describe_answer(scene.objects)
    assert text.startswith(f"There {'is' if len(scene.objects) == 1 else 'are'} {len(scene.objects)} object")
    assert all(o.name in text for o in scene.objects)


def test_scenes_are_reproducible_per_index():
    a, b = draw_scene(scene_rng(0, 7)), draw_scene(scene_rng(0, 7))
    assert a.objects == b.objects and a.image.tobytes() == b.image.tobytes()
    assert draw_scene(scene_rng(0, 8)).image.tobytes() != a.image.tobytes()


CONDITIONS = ["gaussian_noise@1", "gaussian_noise@5", "defocus_blur@3", "keyboard@2", "frost@4+keyboard@1"]
_HASH_SCRIPT = """
import sys
from vittle_bench.builtin.scenes import draw_scene, scene_rng
from vittle_bench.schema import Sample
from vittle_bench.shifts import parse_condition
for label in sys.argv[1:]:
    c = parse_condition(label)
    s = Sample("t", "id-3", "Is there a red circle in the image?", images=(draw_scene(scene_rng(0, 3)).image,))
    print(c.apply(s, 0).content_hash())
"""


def test_shifts_are_identical_across_processes():
    runs = [subprocess.run([sys.executable, "-c", _HASH_SCRIPT, *CONDITIONS], capture_output=True, text=True,
                           check=True).stdout.split() for _ in range(2)]
    assert runs[0] == runs[1] and len(set(runs[0])) == len(CONDITIONS)


def test_shift_does_not_touch_global_rng_state():
    np.random.seed(123)
    expected = np.random.random()
    np.random.seed(123)
    cond = parse_condition("gaussian_noise@3")
    sample = Sample("t", "1", "q", images=(draw_scene(scene_rng(0, 1)).image,))
    cond.shift.apply(sample, sample_rng(0, cond.label, "1"))
    assert np.random.random() == expected


def test_image_shift_severity_is_monotone():
    sample = Sample("t", "1", "q", images=(draw_scene(scene_rng(0, 2)).image,))
    clean = np.asarray(sample.images[0], dtype=float)
    errors = []
    for severity in (1, 3, 5):
        cond = parse_condition(f"gaussian_noise@{severity}")
        shifted = np.asarray(cond.shift.apply(sample, sample_rng(0, cond.label, "1")).images[0], dtype=float)
        errors.append(np.abs(shifted - clean).mean())
    assert errors[0] < errors[1] < errors[2]


def test_joint_label_and_kind():
    cond = parse_condition("keyboard@2+frost@4")
    assert cond.label == "frost@4+keyboard@2" and cond.kind == "joint" and cond.severity == 4
    with pytest.raises(ValueError, match="one image and one text"):
        parse_condition("frost@1+gaussian_noise@2")


@pytest.mark.parametrize("mode", ["L", "RGBA", "P", "I;16"])
def test_image_shift_handles_odd_modes(mode):
    image = draw_scene(scene_rng(0, 4)).image.convert("L" if mode == "I;16" else mode)
    if mode == "I;16":
        image = image.convert("I").point(lambda v: v * 200).convert("I;16")
    cond = parse_condition("defocus_blur@2")
    out = cond.shift.apply(Sample("t", "1", "q", images=(image,)), sample_rng(0, cond.label, "1")).images[0]
    assert out.mode == "RGB" and out.size == image.size
