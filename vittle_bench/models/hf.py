"""`hf:` models: any image-text-to-text model through AutoProcessor, its chat template and
AutoModelForImageTextToText; batched, left-padded greedy generation. A Vittle checkpoint (one with
vittle_config.json) gets its bottleneck re-attached automatically."""

from __future__ import annotations

import hashlib
import json
from itertools import groupby
from pathlib import Path
from typing import Any

import torch

from vittle_bench.models.base import MODELS
from vittle_bench.schema import Request

_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".json")


def directory_fingerprint(path: Path) -> str:
    """Content hash of a local checkpoint's weights and configs, so retrained weights never hit stale answers."""
    h = hashlib.sha256()
    for file in sorted(p for p in path.rglob("*") if p.is_file() and p.suffix in _WEIGHT_SUFFIXES):
        h.update(file.relative_to(path).as_posix().encode())
        h.update(hashlib.sha256(file.read_bytes()).digest())
    return h.hexdigest()[:16]


@MODELS.register("hf")
class HFModel:
    def __init__(self, name: str, source: str, dtype: str = "float32", device: str | None = None,
                 revision: str | None = None, trust_remote_code: bool = False, device_map: str | None = None) -> None:
        from transformers import AutoModelForImageTextToText, AutoProcessor

        from vittle_bench.vittle import load_vittle_if_present

        self.name = name
        common: dict[str, Any] = {"revision": revision, "trust_remote_code": trust_remote_code}
        self.processor = AutoProcessor.from_pretrained(source, **common)
        self.processor.tokenizer.padding_side = "left"
        self.model = AutoModelForImageTextToText.from_pretrained(
            source, dtype=getattr(torch, dtype), device_map=device_map, **common)
        if device and not device_map:
            self.model.to(device)
        self.model.eval()
        local = Path(source)
        self.vittle = load_vittle_if_present(self.model, local) if local.is_dir() else None
        identity = directory_fingerprint(local) if local.is_dir() else f"{source}@{revision or 'main'}"
        self.fingerprint = hashlib.sha256(json.dumps([name, identity, dtype]).encode()).hexdigest()[:16]

    @classmethod
    def load(cls, name: str, **kwargs: Any) -> "HFModel":
        return cls(f"hf:{name}", name, **kwargs)

    def _prompt(self, request: Request) -> str:
        content = [{"type": "image"} for _ in request.images] + [{"type": "text", "text": request.prompt}]
        return self.processor.apply_chat_template([{"role": "user", "content": content}], add_generation_prompt=True,
                                                  tokenize=False)

    @torch.inference_mode()
    def generate(self, requests: list[Request]) -> list[str]:
        answers: dict[int, str] = {}
        order = sorted(range(len(requests)), key=lambda i: requests[i].max_new_tokens)
        for max_new, group in groupby(order, key=lambda i: requests[i].max_new_tokens):
            indices = list(group)
            texts = [self._prompt(requests[i]) for i in indices]
            images = [img for i in indices for img in requests[i].images]
            inputs = self.processor(text=texts, images=images or None, padding=True, return_tensors="pt")
            inputs = inputs.to(self.model.device)
            out = self.model.generate(**inputs, max_new_tokens=max_new, do_sample=False)
            decoded = self.processor.batch_decode(out[:, inputs["input_ids"].shape[1]:], skip_special_tokens=True)
            answers.update({i: text.strip() for i, text in zip(indices, decoded)})
        return [answers[i] for i in range(len(requests))]
