"""The Shift contract and the naming of shift conditions.

A shift is a `Shift` subclass (`_contract.py`: what it declares, with defaults) built from a registered factory
at one severity (0 = clean), and is pure: its output depends only on (sample, name, severity, seed), never on
global state.

Seed rule (`ShiftCondition.apply`, which the engine reproduces byte for byte): an image is shifted once per
condition, not once per question. An image shift's per-image seed is `image_seed(seed, image label, image
digest)`: the run seed, the image shift's own label (`frost@3`, also inside `frost@3+keyboard@1`) and the
image's content, so every question, split, task and model that shows that image under that condition sees the
same shifted pixels, which the shifted-image cache computes once. A text shift stays per question: its
generator is `sample_rng(seed, condition label, sample id)` (in a joint condition, the second child of it).
A shift without the per-image step (a plugin image shift that only implements `apply`) gets the per-question
generator too, as it has no image to seed from.
Conditions are written `name@severity`; a joint condition joins an image and a text shift with `+`
(`gaussian_noise@3+keyboard@2`, severity = the larger of the two); a domain condition is `domain:NAME`
(rows swapped for another split or language, declared in task/suite YAML, see `domain.py`).

Each built-in shift module registers its shifts with one table, `register_shifts({name: factory})`.
Third-party shifts register a factory `factory(severity) -> Shift` in the entry-point group
`vittle_bench.shifts` (see docs/plugins.md); `build_shift` refuses anything it builds that is no `Shift`.

Severities: a shift declares the ones it accepts in its `severities` class attribute (1-5 by default), and
`parse_condition` rejects any other: ImageNet-C has 5 levels, MM_Robustness's text levels go to 7, a
translation has one.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from vittle_bench.registry import PluginError, Registry
from vittle_bench.schema import Sample, image_digest
from vittle_bench.shifts._contract import Shift
from vittle_bench.shifts._imaging import ImageShift
from vittle_bench.shifts.domain import DomainShift

DOMAIN_PREFIX = "domain:"
# What a Shift subclass sets itself: the base class has no default for them.
DECLARED_MEMBERS = ("name", "kind", "severity", "version")

ShiftFactory = Callable[[int], Shift]
SHIFTS: Registry[ShiftFactory] = Registry("shifts", (
    "vittle_bench.shifts.image", "vittle_bench.shifts.photometric", "vittle_bench.shifts.augment",
    "vittle_bench.shifts.text", "vittle_bench.shifts.translation"))


def register_shifts(factories: Mapping[str, ShiftFactory]) -> None:
    """Register a built-in module's shifts: its table of name -> factory(severity)."""
    for name, factory in factories.items():
        SHIFTS.register(name)(factory)


def build_shift(name: str, severity: int) -> Shift:
    """The registered shift `name` at `severity`; what a plugin's factory builds must be a `Shift` that sets
    the members the base class leaves to it, else a PluginError says so in one line."""
    shift = SHIFTS.build(name, severity)
    if not isinstance(shift, Shift):
        cls = type(shift)
        raise PluginError(f"shift {name!r}: {cls.__module__}.{cls.__qualname__} is not a vittle_bench.shifts.Shift "
                          "subclass; derive it from Shift (from ImageShift for an image shift), see docs/plugins.md")
    missing = [member for member in DECLARED_MEMBERS if not hasattr(shift, member)]
    if missing:
        raise PluginError(f"shift {name!r} does not follow the Shift contract (missing {', '.join(missing)})")
    return shift


def sample_rng(seed: int, condition: str, sample_id: str) -> np.random.Generator:
    """Per-sample generator derived from (seed, condition name with severities, sample id) by hashing."""
    digest = hashlib.sha256(f"{seed}\x1f{condition}\x1f{sample_id}".encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:16], "little"))


def image_seed(seed: int, image_label: str, digest: str) -> int:
    """The 32-bit seed an image shift gets for one image: from the run seed, the image shift's label and the
    image's content digest (`schema.image_digest`), never the question it belongs to."""
    hashed = hashlib.sha256(f"{seed}\x1fimage\x1f{image_label}\x1f{digest}".encode()).digest()
    return int.from_bytes(hashed[:4], "little")


def format_severities(severities: tuple[int, ...]) -> str:
    """(1, 2, 3) -> "1-3", (1,) -> "1", (1, 3, 5) -> "1, 3, 5"."""
    values = sorted(severities)
    if len(values) > 2 and values == list(range(values[0], values[-1] + 1)):
        return f"{values[0]}-{values[-1]}"
    return ", ".join(str(v) for v in values)


@dataclass(frozen=True)
class CleanShift(Shift):
    name: str = "clean"
    kind: str = "clean"
    severity: int = 0
    version: str = "1"

    def apply(self, sample: Sample, rng: np.random.Generator) -> Sample:
        return sample


@dataclass(frozen=True)
class JointShift(Shift):
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

    def params(self) -> dict[str, Any]:
        return {"image": {"name": self.image.name, "severity": self.image.severity, "version": self.image.version,
                          **self.image.params()},
                "text": {"name": self.text.name, "severity": self.text.severity, "version": self.text.version,
                         **self.text.params()}}

    def preflight(self) -> None:
        self.image.preflight()
        self.text.preflight()

    def apply(self, sample: Sample, rng: np.random.Generator) -> Sample:
        image_rng, text_rng = rng.spawn(2)
        return self.text.apply(self.image.apply(sample, image_rng), text_rng)


@dataclass(frozen=True)
class ShiftCondition:
    """One column of the grid: a shift at its severity, with the label used in results and cache keys."""

    label: str  # e.g. "clean", "gaussian_noise@3", "gaussian_noise@3+keyboard@2", "domain:coco_de"
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

    @property
    def image_shift(self) -> ImageShift | None:
        """The shift seeded per image (the condition's, or a joint condition's image part), if it has one."""
        shift = self.shift.image if isinstance(self.shift, JointShift) else self.shift
        return shift if isinstance(shift, ImageShift) else None

    @property
    def per_question(self) -> bool:
        """Whether the shift draws per question (a text part, or an image shift without the per-image step)."""
        return self.kind not in ("clean", "domain") and (self.image_shift is None or self.kind == "joint")

    def identity(self, seed: int, sample: Sample) -> dict[str, Any]:
        """What the shifted sample depends on besides the source sample's content, by the seed rule: the answer
        cache keys an answer by it and the source before anything is shifted."""
        if self.kind == "clean":
            return {"label": self.label}
        identity: dict[str, Any] = {"label": self.label, "version": self.shift.version, "params": self.shift.params()}
        if self.kind != "domain":
            identity["seed"] = seed
        if self.per_question:  # a text shift reads the question's id and what the loader noted (protected spans)
            identity |= {"question": sample.sample_id, "meta": sample.meta}
        return identity

    def image_seed(self, seed: int, digest: str) -> int:
        """The seed of the condition's image shift for the image with content digest `digest`."""
        image = self.image_shift
        assert image is not None, "only a condition with a per-image step seeds images"
        return image_seed(seed, f"{image.name}@{image.severity}", digest)

    def text_rng(self, seed: int, sample_id: str) -> np.random.Generator:
        """The generator of the condition's per-question part for one question."""
        rng = sample_rng(seed, self.label, sample_id)
        return rng.spawn(2)[1] if isinstance(self.shift, JointShift) else rng

    def apply(self, sample: Sample, seed: int) -> Sample:
        """What the condition makes of `sample` in a run with `seed`, by the seed rule (module docstring)."""
        image = self.image_shift
        if image is None:
            return self.shift.apply(sample, sample_rng(seed, self.label, sample.sample_id))
        out = sample.with_changes(images=tuple(image.apply_image(im, self.image_seed(seed, image_digest(im)))
                                               for im in sample.images)) if sample.images else sample
        return self.shift.text.apply(out, self.text_rng(seed, sample.sample_id)) \
            if isinstance(self.shift, JointShift) else out


def condition_manifest(condition: ShiftCondition, seed: int) -> dict[str, Any]:
    """What manifest.json records for one condition: name, kind, severity, version, parameters and seed."""
    return {"label": condition.label, "name": condition.name, "kind": condition.kind,
            "severity": condition.severity, "version": condition.shift.version,
            "params": condition.shift.params(), "seed": seed}


def _check_kind(name: str, shift: Shift) -> Shift:
    """`shift` if its kind is one a registered shift may have."""
    if shift.kind not in ("image", "text"):
        raise ValueError(f"shift {name!r} has kind {shift.kind!r}; registered shifts are 'image' or 'text' "
                         "(joint conditions combine them, domain shifts are declared in YAML)")
    return shift


def _build_single(text: str) -> Shift:
    name, _, sev = text.partition("@")
    SHIFTS.get(name)  # an unknown or broken name is reported before the severity
    if not (sev.isascii() and sev.isdigit()):
        valid = format_severities(build_shift(name, 1).severities)
        raise ValueError(f"shift {text!r} needs a severity, e.g. {name}@1 (severities {valid})" if not sev else
                         f"shift {text!r}: severity must be an integer ({name}: {valid})")
    shift = _check_kind(name, build_shift(name, int(sev)))
    if int(sev) not in shift.severities:
        raise ValueError(f"shift {text!r}: severity must be one of {format_severities(shift.severities)} "
                         f"for {name}")
    return shift


def parse_condition(text: str) -> ShiftCondition:
    """Parse `clean`, `name@sev`, `image@sev+text@sev` or `domain:NAME` (unknown names raise with hints)."""
    text = text.strip()
    if text == "clean":
        return ShiftCondition("clean", CleanShift())
    if text.startswith(DOMAIN_PREFIX):
        domain = DomainShift(text.removeprefix(DOMAIN_PREFIX))
        return ShiftCondition(domain.label, domain)
    parts = [p.strip() for p in text.split("+")]
    if len(parts) == 1:
        shift = _build_single(text)
        name, _, sev = text.partition("@")
        return ShiftCondition(f"{name}@{int(sev)}", shift)  # one label per condition: frost@03 is frost@3
    if len(parts) != 2:
        raise ValueError(f"joint shift {text!r}: join exactly one image and one text shift with '+'")
    first, second = (_build_single(p) for p in parts)
    if {first.kind, second.kind} != {"image", "text"}:
        raise ValueError(f"joint shift {text!r}: needs one image and one text shift, got {first.kind} and "
                         f"{second.kind}")
    image, text_shift = (first, second) if first.kind == "image" else (second, first)
    return ShiftCondition(f"{image.name}@{image.severity}+{text_shift.name}@{text_shift.severity}",
                          JointShift(image, text_shift))
