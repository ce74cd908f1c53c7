"""Optional machine-translation text shifts (`mt_de@1`, ...), backed by MarianMT models from the hub.

The paper's translation scenarios use pre-translated questions; those are domain shifts (rows swapped, see
`domain.py` and the paper30 suite). This shift translates at run time instead, for languages or datasets
without pre-translated rows. It needs the hub (or a local copy of the model in the HF cache) and
`sentencepiece`; offline it fails with one clear error per sample (`preflight()` raises it before a run).
Decoding is greedy, so the output is deterministic on a given machine and library version. Translation has
one level: only severity 1 exists.

Protected spans (`protect.py`) stay byte for byte: each line is translated whole, and when the translation
does not carry the line's placeholders, numbers and formulas over verbatim and in order, its free pieces are
translated one by one around them instead; line breaks, option blocks and a loader's protected tail
(`meta["question_stem_chars"]`) are never sent to the model. As in the EMI paper's translated questions
(changdae/llavabench-shift-natural-v1), the translated text is followed by " Please answer in English."
(before any protected block that ends the question), so the references stay English.

`back_translation@1` is MM_Robustness's sentence-level back-translation (`perturb_COCO_TP.py`: nlpaug's
BackTranslationAug with facebook/wmt19-en-de and facebook/wmt19-de-en, one level): the question goes to German
and back with those two checkpoints, greedily, through the same protected-span handling and with no suffix.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from vittle_bench.schema import Sample
from vittle_bench.shifts._contract import Shift
from vittle_bench.shifts.base import ShiftFactory, register_shifts
from vittle_bench.shifts.protect import PATTERNS, Piece
from vittle_bench.shifts.text import question_pieces

# Helsinki-NLP OPUS-MT English -> X checkpoints (MarianMT).
MT_MODELS = {
    "de": "Helsinki-NLP/opus-mt-en-de",
    "fr": "Helsinki-NLP/opus-mt-en-fr",
    "es": "Helsinki-NLP/opus-mt-en-es",
    "zh": "Helsinki-NLP/opus-mt-en-zh",
    "ar": "Helsinki-NLP/opus-mt-en-ar",
    "hi": "Helsinki-NLP/opus-mt-en-hi",
}
ANSWER_IN_ENGLISH = " Please answer in English."
BACK_TRANSLATION = ("facebook/wmt19-en-de", "facebook/wmt19-de-en")  # MM_Robustness's back_translation_aug
_LOADED: dict[str, Any] = {}  # model id -> (tokenizer, model) or the exception that loading raised
_LOCK = threading.Lock()


def _load(model_id: str) -> tuple[Any, Any]:
    with _LOCK:
        if model_id not in _LOADED:
            try:
                from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

                tokenizer = AutoTokenizer.from_pretrained(model_id)
                model = AutoModelForSeq2SeqLM.from_pretrained(model_id).eval()
                _LOADED[model_id] = (tokenizer, model)
            except Exception as exc:  # noqa: BLE001 - remembered so every sample fails fast with the same message
                _LOADED[model_id] = RuntimeError(
                    f"machine-translation model {model_id} could not be loaded ({type(exc).__name__}: "
                    f"{str(exc).splitlines()[0] if str(exc) else ''}); it needs the Hugging Face hub (or the model "
                    "in the local HF cache) and `pip install sentencepiece`. Pre-translated rows work offline: "
                    "use a domain shift (see docs/shifts.md)")
        loaded = _LOADED[model_id]
    if isinstance(loaded, Exception):
        raise loaded
    return loaded


@dataclass(frozen=True)
class MachineTranslation(Shift):
    language: str
    severity: int = 1
    kind: str = "text"
    version: str = "marianmt-greedy-protected-2"
    severities: ClassVar[tuple[int, ...]] = (1,)
    needs_hub: ClassVar[bool] = True
    suffix: ClassVar[str] = ANSWER_IN_ENGLISH

    def __post_init__(self) -> None:
        if self.severity != 1:
            raise ValueError(f"{self.name} has a single level: write {self.name}@1")

    @property
    def name(self) -> str:
        return f"mt_{self.language}"

    @property
    def model_id(self) -> str:
        return MT_MODELS[self.language]

    def params(self) -> dict[str, Any]:
        return {"model": self.model_id, "decoding": "greedy", "target_language": self.language,
                "suffix": ANSWER_IN_ENGLISH.strip(), "perturbs": "question free text"}

    def preflight(self) -> None:
        _load(self.model_id)

    def _translate(self, text: str) -> str:
        return _generate(self.model_id, text)

    def _translate_text(self, text: str) -> str:
        """`text` translated, its surrounding whitespace kept; text without letters is kept as it is."""
        if not any(c.isalpha() for c in text):
            return text
        body = text.strip()
        start = text.index(body)
        return text[:start] + self._translate(body) + text[start + len(body):]

    def _translate_line(self, pieces: list[Piece]) -> str:
        """One line (free pieces with inline protected spans): whole if the spans survive, else piecewise."""
        whole = self._translate_text("".join(p.text for p in pieces))
        position = 0
        for span in (p.text.strip() for p in pieces if p.protected):
            position = whole.find(span, position)
            if position < 0:
                return "".join(p.text if p.protected else self._translate_text(p.text) for p in pieces)
            position += len(span)
        return whole

    def apply(self, sample: Sample, rng: np.random.Generator) -> Sample:
        pieces = question_pieces(sample)
        if not any(_has_words(p) for p in pieces):
            return sample
        stem_chars = sample.meta.get("question_stem_chars")
        segments: list[Piece | list[Piece]] = []  # a block piece, or a line of free and inline protected pieces
        start = 0
        for piece in pieces:
            tail = stem_chars is not None and start >= int(stem_chars)
            start += len(piece.text)
            if piece.protected and (tail or any(c in piece.text for c in "\r\n")
                                    or PATTERNS["options"].match(piece.text) is not None):
                segments.append(piece)
            elif segments and isinstance(segments[-1], list):
                segments[-1].append(piece)
            else:
                segments.append([piece])
        out = [s.text if isinstance(s, Piece) else self._translate_line(s) if any(map(_has_words, s))
               else "".join(p.text for p in s) for s in segments]
        last = max(i for i, s in enumerate(segments) if isinstance(s, list) and any(map(_has_words, s)))
        body = out[last].rstrip()
        out[last] = body + self.suffix + out[last][len(body):]
        return sample.with_changes(question="".join(out))


@dataclass(frozen=True)
class BackTranslation(MachineTranslation):
    """English -> German -> English with MM_Robustness's two WMT19 checkpoints (module docstring)."""

    language: str = "de"
    version: str = "wmt19-en-de-en-greedy-protected-1"
    suffix: ClassVar[str] = ""

    @property
    def name(self) -> str:
        return "back_translation"

    @property
    def family(self) -> str:
        return "sentence"  # MM_Robustness's sentence-level perturbations

    def params(self) -> dict[str, Any]:
        return {"models": list(BACK_TRANSLATION), "decoding": "greedy", "pivot_language": self.language,
                "reference": "MM_Robustness back_trans (nlpaug BackTranslationAug)", "perturbs": "question free text"}

    def preflight(self) -> None:
        for model_id in BACK_TRANSLATION:
            _load(model_id)

    def _translate(self, text: str) -> str:
        pivot = _generate(BACK_TRANSLATION[0], text)
        return _generate(BACK_TRANSLATION[1], pivot) if pivot.strip() else pivot  # nothing to send back


def _generate(model_id: str, text: str) -> str:
    """`text` translated by `model_id`, greedily."""
    tokenizer, model = _load(model_id)
    import torch

    with torch.inference_mode():
        batch = tokenizer([text], return_tensors="pt", truncation=True, max_length=512)
        ids = model.generate(**batch, num_beams=1, do_sample=False, max_new_tokens=512)
    return str(tokenizer.decode(ids[0], skip_special_tokens=True))


def _has_words(piece: Piece) -> bool:
    return not piece.protected and any(c.isalpha() for c in piece.text)


def _translation(language: str) -> ShiftFactory:
    return lambda severity: MachineTranslation(language, severity)


register_shifts({**{f"mt_{language}": _translation(language) for language in MT_MODELS},
                 "back_translation": lambda severity: BackTranslation(severity=severity)})
