"""Text shifts on the question, through nlpaug (character and word level).

What is perturbed: only `sample.question` — the instruction the model reads. Options (`choices`), answers,
references and `context` (a caption or hint) are never touched, so a shifted closed-form item still has
exactly one correct letter and the judge still sees the true reference. A loader whose dataset embeds the
options inside the question text (MMStar) protects them by setting `meta["question_stem_chars"]` to the length
of the stem: only `question[:stem_chars]` is perturbed, the rest is kept verbatim. Empty questions are
returned unchanged.

Severity scales (1 -> 5), documented in docs/shifts.md:
- character level (keyboard, ocr, char_insert, char_substitute, char_swap, char_delete): 10, 20, 30, 40, 50 % of
  the words (of 4+ characters; at least one) are touched, each touched word gets up to 30 % of its characters
  changed.
- word level (synonym, word_swap, word_delete, word_split): 10, 25, 40, 55, 70 % of the words (at least one);
  synonym @3 and @5 are the EMI paper's synonym-replacement rates 0.4 and 0.7. Synonyms come from WordNet 3.0
  (see `wordnet.py`); function words (STOPWORDS) are not replaced, and there is no POS tagger offline, so a
  word's synonyms are drawn from all its senses.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np

from vittle_bench.schema import Sample
from vittle_bench.shifts._global_rng import seeded_global_rngs
from vittle_bench.shifts.base import SHIFTS

NLPAUG_VERSION = "nlpaug-1.1.11"
CHAR_WORD_FRACTION = (0.1, 0.2, 0.3, 0.4, 0.5)
CHAR_FRACTION = 0.3
WORD_FRACTION = (0.1, 0.25, 0.4, 0.55, 0.7)
CHAR_SHIFTS = ("keyboard", "ocr", "char_insert", "char_substitute", "char_swap", "char_delete")
WORD_SHIFTS = ("synonym", "word_swap", "word_delete", "word_split")
STOPWORDS = sorted(set("""
a an the this that these those there here is are was were be been being am do does did done have has had
having will would shall should can could may might must i me my mine you your yours he him his she her hers
it its we us our ours they them their theirs what which who whom whose when where why how if then than so
as at by for from in into of off on onto out over to up down with without about above below under between
and or but nor not no yes all any both each few more most other some such only own same too very just
""".split()))


def split_protected(sample: Sample) -> tuple[str, str]:
    """(stem to perturb, protected tail kept verbatim), from `meta["question_stem_chars"]` when present."""
    stem_chars = sample.meta.get("question_stem_chars")
    if stem_chars is None:
        return sample.question, ""
    return sample.question[:int(stem_chars)], sample.question[int(stem_chars):]


@lru_cache(maxsize=None)
def _augmenter(name: str, severity: int) -> Any:
    """One nlpaug augmenter per (shift, severity); building them reads resource files, so they are reused."""
    import nlpaug.augmenter.char as nac  # imported on first use: it costs ~2 s
    import nlpaug.augmenter.word as naw

    char_args = dict(aug_word_p=CHAR_WORD_FRACTION[severity - 1], aug_char_p=CHAR_FRACTION, aug_word_max=None,
                     aug_char_max=None)
    word_args = dict(aug_p=WORD_FRACTION[severity - 1], aug_max=None)
    if name == "keyboard":
        return nac.KeyboardAug(**char_args, include_numeric=False, include_special_char=False)
    if name == "ocr":
        return nac.OcrAug(**char_args)
    if name.startswith("char_"):
        return nac.RandomCharAug(action=name.removeprefix("char_"), **char_args)
    if name == "synonym":
        from vittle_bench.shifts.wordnet import ensure_wordnet

        ensure_wordnet()
        augmenter = naw.SynonymAug(aug_src="wordnet", stopwords=STOPWORDS, **word_args)
        # No POS tagger offline (NLTK's needs its downloader): an empty tag makes nlpaug use every sense.
        augmenter.model.pos_tag = lambda tokens: [(token, "") for token in tokens]
        return augmenter
    if name in ("word_swap", "word_delete"):
        return naw.RandomWordAug(action=name.removeprefix("word_"), **word_args)
    if name == "word_split":
        return naw.SplitAug(**word_args)
    raise ValueError(f"unknown nlpaug shift {name!r}")


@dataclass(frozen=True)
class NlpaugShift:
    """A character- or word-level perturbation of the question stem by one nlpaug augmenter."""

    name: str
    severity: int
    kind: str = "text"
    version: str = NLPAUG_VERSION

    def params(self) -> dict[str, Any]:
        if self.name in CHAR_SHIFTS:
            return {"library": "nlpaug", "level": "character", "word_fraction": CHAR_WORD_FRACTION[self.severity - 1],
                    "char_fraction_per_word": CHAR_FRACTION, "perturbs": "question stem"}
        return {"library": "nlpaug", "level": "word", "word_fraction": WORD_FRACTION[self.severity - 1],
                "perturbs": "question stem", **({"source": "WordNet 3.0"} if self.name == "synonym" else {})}

    def apply(self, sample: Sample, rng: np.random.Generator) -> Sample:
        stem, tail = split_protected(sample)
        if not stem.strip():
            return sample
        augmenter = _augmenter(self.name, self.severity)
        with seeded_global_rngs(rng):
            out = augmenter.augment(stem)
        out = out[0] if isinstance(out, list) else out
        return sample.with_changes(question=(out if out is not None else stem) + tail)


def _register(name: str) -> None:
    version = f"{NLPAUG_VERSION}-{name}" + ("+wordnet-3.0" if name == "synonym" else "")
    SHIFTS.register(name)(lambda severity: NlpaugShift(name, severity, version=version))


for _name in CHAR_SHIFTS + WORD_SHIFTS:
    _register(_name)
