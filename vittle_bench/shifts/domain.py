"""The domain shift value: `domain:NAME` names rows swapped in for a task's own (another split, config or
language of the benchmark), declared in task or suite YAML and resolved by `vittle_bench.domains`.

`apply` is the identity on rows loaded through `DomainResolver.samples`, which tags them with
`meta["domain"]`; on any other row it raises, so a runner that has not swapped the rows records a clear
per-sample error instead of silently scoring the clean rows under a domain label. Domain shifts are not graded:
severity is 1 (graded subsets are separate names, e.g. wild_easy / wild_normal / wild_hard).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from vittle_bench.schema import Sample
from vittle_bench.shifts._contract import Shift


@dataclass(frozen=True)
class DomainShift(Shift):
    domain: str
    severity: int = 1
    kind: str = "domain"
    version: str = "1"

    def __post_init__(self) -> None:
        if not self.domain or any(c in self.domain for c in "@+, "):
            raise ValueError(f"domain shift {self.domain!r}: write domain:NAME (letters, digits, _ - .)")

    @property
    def name(self) -> str:
        return self.label

    @property
    def label(self) -> str:
        return f"domain:{self.domain}"

    def params(self) -> dict[str, Any]:
        return {"domain": self.domain, "rows": "swapped (see the task's domain declaration)"}

    def apply(self, sample: Sample, rng: np.random.Generator) -> Sample:
        if sample.meta.get("domain") != self.domain:
            raise RuntimeError(f"{self.label}: this row was not loaded for the domain (the runner must load the "
                               "domain's rows with DomainResolver.samples; see docs/shifts.md)")
        return sample
