"""LLaVA-format instruction data (the llava_v1_5_mix665k JSON) for `vittle-bench tune`.

Rows look like ``{"id", "image": "coco/train2017/x.jpg" (optional; a list also works), "conversations":
[{"from": "human" | "gpt", "value": "<image>\\nWhat is ...?"}, ...]}``; rows without ``image`` are
text-only. Each conversation is rendered with the *model's own* processor chat template, so training sees
exactly the prompt format that evaluation (``models/hf.py``) uses, and the processor expands the image
placeholders as it does at inference.

Only assistant turns are supervised. Which characters belong to assistant turns is read off the template
itself: the turn starts where ``render(messages[:i], add_generation_prompt=True)`` ends and stops where
``render(messages[:i+1])`` ends (its end-of-turn marker is supervised too, so the model learns to stop).
Those character spans are mapped to tokens with the fast tokenizer's offsets, then shifted by the number
of tokens the processor's image expansion added; the shift is verified token by token, with a slower
per-prefix fallback for conversations where that check fails (e.g. images after an assistant turn).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset

from vittle_bench.images import load_image

IGNORE_INDEX = -100
IMAGE_PLACEHOLDER = "<image>"
ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant", "system": "system"}


def load_rows(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Read a LLaVA-format JSON list (or JSON Lines). Plain ``json``, not ``datasets``: mix665k mixes
    integer and string ``id`` values, which Arrow's JSON reader rejects."""
    path = Path(path)
    with open(path, encoding="utf-8") as f:
        if path.suffix == ".jsonl":
            rows = [json.loads(line) for line in f if line.strip()]
        else:
            rows = json.load(f)
    if not isinstance(rows, list) or not all(isinstance(r, dict) and "conversations" in r for r in rows):
        raise ValueError(f"{path}: expected a JSON list of objects with a 'conversations' field (LLaVA format)")
    return rows


def row_images(row: dict[str, Any]) -> list[str]:
    image = row.get("image")
    if image is None:
        return []
    return [image] if isinstance(image, str) else list(image)


def to_messages(conversations: list[dict[str, str]], n_images: int) -> list[dict[str, Any]]:
    """LLaVA turns -> chat-template messages with typed content.

    As in LLaVA's own preprocessing, ``<image>`` markers are removed from the text and the images are put
    at the start of the turn that carried them (or of the first user turn when the text has no marker),
    and leading assistant turns are dropped.
    """
    messages: list[dict[str, Any]] = []
    placed = 0
    for turn in conversations:
        role = ROLES.get(turn.get("from", ""))
        if role is None:
            raise ValueError(f"unknown conversation role {turn.get('from')!r}; expected one of {sorted(ROLES)}")
        if not messages and role == "assistant":
            continue
        text = str(turn.get("value", ""))
        k = text.count(IMAGE_PLACEHOLDER)
        if k and role != "user":
            raise ValueError(f"{IMAGE_PLACEHOLDER} in a {role} turn; images belong to user turns")
        if k:
            text = text.replace(IMAGE_PLACEHOLDER, "").strip()
        placed += k
        messages.append({"role": role, "content": [{"type": "image"}] * k + [{"type": "text", "text": text}]})
    if placed == 0 and n_images:
        first_user = next((m for m in messages if m["role"] == "user"), None)
        if first_user is None:
            raise ValueError("a row with images has no user turn")
        first_user["content"] = [{"type": "image"}] * n_images + first_user["content"]
    elif placed != n_images:
        raise ValueError(f"{placed} {IMAGE_PLACEHOLDER} markers for {n_images} images")
    if not any(m["role"] == "assistant" for m in messages):
        raise ValueError("conversation has no assistant turn to learn from")
    return messages


class LlavaInstructionDataset(Dataset):
    """Rows of a LLaVA-format file; items are ``{"id", "messages", "images"}`` (PIL, RGB).

    With ``one_answer_per_item`` (prefix-LM families, ``families.py``) an item is a row's conversation up to one of
    its answers, every answer its own item, and rows without images are left out (``skipped`` counts them)."""

    def __init__(self, data: str | os.PathLike | list[dict[str, Any]], image_folder: str | os.PathLike | None = None,
                 one_answer_per_item: bool = False):
        self.rows = data if isinstance(data, list) else load_rows(data)
        default = Path(data).parent if not isinstance(data, list) else Path.cwd()
        self.image_folder = Path(image_folder) if image_folder is not None else default
        self.one_answer_per_item = one_answer_per_item
        # (row, answers kept): the whole conversation, or its first k assistant turns
        self.index: list[tuple[int, int | None]] = []
        for r, row in enumerate(self.rows):
            if not one_answer_per_item:
                self.index.append((r, None))
            elif row_images(row):
                messages = to_messages(row["conversations"], len(row_images(row)))
                self.index += [(r, k + 1) for k in range(sum(m["role"] == "assistant" for m in messages))]
        self.skipped = sum(1 for row in self.rows if not row_images(row)) if one_answer_per_item else 0

    def __len__(self) -> int:
        return len(self.index)

    def missing_images(self) -> list[str]:
        """The image paths of the items' rows that are not files under ``image_folder`` (checked before training:
        one stat per image, seconds for the 665k rows of llava_v1_5_mix665k)."""
        rows = dict.fromkeys(r for r, _ in self.index)
        return [rel for r in rows for rel in row_images(self.rows[r]) if not (self.image_folder / rel).is_file()]

    def first_index(self, with_images: bool) -> int | None:
        """The first item whose row has (or has no) images, or None."""
        return next((i for i, (r, _) in enumerate(self.index) if bool(row_images(self.rows[r])) == with_images), None)

    def __getitem__(self, index: int) -> dict[str, Any]:
        """A row's conversation and its images, prepared as evaluation prepares them (the same pixels a tuned
        model is later asked about)."""
        r, answers = self.index[index]
        row = self.rows[r]
        images = []
        for rel in row_images(row):
            path = self.image_folder / rel
            try:
                images.append(load_image(path))
            except (OSError, ValueError) as exc:
                raise FileNotFoundError(f"row {row.get('id', r)}: cannot read image {path}: {exc}") from exc
        messages = to_messages(row["conversations"], len(images))
        if answers is not None:
            ends = [i for i, m in enumerate(messages) if m["role"] == "assistant"]
            messages = messages[: ends[answers - 1] + 1]
        return {"id": row.get("id", r), "messages": messages, "images": images}


def _count_images(messages: list[dict[str, Any]]) -> int:
    return sum(1 for m in messages for c in m["content"] if c.get("type") == "image")


class ConversationCollator:
    """Batch of dataset items -> ``input_ids, attention_mask, labels`` plus the processor's image tensors.

    The whole batch goes through the processor in one call (right padding), so model-specific image
    batching (pixel_values shapes, grid sizes) is the processor's own. ``max_length`` truncates, but never
    before a row's last image token (``processor.image_token_id``) or its first answer token.
    """

    def __init__(self, processor: Any, max_length: int | None = 2048) -> None:
        self.processor = processor
        self.tokenizer = getattr(processor, "tokenizer", processor)
        if not getattr(self.tokenizer, "is_fast", False):
            raise ValueError("ConversationCollator needs a fast tokenizer (character offsets locate assistant turns)")
        self.max_length = max_length
        self.image_token_id = getattr(processor, "image_token_id", None)
        if self.image_token_id is None and getattr(processor, "image_token", None):
            self.image_token_id = self.tokenizer.convert_tokens_to_ids(processor.image_token)

    def render(self, messages: list[dict[str, Any]], add_generation_prompt: bool = False) -> str:
        return self.processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=add_generation_prompt)

    def assistant_spans(self, messages: list[dict[str, Any]], text: str) -> list[tuple[int, int, int, int]]:
        """(start_char, end_char, images_before_start, images_before_end) of each assistant turn."""
        spans = []
        for i, message in enumerate(messages):
            if message["role"] != "assistant":
                continue
            head = self.render(messages[:i], add_generation_prompt=True)
            upto = self.render(messages[: i + 1])
            if not (text.startswith(head) and text.startswith(upto) and len(head) <= len(upto)):
                raise ValueError("the chat template does not render a conversation's prefixes as prefixes of the "
                                 "whole conversation; cannot locate assistant turns")
            spans.append((len(head), len(upto), _count_images(messages[:i]), _count_images(messages[: i + 1])))
        return spans

    def _add_special_tokens(self, text: str) -> bool:
        # as transformers' processor.apply_chat_template: a template that renders BOS itself gets no second one
        bos = getattr(self.tokenizer, "bos_token", None)
        return not (bos and text.startswith(bos))

    def _process(self, texts: list[str], images: list[Any], add_special: bool, **kwargs: Any) -> Any:
        return self.processor(text=texts, images=images or None, return_tensors="pt",
                              add_special_tokens=add_special, **kwargs)

    def _row_labels(self, text: str, spans: list[tuple[int, int, int, int]], ids: list[int], images: list[Any],
                    add_special: bool) -> list[int]:
        plain = self.tokenizer(text, add_special_tokens=add_special, return_offsets_mapping=True)
        q_ids, offsets = plain["input_ids"], plain["offset_mapping"]
        q_sup = [any(s <= a < e for s, e, _, _ in spans) and b > a for a, b in offsets]
        labels = [IGNORE_INDEX] * len(ids)
        if not any(q_sup):
            return labels
        first, delta = q_sup.index(True), len(ids) - len(q_ids)
        # Fast path: the processor only expands image placeholders, so if every image sits before the first
        # assistant token the supervised tail is the plain tokenization shifted by `delta`, token for token.
        if delta >= 0 and ids[first + delta:] == q_ids[first:]:
            for j in range(first, len(q_ids)):
                if q_sup[j]:
                    labels[j + delta] = q_ids[j]
            return labels
        # Fallback: ask the processor where each turn starts and ends (one call per boundary).
        for start, end, n_start, n_end in spans:
            bounds = []
            for chars, n in ((start, n_start), (end, n_end)):
                prefix = self._process([text[:chars]], images[:n], add_special)["input_ids"][0].tolist()
                if ids[: len(prefix)] != prefix:
                    raise ValueError("cannot align assistant turns with the processor's tokens for this template")
                bounds.append(len(prefix))
            labels[bounds[0]: bounds[1]] = ids[bounds[0]: bounds[1]]
        return labels

    def __call__(self, items: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        texts = [self.render(item["messages"]) for item in items]
        images = [image for item in items for image in item["images"]]
        add_special = self._add_special_tokens(texts[0])
        batch = dict(self._process(texts, images, add_special, padding=True, padding_side="right"))
        input_ids, attention = batch["input_ids"], batch["attention_mask"]
        labels = torch.full_like(input_ids, IGNORE_INDEX)
        for r, (item, text) in enumerate(zip(items, texts)):
            n = int(attention[r].sum())
            row = self._row_labels(text, self.assistant_spans(item["messages"], text), input_ids[r, :n].tolist(),
                                   item["images"], add_special)
            labels[r, :n] = torch.tensor(row)
        batch["labels"] = labels
        return truncate_batch(batch, self.max_length, self.image_token_id)


def truncate_batch(batch: dict[str, Any], max_length: int | None, image_token_id: int | None) -> dict[str, Any]:
    """Cut a right-padded batch to ``max_length`` columns, but never into a row's image tokens (the model requires
    every image's full expansion) and never before a row's first answer token."""
    input_ids, labels = batch["input_ids"], batch["labels"]
    if not max_length or input_ids.shape[1] <= max_length:
        return batch
    keep = max_length
    for r in range(input_ids.shape[0]):
        answers = (labels[r] != IGNORE_INDEX).nonzero()
        image_positions = (input_ids[r] == image_token_id).nonzero() if image_token_id is not None else answers[:0]
        if len(answers):
            keep = max(keep, int(answers[0]) + 1)
        if len(image_positions):
            keep = max(keep, int(image_positions[-1]) + 1)
    for key in ("input_ids", "attention_mask", "labels", "token_type_ids", "mm_token_type_ids"):
        if key in batch:
            batch[key] = batch[key][:, :keep]
    return batch
