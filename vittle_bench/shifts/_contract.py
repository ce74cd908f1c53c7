"""The `Shift` base class: what every shift, built-in or plugin, declares, with the defaults most shifts keep.

A subclass (a frozen dataclass, as a rule) sets `name`, `kind` ("image" or "text" for a registered shift),
`severity` and `version` (as fields, class attributes or properties) and implements `apply(sample, rng)`.
It overrides what differs from the defaults:
- `severities`: the severities it accepts (`parse_condition` refuses any other); 1-5 by default;
- `family`: the family it is listed and previewed under (noise, blur, weather, digital, geometric); none
  by default;
- `params()`: the parameters its severity maps to, recorded in manifest.json and in shifted-image cache keys;
  none by default;
- `preflight()`: raises `RuntimeError` when an outside resource it needs cannot be had, so a run stops before
  any model loads; nothing to check by default;
- `needs_hub`: True for a shift that needs the Hugging Face hub (or a model in the local HF cache) to run.
An image shift derives from `ImageShift` (`_imaging.py`) and implements its per-image step, which the engine
caches and runs in worker processes.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from vittle_bench.schema import Sample

DEFAULT_SEVERITIES = (1, 2, 3, 4, 5)


class Shift(ABC):
    """A shift at one severity (0 = clean): pure, its output depends only on the sample, its name, severity
    and the generator it is handed."""

    severities: ClassVar[tuple[int, ...]] = DEFAULT_SEVERITIES
    needs_hub: ClassVar[bool] = False

    if TYPE_CHECKING:  # set by each subclass; read-only here, so fields and properties both declare them
        @property
        def name(self) -> str: ...
        @property
        def kind(self) -> str: ...
        @property
        def severity(self) -> int: ...
        @property
        def version(self) -> str: ...

    @property
    def family(self) -> str:
        """The family an image shift is listed and previewed under (noise, blur, weather, digital, geometric);
        "" for a shift that declares none."""
        return ""

    def params(self) -> dict[str, Any]:
        return {}

    def preflight(self) -> None:
        return None

    @abstractmethod
    def apply(self, sample: Sample, rng: np.random.Generator) -> Sample: ...
