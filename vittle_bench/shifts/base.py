"""The Shift contract and the naming of shift conditions.

A shift is built from a registered factory at one severity (0 = clean) and is pure: its output depends only on
(sample, name, severity, seed), through the per-sample RNG from `sample_rng`, never on global state.
Conditions are written `name@severity`; a joint condition joins an image and a text shift with `+`
(`gaussian_noise@3+keyboard@2`).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Callable, Protocol

import numpy as np

from vittle_bench.registry import Registry
from vittle_bench.schema import Sample

KINDS = ("clean", "image", "text", "joint", "domain")
MAX_SEVERITY = 5


class Shift(Protocol):
    name: str
    kind: str
    severity: int
    version: str

    def apply(self, sample: Sample, rng: np.random.Generator) -> Sample: ...


ShiftFactory = Callable[[int], Shift]
SHIFTS: Registry[ShiftFactory] = Registry("shifts", ("vittle_bench.shifts.image", "vittle_bench.shifts.text"))


def sample_rng(seed: int, condition: str, sample_id: str) -> np.random.Generator:
    """Per-sample generator derived from (seed, condition name with severities, sample id) by hashing."""
    digest = hashlib.sha256(f"{seed}\x1f{condition}\x1f{sample_id}".encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:16], "little"))


@dataclass(frozen=True)
class CleanShift:
    name: str = "clean"
    kind: str = "clean"
    severity: int = 0
    version: str = "1"

    def apply(self, sample: Sample, rng: np.random.Generator) -> Sample:
        return sample


@dataclass(frozen=True)
class JointShift:
    """An image shift followed by a text shift; each gets its own child RNG so either alone is reproducible."""

    image: Shift
    text: Shift
    kind: str = "joint"
    version: str = "1"

    @property
    def name(self) -> str:
        return f"{self.image.name}+{self.text.name}"

    @property
    def severity(self) -> int:
        return max(self.image.severity, self.text.severity)

    def apply(self, sample: Sample, rng: np.random.Generator) -> Sample:
        image_rng, text_rng = rng.spawn(2)
        return self.text.apply(self.image.apply(sample, image_rng), text_rng)


@dataclass(frozen=True)
class ShiftCondition:
    """One column of the grid: a shift at its severity, with the label used in results and cache keys."""

    label: str  # e.g. "clean", "gaussian_noise@3", "gaussian_noise@3+keyboard@2"
    shift: Shift

    @property
    def name(self) -> str:
        return self.shift.name

    @property
    def kind(self) -> str:
        return self.shift.kind

    @property
    def severity(self) -> int:
        return self.shift.severity


def _build_single(text: str) -> Shift:
    name, _, sev = text.partition("@")
    if not sev:
        raise ValueError(f"shift {text!r} needs a severity, e.g. {name}@3 (1-{MAX_SEVERITY})")
    if not sev.isdigit() or not 1 <= int(sev) <= MAX_SEVERITY:
        raise ValueError(f"shift {text!r}: severity must be an integer from 1 to {MAX_SEVERITY}")
    return SHIFTS.get(name)(int(sev))


def parse_condition(text: str) -> ShiftCondition:
    """Parse `clean`, `name@sev` or `image@sev+text@sev` into a condition (unknown names raise with hints)."""
    text = text.strip()
    if text == "clean":
        return ShiftCondition("clean", CleanShift())
    parts = text.split("+")
    if len(parts) == 1:
        return ShiftCondition(text, _build_single(text))
    if len(parts) != 2:
        raise ValueError(f"joint shift {text!r}: join exactly one image and one text shift with '+'")
    first, second = (_build_single(p) for p in parts)
    if {first.kind, second.kind} != {"image", "text"}:
        raise ValueError(f"joint shift {text!r}: needs one image and one text shift, got {first.kind} and {second.kind}")
    image, text_shift = (first, second) if first.kind == "image" else (second, first)
    return ShiftCondition(f"{image.name}@{image.severity}+{text_shift.name}@{text_shift.severity}", JointShift(image, text_shift))
