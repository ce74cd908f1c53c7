"""Text shifts on the question: MM_Robustness's character-level (nlpaug) and word-level (EDA) perturbations.

Severity s is MM_Robustness's level s (levels 1-7; `text_perturbation/perturb_COCO_TP.py`), the fraction
0.05 * s of the words:
- character level (keyboard, ocr, char_insert, char_substitute, char_swap, char_delete): nlpaug 1.1.11's
  KeyboardAug / OcrAug / RandomCharAug(action) with `aug_word_p = 0.05 * s` and every other argument at its
  default, as the reference calls them (digits and special characters among the typos; at least 1 and at
  most 10 words of 4+ characters, 30 % of a word's characters). nlpaug 1.1.11's character augmenters are
  the reference's 1.1.7 ones unchanged. The EMI paper's `KeyboardAug_1` / `KeyboardAug_3` are keyboard@1 / @3.
- word level (synonym, word_insert, word_swap, word_delete): EDA synonym replacement / random insertion /
  random swap / random deletion with alpha = 0.05 * s, on the question lower-cased and stripped of
  punctuation, filtered for meaning (see `eda.py`, `paraphrase.py`). The EMI paper's `sr_4` / `sr_7` are
  synonym@4 / @7.
- punctuation_insert: MM_Robustness's `insert_punctuation_marks` (its `ip` shift) with ratio 0.05 * s, on the
  question as written, filtered for meaning like the word-level shifts (`PunctuationShift`).

What is perturbed: only `sample.question`, and in it only the free text: protected spans (image
placeholders, numbers, LaTeX, option blocks, line breaks; `protect.py`) are kept byte for byte, and only free
text is counted in the word fraction. Options (`choices`), answers, references and `context` are never
touched, so a shifted closed-form item keeps exactly one correct letter and the judge sees the true
reference. A question without free words is returned unchanged.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cache
from typing import Any, ClassVar

import numpy as np

from vittle_bench.schema import Sample
from vittle_bench.shifts import eda, paraphrase
from vittle_bench.shifts._contract import Shift
from vittle_bench.shifts._global_rng import seeded_global_rngs
from vittle_bench.shifts.base import ShiftFactory, register_shifts
from vittle_bench.shifts.protect import Piece, split_pieces

LEVELS = (1, 2, 3, 4, 5, 6, 7)
NLPAUG_VERSION = "nlpaug-1.1.11"
CHAR_SHIFTS = ("keyboard", "ocr", "char_insert", "char_substitute", "char_swap", "char_delete")
WORD_SHIFTS = ("synonym", "word_insert", "word_swap", "word_delete")
PUNCTUATIONS = (".", ",", "!", "?", ";", ":")  # MM_Robustness's PUNCTUATIONS, in its order
_WORD = re.compile(r"\S+")
EDA_OPERATION = {"synonym": "synonym replacement (sr)", "word_insert": "random insertion (ri)",
                 "word_swap": "random swap (rs)", "word_delete": "random deletion (rd)"}
AUGMENTER = {"keyboard": "KeyboardAug", "ocr": "OcrAug", **{f"char_{a}": f"RandomCharAug(action={a!r})"
                                                            for a in ("insert", "substitute", "swap", "delete")}}


def question_pieces(sample: Sample) -> list[Piece]:
    """The question as free and protected pieces; `meta["question_stem_chars"]` protects what follows it."""
    stem_chars = sample.meta.get("question_stem_chars")
    return split_pieces(sample.question, None if stem_chars is None else int(stem_chars))


@cache
def _augmenter(name: str, severity: int) -> Any:
    """One nlpaug augmenter per (shift, severity), called as MM_Robustness calls it: only aug_word_p is set."""
    import nlpaug.augmenter.char as nac  # imported on first use: it costs ~2 s

    word_p = eda.level_alpha(severity)
    if name == "keyboard":
        return nac.KeyboardAug(aug_word_p=word_p)
    if name == "ocr":
        return nac.OcrAug(aug_word_p=word_p)
    return nac.RandomCharAug(action=name.removeprefix("char_"), aug_word_p=word_p)


class _TokenLayout:
    """nlpaug's tokens of the free text, and how to put augmented tokens back without touching the rest.

    nlpaug tokenises with `re.split(r'(\\W)')` and re-joins with spaces and punctuation rules, which turns
    `3.5` into `3. 5` and drops line breaks. We hand it the same tokens (its own regex, over the free pieces
    only) and put each augmented token back in its token's place, keeping whitespace and protected pieces."""

    def __init__(self, pieces: list[Piece]) -> None:
        from nlpaug.util.text.tokenizer import TOKENIZER_REGEX

        self.tokens: list[str] = []
        self.parts: list[str | None] = []  # None marks a token's place
        for piece in pieces:
            if piece.protected:
                self.parts.append(piece.text)
                continue
            for part in TOKENIZER_REGEX.split(piece.text):
                if part.strip():
                    self.tokens.append(part)
                    self.parts.append(None)
                elif part:
                    self.parts.append(part)

    def tokenize(self, text: str) -> list[str]:
        return list(self.tokens)

    def rebuild(self, tokens: list[str]) -> str:
        if len(tokens) != len(self.tokens):  # nlpaug drops tokens it empties; no character augmenter empties one
            raise RuntimeError(f"nlpaug returned {len(tokens)} tokens for {len(self.tokens)}")
        replacements = iter(tokens)
        return "".join(next(replacements) if part is None else part for part in self.parts)


@dataclass(frozen=True)
class TextShift(Shift):
    """A perturbation of the question's free text at one of MM_Robustness's levels."""

    name: str
    severity: int
    kind: str = "text"
    version: str = ""
    severities: ClassVar[tuple[int, ...]] = LEVELS

    @property
    def family(self) -> str:
        """MM_Robustness's level of the perturbation: character or word (punctuation insertion is word level)."""
        return "character" if self.name in CHAR_SHIFTS else "word"


@dataclass(frozen=True)
class CharShift(TextShift):
    """A character-level perturbation of the question's free text by one nlpaug augmenter."""

    def params(self) -> dict[str, Any]:
        return {"library": NLPAUG_VERSION, "augmenter": AUGMENTER[self.name],
                "word_fraction": round(eda.level_alpha(self.severity), 2), "other_arguments": "nlpaug defaults",
                "reference": f"MM_Robustness level {self.severity}", "perturbs": "question free text"}

    def apply(self, sample: Sample, rng: np.random.Generator) -> Sample:
        layout = _TokenLayout(question_pieces(sample))
        if not layout.tokens:
            return sample
        augmenter = copy.copy(_augmenter(self.name, self.severity))  # per call: the layout is this question's
        augmenter.tokenizer, augmenter.reverse_tokenizer = layout.tokenize, layout.rebuild
        with seeded_global_rngs(rng):
            out = augmenter.augment(sample.question)
        out = out[0] if isinstance(out, list) else out
        return sample.with_changes(question=out if out else sample.question)


def assemble(pieces: list[Piece], words: list[eda.Word]) -> str:
    """The question with each free piece replaced by its words (EDA's single spaces, no punctuation); a
    piece keeps one space on a side where it had whitespace or punctuation next to a protected piece, and a
    piece left without words keeps one space only between two protected pieces."""
    by_slot: dict[int, list[str]] = {}
    for text, slot in words:
        by_slot.setdefault(slot, []).append(text)
    out = []
    for i, piece in enumerate(pieces):
        if piece.protected:
            out.append(piece.text)
            continue
        cleaned = eda.clean(piece.text)
        lead = i > 0 and cleaned.startswith(" ") and not pieces[i - 1].text[-1:].isspace()
        trail = i + 1 < len(pieces) and cleaned.endswith(" ") and not pieces[i + 1].text[:1].isspace()
        body = " ".join(by_slot.get(i, []))
        if body:
            out.append((" " if lead else "") + body + (" " if trail else ""))
        elif lead and trail:  # e.g. the ", " between two placeholders
            out.append(" ")
    return "".join(out)


_OPERATIONS: dict[str, Callable[[list[eda.Word], float, np.random.Generator], list[eda.Word]]] = {
    "synonym": lambda words, alpha, rng: eda.synonym_replacement(words, eda.count(alpha, len(words)), rng),
    "word_insert": lambda words, alpha, rng: eda.random_insertion(words, eda.count(alpha, len(words)), rng),
    "word_swap": lambda words, alpha, rng: eda.random_swap(words, eda.count(alpha, len(words)), rng),
    "word_delete": lambda words, alpha, rng: eda.random_deletion(words, alpha, rng),
}


@dataclass(frozen=True)
class EdaShift(TextShift):
    """A word-level EDA perturbation of the question's free text, kept only if it still means the same."""

    def params(self) -> dict[str, Any]:
        return {"method": f"EDA {EDA_OPERATION[self.name]}", "word_fraction": round(eda.level_alpha(self.severity), 2),
                "cleaning": "lower-case, letters only", "synonyms": "WordNet 3.0",
                "filter": {"encoder": paraphrase.ENCODER, "min_cosine": paraphrase.THRESHOLD,
                           "max_draws": paraphrase.MAX_DRAWS},
                "reference": f"MM_Robustness level {self.severity}", "perturbs": "question free text"}

    def _draws(self, pieces: list[Piece], words: list[eda.Word], rng: np.random.Generator) -> Iterator[str]:
        operation, alpha = _OPERATIONS[self.name], eda.level_alpha(self.severity)
        while True:
            yield assemble(pieces, operation(words, alpha, rng))

    def apply(self, sample: Sample, rng: np.random.Generator) -> Sample:
        pieces = question_pieces(sample)
        words = [(word, i) for i, piece in enumerate(pieces) if not piece.protected
                 for word in eda.clean(piece.text).split()]
        if not words:
            return sample
        question, _, _ = paraphrase.select(sample.question, self._draws(pieces, words, rng))
        return sample.with_changes(question=question)


@dataclass(frozen=True)
class PunctuationShift(TextShift):
    """MM_Robustness's punctuation insertion (`insert_punctuation_marks`, text_perturbation/perturb_COCO_TP.py):
    with r = 0.05 * level and N words, q ~ U{1, ..., int(r * N + 1)} distinct words each get a mark drawn from
    . , ! ? ; : put before them (followed by a space), and the draw is kept only if it still means the same
    (the reference filters `ip` as it filters EDA). Words are the whitespace-separated runs of the free text,
    as the reference splits on spaces; protected spans are neither counted nor touched."""

    def params(self) -> dict[str, Any]:
        return {"method": "MM_Robustness insert_punctuation_marks", "ratio": round(eda.level_alpha(self.severity), 2),
                "marks": "".join(PUNCTUATIONS), "filter": {"encoder": paraphrase.ENCODER,
                                                            "min_cosine": paraphrase.THRESHOLD,
                                                            "max_draws": paraphrase.MAX_DRAWS},
                "reference": f"MM_Robustness level {self.severity}", "perturbs": "question free text"}

    def _draws(self, pieces: list[Piece], words: list[tuple[int, int]], rng: np.random.Generator) -> Iterator[str]:
        most = int(eda.level_alpha(self.severity) * len(words) + 1)
        while True:
            count = min(len(words), int(rng.integers(1, most + 1)))
            chosen = sorted(int(i) for i in rng.choice(len(words), size=count, replace=False))
            texts = [piece.text for piece in pieces]
            for index in reversed(chosen):  # from the end, so earlier offsets stay valid
                slot, start = words[index]
                texts[slot] = texts[slot][:start] + PUNCTUATIONS[int(rng.integers(len(PUNCTUATIONS)))] + " " + \
                    texts[slot][start:]
            yield "".join(texts)

    def apply(self, sample: Sample, rng: np.random.Generator) -> Sample:
        pieces = question_pieces(sample)
        words = [(i, match.start()) for i, piece in enumerate(pieces) if not piece.protected
                 for match in _WORD.finditer(piece.text)]
        if not words:
            return sample
        question, _, _ = paraphrase.select(sample.question, self._draws(pieces, words, rng))
        return sample.with_changes(question=question)


def _char_shift(name: str) -> ShiftFactory:
    version = f"{NLPAUG_VERSION}-{name}+mmr-levels+protected-2"
    return lambda severity: CharShift(name, severity, version=version)


def _eda_shift(name: str) -> ShiftFactory:
    version = f"eda-{name}+wordnet-3.0+minilm-filter+protected-2"
    return lambda severity: EdaShift(name, severity, version=version)


register_shifts({**{name: _char_shift(name) for name in CHAR_SHIFTS},
                 **{name: _eda_shift(name) for name in WORD_SHIFTS},
                 "punctuation_insert": lambda severity: PunctuationShift(
                     "punctuation_insert", severity, version="mmr-ip+minilm-filter+protected-1")})
