"""Closed-form and open-ended questions written from a scene's labels (POPE comes from coco_pope.py).

The same builders produce the built-in model's training turns and the built-in evaluation sets, so the
model is trained on the exact phrasing it is evaluated on (as instruction-tuned MLLMs are).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, replace

from vittle_bench.builtin.scenes import COLOURS, SHAPES, SceneObject
from vittle_bench.data.coco_pope import pope_question_text

LETTERS = "ABCD"
POSITION_WORDS = {"left": "furthest to the left", "right": "furthest to the right", "top": "highest",
                  "bottom": "lowest"}
_MARGIN = 3.0  # pixels: the extreme object must beat the runner-up by this much to be unambiguous


@dataclass(frozen=True)
class Grounding:
    """Training only: the question word whose first-layer attention is supervised, and the object
    (colour, shape; None = any) whose image patches it must land on."""

    word: str
    colour: str | None
    shape: str | None


@dataclass(frozen=True)
class Question:
    kind: str
    question: str
    answer: str
    choices: tuple[str, ...] = ()
    grounding: Grounding | None = None
    # Training only: per choice, the object that choice names (its last word is the grounded token); empty
    # when the choices name no object (counting).
    option_groundings: tuple[Grounding, ...] = ()


def _multiple_choice(kind: str, question: str, correct: str, distractors: list[str], rng: random.Random) -> Question:
    options = [correct] + distractors[:3]
    rng.shuffle(options)
    return Question(kind, question, LETTERS[options.index(correct)], tuple(options))


def count_question(objects: tuple[SceneObject, ...], rng: random.Random) -> Question:
    n = len(objects)
    start = rng.randint(max(1, n - 3), min(n, 3))
    options = [str(start + i) for i in range(4)]
    return Question("count", "How many objects are in the image?", LETTERS[options.index(str(n))], tuple(options))


def colour_question(objects: tuple[SceneObject, ...], rng: random.Random) -> Question | None:
    shapes = [o.shape for o in objects]
    unique = [o for o in objects if shapes.count(o.shape) == 1]
    if not unique:
        return None
    target = rng.choice(unique)
    others = [c for c in COLOURS if c != target.colour]
    rng.shuffle(others)
    question = _multiple_choice("colour", f"What colour is the {target.shape}?", target.colour, others, rng)
    return replace(question, grounding=Grounding(target.shape, None, target.shape),
                   option_groundings=tuple(Grounding(c, c, None) for c in question.choices))


_DISTANCE_FROM_EDGE = {"left": lambda o: o.cx, "right": lambda o: -o.cx, "top": lambda o: o.cy,
                       "bottom": lambda o: -o.cy}


def _ranked_towards(objects: tuple[SceneObject, ...], direction: str) -> list[SceneObject] | None:
    """The objects from the one furthest in `direction` (a POSITION_WORDS key) onwards; None when the
    furthest is not unambiguous (another lies within _MARGIN of it)."""
    key = _DISTANCE_FROM_EDGE[direction]
    ranked = sorted(objects, key=key)
    if len(ranked) > 1 and key(ranked[1]) - key(ranked[0]) < _MARGIN:
        return None
    return ranked


def extreme_object(objects: tuple[SceneObject, ...], direction: str) -> SceneObject | None:
    """The object furthest in `direction`, None when another is within _MARGIN of it."""
    ranked = _ranked_towards(objects, direction)
    return ranked[0] if ranked else None


def position_question(objects: tuple[SceneObject, ...], rng: random.Random) -> Question | None:
    if len(objects) < 2 or len({o.name for o in objects}) < len(objects):
        return None
    direction = rng.choice(list(POSITION_WORDS))
    ranked = _ranked_towards(objects, direction)
    if ranked is None:
        return None
    answer = ranked[0]
    present = [o.name for o in ranked[1:]]
    absent = [f"{c} {s}" for s in SHAPES for c in COLOURS if f"{c} {s}" not in {o.name for o in objects}]
    rng.shuffle(present)
    rng.shuffle(absent)
    question = _multiple_choice("position", f"Which object is {POSITION_WORDS[direction]}?", answer.name,
                                (present + absent)[:3], rng)
    word = POSITION_WORDS[direction].split()[-1]
    return replace(question, grounding=Grounding(word, answer.colour, answer.shape),
                   option_groundings=tuple(Grounding(name.split()[1], *name.split()) for name in question.choices))


def multiple_choice_question(objects: tuple[SceneObject, ...], rng: random.Random) -> Question:
    """One MC question: colour or position when the scene allows it, else counting."""
    kind = rng.choice(("count", "colour", "position"))
    built = {"count": count_question, "colour": colour_question, "position": position_question}[kind](objects, rng)
    return built or count_question(objects, rng)


def describe_answer(objects: tuple[SceneObject, ...]) -> str:
    """Reference description, objects left to right: 'There are 2 objects: a large red circle and a small ...'."""
    ordered = sorted(objects, key=lambda o: o.cx)
    names = [f"a {o.size} {o.name}" for o in ordered]
    listing = names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]
    noun = "object" if len(objects) == 1 else "objects"
    verb = "is" if len(objects) == 1 else "are"
    return f"There {verb} {len(objects)} {noun}: {listing}."


def open_question(objects: tuple[SceneObject, ...]) -> Question:
    return Question("describe", "Describe the objects in the image.", describe_answer(objects))


def colour_presence_question(objects: tuple[SceneObject, ...], rng: random.Random) -> Question:
    """Training-only helper turn: 'Is there a red object ...' (teaches colour grounding separately)."""
    present = sorted({o.colour for o in objects})
    absent = [c for c in COLOURS if c not in present]
    if rng.random() < 0.5 or not absent:
        colour, answer = rng.choice(present), "Yes"
    else:
        colour, answer = rng.choice(absent), "No"
    return Question("colour_presence", f"Is there a {colour} object in the image?", answer,
                    grounding=Grounding(colour, colour, None))


def shape_presence_question(objects: tuple[SceneObject, ...], rng: random.Random) -> Question:
    """Training-only helper turn: 'Is there a ring ...' (teaches shape grounding separately)."""
    present = sorted({o.shape for o in objects})
    absent = [s for s in SHAPES if s not in present]
    if rng.random() < 0.5 or not absent:
        shape, answer = rng.choice(present), "Yes"
    else:
        shape, answer = rng.choice(absent), "No"
    return Question("shape_presence", f"Is there a {shape} in the image?", answer,
                    grounding=Grounding(shape, None, shape))


def pope_style_question(objects: tuple[SceneObject, ...], rng: random.Random) -> Question:
    """Training turn in POPE's form. Half positives; negatives are hard (same shape or same colour as an
    object in the scene) two times out of three, as the adversarial split asks for."""
    present = {o.name for o in objects}
    if rng.random() < 0.5:
        return _pope_question(rng.choice(sorted(present)), "Yes")
    style = rng.random()
    all_names = [f"{c} {s}" for s in SHAPES for c in COLOURS]
    if style < 1 / 3:
        candidates = [f"{c} {o.shape}" for o in objects for c in COLOURS]
    elif style < 2 / 3:
        candidates = [f"{o.colour} {s}" for o in objects for s in SHAPES]
    else:
        candidates = all_names
    candidates = sorted(set(candidates) - present) or sorted(set(all_names) - present)
    return _pope_question(rng.choice(candidates), "No")


def _pope_question(name: str, answer: str) -> Question:
    colour, shape = name.split()
    return Question("pope", pope_question_text(name), answer, grounding=Grounding(shape, colour, shape))
