"""Shift generators: image, text, joint and domain shifts as one seeded, pluggable axis."""

from vittle_bench.shifts.base import SHIFTS, Shift, ShiftCondition, parse_condition, sample_rng

__all__ = ["SHIFTS", "Shift", "ShiftCondition", "parse_condition", "sample_rng"]
