"""POPE builder on a hand-made COCO file whose expected negatives were worked out by hand.

Selected images (all eligible ones; k = 3) and their distinct objects in annotation order:
  11: person, dog, bus, car        12: person, dog, apple        13: person, car, kite (kite x6)
  14: person, apple, umbrella, dog 15: person, dog, car
Not eligible: 16 (umbrella, car: 2 objects), 17 (5 objects: only 2 of the 7 categories absent).

Image frequency over the selected images: person 5, dog 4, car 3, apple 2, bus = kite = umbrella = 1
(instance counts would rank kite, with 6 boxes in one image, second). Category ids are deliberately
not in name order (kite 4 < umbrella 5 < bus 6), so a tie broken by id instead of name shows up.
"""

from __future__ import annotations

import contextlib
import io
import json
from dataclasses import asdict

import pytest
from pycocotools.coco import COCO

from vittle_bench.data.coco_pope import (
    STRATEGIES,
    PopeQuestion,
    build_pope,
    pope_question_text,
    write_pope_jsonl,
)

CATEGORIES = {1: "person", 2: "dog", 3: "car", 4: "kite", 5: "umbrella", 6: "bus", 7: "apple"}
IDS = {name: cid for cid, name in CATEGORIES.items()}
# (image_id, category) in file order; images are interleaved on purpose.
ANNOTATIONS = [
    (11, "person"), (11, "dog"), (12, "person"), (11, "person"), (13, "person"), (11, "bus"),
    (12, "dog"), (11, "car"), (13, "car"), (11, "person"), (12, "apple"),
    *[(13, "kite")] * 6,
    (14, "person"), (14, "apple"), (14, "umbrella"), (14, "dog"),
    (15, "person"), (15, "dog"), (15, "car"),
    (16, "umbrella"), (16, "car"),
    (17, "person"), (17, "dog"), (17, "car"), (17, "bus"), (17, "apple"),
]
OBJECTS = {
    11: {"person", "dog", "bus", "car"},
    12: {"person", "dog", "apple"},
    13: {"person", "car", "kite"},
    14: {"person", "apple", "umbrella", "dog"},
    15: {"person", "dog", "car"},
}
POSITIVES = {
    11: ["person", "dog", "bus"],  # car is the 4th distinct object; category-id order would give car
    12: ["person", "dog", "apple"],
    13: ["person", "car", "kite"],
    14: ["person", "apple", "umbrella"],  # id order would give dog
    15: ["person", "dog", "car"],
}
# Popular ranking: person, dog, car, apple, bus, kite, umbrella.
POPULAR = {
    11: ["apple", "kite", "umbrella"],  # stats over ALL images (16, 17 too) would give apple, umbrella, kite
    12: ["car", "bus", "kite"],  # bus before kite: name tie-break (id order would give kite)
    13: ["dog", "apple", "bus"],
    14: ["car", "bus", "kite"],  # instance counts would give kite first
    15: ["apple", "bus", "kite"],
}
# Adversarial, worked from image co-occurrence counts; None = random fallback, checked separately.
ADVERSARIAL = {
    11: ["apple", "umbrella", "kite"],  # bus co-occurs only with car/dog/person: fallback, only kite left
    12: ["car", "bus", "umbrella"],  # dog: bus = umbrella = 1, bus by name (id order: umbrella)
    13: ["dog", "bus", None],  # kite co-occurs only with person/car: fallback to apple or umbrella
    14: ["car", None, None],  # apple and umbrella: co-occurring objects all present: bus/kite in some order
    15: ["apple", "bus", "kite"],
}


@pytest.fixture
def ann_file(tmp_path):
    images = [{"id": i, "file_name": f"img_{i:03d}.jpg", "width": 64, "height": 64} for i in range(11, 18)]
    annotations = [
        {"id": n + 1, "image_id": img, "category_id": IDS[name], "bbox": [1, 1, 5, 5], "area": 25, "iscrowd": 0}
        for n, (img, name) in enumerate(ANNOTATIONS)
    ]
    categories = [{"id": cid, "name": name, "supercategory": "thing"} for cid, name in CATEGORIES.items()]
    path = tmp_path / "instances.json"
    path.write_text(json.dumps({"images": images, "annotations": annotations, "categories": categories}))
    return path


def by_image(questions: list[PopeQuestion]) -> dict[int, tuple[list[str], list[str]]]:
    out: dict[int, tuple[list[str], list[str]]] = {}
    for q in questions:
        pos, neg = out.setdefault(q.image_id, ([], []))
        (pos if q.answer == "yes" else neg).append(q.object_name)
    return out


def check_structure(questions: list[PopeQuestion], strategy: str) -> None:
    """Alternating yes/no per image, positives in annotation order, negatives absent and distinct."""
    assert sum(q.answer == "yes" for q in questions) == sum(q.answer == "no" for q in questions)
    assert len({q.question_id for q in questions}) == len(questions)
    for q in questions:
        assert q.strategy == strategy and q.file_name == f"img_{q.image_id:03d}.jpg"
        assert q.question == pope_question_text(q.object_name)
    for img, (pos, neg) in by_image(questions).items():
        assert pos == POSITIVES[img]
        assert len(neg) == 3 and len(set(neg)) == 3
        assert not set(neg) & OBJECTS[img]
        assert set(neg) <= set(CATEGORIES.values())
    per_image = [q for q in questions if q.image_id == questions[0].image_id]
    assert [q.answer for q in per_image] == ["yes", "no"] * 3
    assert [q.question_id for q in per_image] == [f"{strategy}-{per_image[0].image_id}-{n}" for n in range(6)]


def test_question_text_article():
    assert pope_question_text("apple") == "Is there an apple in the image?"
    assert pope_question_text("umbrella") == "Is there an umbrella in the image?"
    assert pope_question_text("Orange") == "Is there an Orange in the image?"
    assert pope_question_text("dog") == "Is there a dog in the image?"
    assert pope_question_text("baseball bat") == "Is there a baseball bat in the image?"


def test_popular_exact_negatives(ann_file):
    qs = build_pope(ann_file, "popular")
    check_structure(qs, "popular")
    assert {img: neg for img, (_, neg) in by_image(qs).items()} == POPULAR


def test_adversarial_exact_negatives_and_fallback(ann_file):
    fallback_13 = set()
    for seed in range(20):
        qs = build_pope(ann_file, "adversarial", seed=seed)
        check_structure(qs, "adversarial")
        got = {img: neg for img, (_, neg) in by_image(qs).items()}
        for img, expected in ADVERSARIAL.items():
            assert [g if e is not None else None for g, e in zip(got[img], expected)] == expected, img
        assert got[13][2] in {"apple", "umbrella"}  # the allowed categories left after person, car, kite, dog, bus
        assert set(got[14][1:]) == {"bus", "kite"}
        fallback_13.add(got[13][2])
    assert fallback_13 == {"apple", "umbrella"}  # the fallback is a seeded random draw, not a fixed order


def test_random_negatives_valid_and_seeded(ann_file):
    outputs = set()
    for seed in range(10):
        qs = build_pope(ann_file, "random", seed=seed)
        check_structure(qs, "random")
        assert qs == build_pope(ann_file, "random", seed=seed)
        outputs.add(tuple((q.image_id, q.object_name) for q in qs if q.answer == "no"))
    assert len(outputs) > 1


def test_image_selection(ann_file):
    for strategy in STRATEGIES:
        qs = build_pope(ann_file, strategy)
        assert {q.image_id for q in qs} == set(OBJECTS)  # k=3: 16 and 17 are not eligible
        assert len(qs) == 2 * 3 * len(OBJECTS)
    picks = {s: [(q.image_id, q.object_name) for q in build_pope(ann_file, s, num_images=2, seed=3)
                 if q.answer == "yes"]
             for s in STRATEGIES}
    assert len({img for img, _ in picks["random"]}) == 2
    assert picks["random"] == picks["popular"] == picks["adversarial"]  # one seed -> same images for all splits
    sampled = {frozenset(q.image_id for q in build_pope(ann_file, "popular", num_images=2, seed=s)) for s in range(10)}
    assert len(sampled) > 1 and all(len(ids) == 2 and ids <= set(OBJECTS) for ids in sampled)


def test_k_and_coco_object(ann_file, capsys):
    qs = build_pope(ann_file, "popular", k=2)
    assert capsys.readouterr().out == ""  # pycocotools' "loading annotations..." is swallowed
    assert {q.image_id for q in qs} == set(OBJECTS) | {16, 17}  # k=2: 16 has 2 objects, 17 lacks 2 categories
    assert len(qs) == 2 * 2 * 7
    assert by_image(qs)[11] == (["person", "dog"], ["apple", "umbrella"])  # 16, 17 now counted: umbrella 2 > kite 1
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO(str(ann_file))
    assert build_pope(coco, "adversarial", seed=1) == build_pope(ann_file, "adversarial", seed=1)


def test_unknown_strategy(ann_file):
    with pytest.raises(ValueError, match="unknown POPE strategy 'hard'"):
        build_pope(ann_file, "hard")


def test_write_jsonl(ann_file, tmp_path):
    qs = build_pope(ann_file, "popular")
    out = tmp_path / "sub" / "pope_popular.jsonl"
    write_pope_jsonl(qs, out)
    lines = out.read_text().splitlines()
    assert [json.loads(line) for line in lines] == [asdict(q) for q in qs]
    assert json.loads(lines[1])["answer"] == "no" and json.loads(lines[1])["question_id"] == qs[1].question_id
