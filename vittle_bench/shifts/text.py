"""Text shifts on the question, through nlpaug.

Only the question is perturbed: options and answers of closed-form items stay intact, so a shifted item
still has exactly one correct letter (the robustness question is about reading the instruction).
Severity scale: the fraction of words touched is 0.1 x severity (keyboard: 10 % ... 50 % of words get a
neighbouring-key typo; each touched word gets up to 30 % of its characters changed).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from vittle_bench.schema import Sample
from vittle_bench.shifts._global_rng import seeded_global_rngs
from vittle_bench.shifts.base import SHIFTS


@dataclass(frozen=True)
class KeyboardTypos:
    severity: int
    name: str = "keyboard"
    kind: str = "text"
    version: str = "nlpaug-1.1.11-keyboard"

    def apply(self, sample: Sample, rng: np.random.Generator) -> Sample:
        import nlpaug.augmenter.char as nac  # imported on first use: it costs ~2 s

        if not sample.question.strip():
            return sample
        augmenter = nac.KeyboardAug(aug_word_p=0.1 * self.severity, aug_char_p=0.3, aug_word_max=None,
                                    aug_char_max=None, include_numeric=False, include_special_char=False)
        with seeded_global_rngs(rng):
            out = augmenter.augment(sample.question)
        return sample.with_changes(question=out[0] if isinstance(out, list) else out)


SHIFTS.register("keyboard")(lambda severity: KeyboardTypos(severity))
