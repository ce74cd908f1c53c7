"""POPE (Li et al., 2023) yes/no object-probing questions from any COCO-format instances file.

Follows the POPE authors' construction (AoiDragon/POPE, main.py + utils.py) so that numbers are
comparable with the released COCO splits; the same code runs on COCO val2014's instances_val2014.json
and on the suite's own procedurally generated COCO file.

Choices where the protocol is silent (kept explicit so results can be audited):
* Object frequency and co-occurrence are counted over the *selected* images, as the authors do
  ("frequencies of all objects in the selected images"), and are image counts: an image with five
  cars adds 1 to car's frequency, not 5.
* The pool of negatives is every category declared in the file ("uniform over all categories"). An
  image is eligible only if it has >= k distinct categories *and* >= k declared categories it lacks,
  so its k negatives can always be drawn.
* Every annotation counts as a ground-truth object (crowd annotations included); "first k" follows the
  order of the annotations in the file.
* One `random.Random(seed)` draws the images first, then every random negative, so the three
  strategies built with one seed ask about the same images and positives.
* question_id = f"{strategy}-{image_id}-{n}" with n the 0-based position of the question within its
  image (positive 2i, its negative 2i + 1).
"""

from __future__ import annotations

import contextlib
import io
import json
import random
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path

from pycocotools.coco import COCO

STRATEGIES = ("random", "popular", "adversarial")
_VOWELS = "aeiou"


@dataclass(frozen=True)
class PopeQuestion:
    """One yes/no probe; the fields are what a model is asked and what scoring needs."""

    question_id: str  # f"{strategy}-{image_id}-{n}"
    image_id: int
    file_name: str
    object_name: str
    question: str
    answer: str  # "yes" / "no"
    strategy: str  # random / popular / adversarial


def pope_question_text(object_name: str) -> str:
    """The POPE template, with "an" before a vowel so the question reads naturally."""
    article = "an" if object_name[:1].lower() in _VOWELS else "a"
    return f"Is there {article} {object_name} in the image?"


def _load(annotations: str | Path | COCO) -> COCO:
    """Accept a path or an already-loaded COCO; pycocotools' progress prints are silenced."""
    if isinstance(annotations, COCO):
        return annotations
    with contextlib.redirect_stdout(io.StringIO()):
        return COCO(str(annotations))


def _image_objects(coco: COCO) -> dict[int, list[str]]:
    """Distinct category names per image, in annotation (file) order."""
    names = {cid: cat["name"] for cid, cat in coco.cats.items()}
    objects: dict[int, list[str]] = {}
    for img_id in coco.imgs:
        seen: list[str] = []
        for ann in coco.imgToAnns.get(img_id, []):
            name = names[ann["category_id"]]
            if name not in seen:
                seen.append(name)
        objects[img_id] = seen
    return objects


def _ranked(counts: Counter) -> list[str]:
    """Most frequent first; ties by name so the output never depends on dict order."""
    return [name for name, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))]


def build_pope(
    annotations: str | Path | COCO, strategy: str, num_images: int = 500, k: int = 3, seed: int = 0
) -> list[PopeQuestion]:
    """Build one POPE split: per sampled image, k positives each followed by one negative.

    Negatives are never in the image and never repeat within an image; `popular` takes the most
    frequent such category, `adversarial` the one co-occurring most with that positive, both falling
    back to a uniform random allowed category when none of their candidates is allowed.
    """
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown POPE strategy {strategy!r}; expected one of {', '.join(STRATEGIES)}")
    if k < 1 or num_images < 1:
        raise ValueError(f"k and num_images must be positive, got k={k}, num_images={num_images}")
    coco = _load(annotations)
    universe = sorted({cat["name"] for cat in coco.cats.values()})
    objects = _image_objects(coco)
    eligible = [i for i in sorted(objects) if len(objects[i]) >= k and len(universe) - len(objects[i]) >= k]
    rng = random.Random(seed)
    chosen = rng.sample(eligible, min(num_images, len(eligible)))

    frequency: Counter = Counter()
    co_occur: dict[str, Counter] = {}
    for img_id in chosen:
        present = objects[img_id]
        frequency.update(present)
        for name in present:
            co_occur.setdefault(name, Counter()).update(o for o in present if o != name)
    popular = _ranked(frequency)
    adversarial = {name: _ranked(counts) for name, counts in co_occur.items()}

    questions: list[PopeQuestion] = []
    for img_id in chosen:
        in_image = set(objects[img_id])
        asked: set[str] = set()
        file_name = coco.imgs[img_id].get("file_name", "")
        for i, positive in enumerate(objects[img_id][:k]):
            asked.add(positive)
            candidates = {"random": [], "popular": popular, "adversarial": adversarial.get(positive, [])}[strategy]
            negative = next((c for c in candidates if c not in in_image and c not in asked), None)
            if negative is None:  # random strategy, or popular/adversarial fallback
                negative = rng.choice([c for c in universe if c not in in_image and c not in asked])
            asked.add(negative)
            for n, (name, answer) in enumerate(((positive, "yes"), (negative, "no")), start=2 * i):
                questions.append(
                    PopeQuestion(
                        question_id=f"{strategy}-{img_id}-{n}",
                        image_id=img_id,
                        file_name=file_name,
                        object_name=name,
                        question=pope_question_text(name),
                        answer=answer,
                        strategy=strategy,
                    )
                )
    return questions


def write_pope_jsonl(questions: list[PopeQuestion], path: str | Path) -> None:
    """One JSON object per line (the PopeQuestion fields), the format POPE answer files pair with."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as f:
        for q in questions:
            f.write(json.dumps(asdict(q)) + "\n")
