"""How `vittle-bench tune` labels each model family's conversations, chosen and tried before the model loads.

Two layouts, the same two that evaluation (`models/prompt_profiles.py`) asks in, so a tuned model is asked the way
it was trained:

- ``chat_template``: the processor's chat template renders the whole conversation; assistant turns are located in
  it (``data.ConversationCollator``). LLaVA, LLaVA-NeXT, Qwen2-VL, Qwen2.5-VL, Idefics3 / SmolVLM, ...
- ``image_tokens_then_prompt``: prefix-LM families (PaliGemma) without a chat template, whose processor takes the
  answer as ``suffix`` and returns the labels and the ``token_type_ids`` that mark the prefix the model attends
  to bidirectionally (``PrefixLMCollator``). Each row becomes one example per answer: the earlier turns and the
  question form the prefix; rows without an image are left out (the processor requires one per example).

A family neither layout can label fails in one line at start-up (``check_family``), naming the family and what
is missing, instead of mid-training.
"""

from __future__ import annotations

from typing import Any

import torch

from vittle_bench.errors import ConfigError
from vittle_bench.models.prompt_profiles import FAMILY_PROFILES
from vittle_bench.tuning.data import IGNORE_INDEX, ConversationCollator, LlavaInstructionDataset, truncate_batch

CHAT_TEMPLATE = "chat_template"
PREFIX_LM = "image_tokens_then_prompt"


def layout_of(model_type: str) -> str:
    """The layout a family is trained (and evaluated) in, by its exact ``config.model_type``."""
    return PREFIX_LM if FAMILY_PROFILES.get(model_type) == PREFIX_LM else CHAT_TEMPLATE


def _text(message: dict[str, Any]) -> str:
    return " ".join(c["text"] for c in message["content"] if c.get("type") == "text")


class PrefixLMCollator:
    """Batch of single-answer items -> the processor's ``input_ids, attention_mask, token_type_ids, labels`` and
    pixels, from ``text = image tokens + prefix`` and ``suffix = answer`` (the processor adds BOS, the newline
    after the prefix and EOS after the suffix, as PaliGemma was trained)."""

    def __init__(self, processor: Any, max_length: int | None = 2048) -> None:
        self.processor, self.max_length = processor, max_length
        self.image_token = processor.image_token
        self.image_token_id = processor.tokenizer.convert_tokens_to_ids(self.image_token)

    def __call__(self, items: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        texts, suffixes = [], []
        for item in items:
            *before, answer = item["messages"]
            if answer["role"] != "assistant":
                raise ValueError("a prefix-LM example must end with the answer it learns")
            texts.append(self.image_token * len(item["images"]) + "\n".join(_text(m) for m in before))
            suffixes.append(_text(answer))
        batch = dict(self.processor(text=texts, images=[item["images"] for item in items], suffix=suffixes,
                                    return_tensors="pt", padding=True, padding_side="right"))
        if "labels" not in batch or "token_type_ids" not in batch:
            raise ValueError(f"{type(self.processor).__name__} returns no labels and token_type_ids for `suffix`")
        return truncate_batch(batch, self.max_length, self.image_token_id)


def make_collator(layout: str, processor: Any, max_length: int | None) -> ConversationCollator | PrefixLMCollator:
    return PrefixLMCollator(processor, max_length) if layout == PREFIX_LM else ConversationCollator(processor,
                                                                                                    max_length)


def check_family(model_type: str, layout: str, processor: Any, dataset: LlavaInstructionDataset) -> None:
    """Fail in one line unless the family's processor can label this data: it has what its layout needs, and the
    first row with images and the first without (when the layout keeps such rows) come out with labels."""
    name = f"{model_type} ({type(processor).__name__})"
    if layout == CHAT_TEMPLATE and not (getattr(processor, "chat_template", None)
                                        or getattr(getattr(processor, "tokenizer", None), "chat_template", None)):
        raise ConfigError(f"tune cannot label {name} conversations: it has no chat template (chat_template.jinja) "
                          "and is not a prefix-LM family whose processor takes the answer as `suffix`")
    if layout == PREFIX_LM and not getattr(processor, "image_token", None):
        raise ConfigError(f"tune cannot label {name} conversations: its processor names no image_token")
    if len(dataset) == 0:
        raise ConfigError(f"the instruction data has no rows {name} can learn from"
                          + (" (a prefix-LM family needs an image in every row)" if layout == PREFIX_LM else ""))
    collator = make_collator(layout, processor, None)
    probes = {dataset.first_index(with_images=True), dataset.first_index(with_images=False)}
    for index in sorted(i for i in probes if i is not None):
        try:
            labels = collator([dataset[index]])["labels"]
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"tune cannot label {name} conversations: {exc}") from None
        if not (labels != IGNORE_INDEX).any():
            raise ConfigError(f"tune cannot label {name} conversations: row {index} comes out with no supervised token")
