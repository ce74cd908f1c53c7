"""Shift generators: image, text, joint and domain shifts as one seeded, pluggable axis."""

from vittle_bench.shifts._contract import Shift
from vittle_bench.shifts._imaging import ImageShift
from vittle_bench.shifts.base import (
    SHIFTS,
    ShiftCondition,
    condition_manifest,
    parse_condition,
    sample_rng,
)

__all__ = ["SHIFTS", "ImageShift", "Shift", "ShiftCondition", "condition_manifest", "parse_condition",
           "sample_rng"]
