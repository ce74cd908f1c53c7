"""The engine holds every shift to the contract (docs/plugins.md): a shifted image is a PIL image of its input's
size in RGB (another mode is converted as loaders convert), and `answer`, `choices` and `context` stay as they
were; a sample whose shift breaks that fails alone, with an error naming the shift (and the field)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
from PIL import Image

from vittle_bench.images import prepare_image
from vittle_bench.schema import Sample
from vittle_bench.shifts import ImageShift, Shift, ShiftCondition, parse_condition
from vittle_bench.shifts.base import JointShift
from vittle_bench.shifts.engine import ShiftContractError, ShiftEngine
from vittle_bench.shifts.image_cache import ShiftedImageCache


@dataclass(frozen=True)
class Returns(ImageShift):
    """An image shift that returns `make(image)`."""

    make: Any
    name: str = "odd_output"
    severity: int = 1
    version: str = "1"

    def apply_image(self, image: Image.Image, seed: int) -> Any:
        return self.make(image)


@dataclass(frozen=True)
class Rewrites(Shift):
    """A text shift that rewrites one field of the sample."""

    field: str
    value: Any
    name: str = "rewrites"
    kind: str = "text"
    severity: int = 1
    version: str = "1"

    def apply(self, sample: Sample, rng: np.random.Generator) -> Sample:
        return sample.with_changes(question=sample.question + "!", **{self.field: self.value})


@dataclass(frozen=True)
class WholeSample(Shift):
    """An image shift that is no ImageShift, so has no per-image step: `apply` returns the sample with
    `make(image)` for each image."""

    make: Any
    name: str = "whole_sample"
    kind: str = "image"
    severity: int = 1
    version: str = "1"

    def apply(self, sample: Sample, rng: np.random.Generator) -> Sample:
        return sample.with_changes(images=tuple(self.make(im) for im in sample.images))


def samples() -> list[Sample]:
    rng = np.random.default_rng(0)
    return [Sample("t", f"s{i}", "Which colour is the cup?", answer="B", choices=("red", "blue"), context="a cup",
                   images=(Image.fromarray(rng.integers(0, 255, (30, 40, 3), dtype=np.uint8)),)) for i in range(2)]


def apply(shift: Any, cache: ShiftedImageCache | None = None) -> list[Sample | Exception]:
    with ShiftEngine(cache) as engine:
        return engine.apply_many(ShiftCondition(f"{shift.name}@1", shift), samples(), seed=0)


@pytest.mark.parametrize("shift_class", [Returns, WholeSample])
def test_a_wrong_size_or_a_non_image_fails_the_sample_naming_the_shift(shift_class):
    for make, expected in ((lambda im: im.convert("L").resize((8, 8)), "returned a 8x8 image for a 40x30 input"),
                           (lambda im: np.asarray(im), "returned ndarray, not a PIL image")):
        results = apply(shift_class(make))
        assert all(isinstance(r, ShiftContractError) for r in results), results
        assert repr(shift_class(make).name) in str(results[0]) and expected in str(results[0])


@pytest.mark.parametrize("shift_class", [Returns, WholeSample])
def test_another_mode_is_converted_as_loaders_convert(shift_class, tmp_path):
    cache = ShiftedImageCache(tmp_path) if shift_class is Returns else None
    first = apply(shift_class(lambda im: im.convert("LA")), cache)
    again = apply(shift_class(lambda im: im.convert("LA")), cache)  # Returns: served from the shifted-image cache
    for sample, out, second in zip(samples(), first, again):
        assert isinstance(out, Sample) and out.images[0].mode == "RGB"
        expected = prepare_image(sample.images[0].convert("LA"))
        assert out.images[0].tobytes() == expected.tobytes() == second.images[0].tobytes()
        assert out.answer == "B" and out.meta["shift"]["label"] == f"{shift_class(None).name}@1"


@pytest.mark.parametrize("field,value", [("answer", "A"), ("choices", ("red", "green")), ("context", None)])
def test_a_shift_that_changes_the_ground_truth_fails_the_sample(field, value):
    results = apply(Rewrites(field, value))
    assert all(isinstance(r, ShiftContractError) for r in results)
    assert "'rewrites'" in str(results[0]) and f"changed the sample's {field}" in str(results[0])
    image = Returns(lambda im: im)
    joint = JointShift(image, Rewrites(field, value))
    with ShiftEngine() as engine:
        (out, _) = engine.apply_many(ShiftCondition("odd_output@1+rewrites@1", joint), samples(), seed=0)
    assert isinstance(out, ShiftContractError) and "'rewrites'" in str(out) and field in str(out)


def test_a_shift_that_keeps_the_contract_is_untouched():
    """Only the question changes: the sample comes back as the shift returned it (images are the same objects)."""
    sample = samples()[0]
    (out,) = ShiftEngine().apply_many(ShiftCondition("rewrites@1", Rewrites("category", "colour")), [sample], 0)
    assert isinstance(out, Sample) and out.question.endswith("!") and out.images[0] is sample.images[0]
    (clean,) = ShiftEngine().apply_many(parse_condition("clean"), [sample], 0)
    assert clean.images[0] is sample.images[0]
