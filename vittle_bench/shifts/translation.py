"""Optional machine-translation text shifts (`mt_de@1`, ...), backed by MarianMT models from the hub.

The paper's translation scenarios use pre-translated questions; those are domain shifts (rows swapped, see
`domain.py` and the paper30 suite). This shift translates at run time instead, for languages or datasets
without pre-translated rows. It needs the hub (or a local copy of the model in the HF cache) and
`sentencepiece`; offline it fails with one clear error per sample (`preflight()` raises it before a run).
Decoding is greedy, so the output is deterministic on a given machine and library version. Translation has
one level: only severity 1 exists. Only the question stem is translated (see text.py).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

import numpy as np

from vittle_bench.schema import Sample
from vittle_bench.shifts.base import SHIFTS
from vittle_bench.shifts.text import split_protected

# Helsinki-NLP OPUS-MT English -> X checkpoints (MarianMT).
MT_MODELS = {
    "de": "Helsinki-NLP/opus-mt-en-de",
    "fr": "Helsinki-NLP/opus-mt-en-fr",
    "es": "Helsinki-NLP/opus-mt-en-es",
    "zh": "Helsinki-NLP/opus-mt-en-zh",
    "ar": "Helsinki-NLP/opus-mt-en-ar",
    "hi": "Helsinki-NLP/opus-mt-en-hi",
}
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
class MachineTranslation:
    language: str
    severity: int = 1
    kind: str = "text"
    version: str = "marianmt-greedy-1"

    def __post_init__(self) -> None:
        if self.severity != 1:
            raise ValueError(f"mt_{self.language} has a single level: write mt_{self.language}@1")

    @property
    def name(self) -> str:
        return f"mt_{self.language}"

    @property
    def model_id(self) -> str:
        return MT_MODELS[self.language]

    def params(self) -> dict[str, Any]:
        return {"model": self.model_id, "decoding": "greedy", "target_language": self.language,
                "perturbs": "question stem"}

    def preflight(self) -> None:
        _load(self.model_id)

    def apply(self, sample: Sample, rng: np.random.Generator) -> Sample:
        stem, tail = split_protected(sample)
        if not stem.strip():
            return sample
        tokenizer, model = _load(self.model_id)
        import torch

        with torch.inference_mode():
            batch = tokenizer([stem], return_tensors="pt", truncation=True, max_length=512)
            ids = model.generate(**batch, num_beams=1, do_sample=False, max_new_tokens=512)
        return sample.with_changes(question=tokenizer.decode(ids[0], skip_special_tokens=True) + tail)


def _register(language: str) -> None:
    SHIFTS.register(f"mt_{language}")(lambda severity: MachineTranslation(language, severity))


for _language in MT_MODELS:
    _register(_language)
