"""The one training recipe of the built-in tiny LLaVA (and of its Vittle twins, which differ only by the
bottleneck): stage 1 pre-trains the vision tower on dense scene labels, stage 2 trains the whole LLaVA on
mixed multi-turn instructions about each scene.

Why two stages: trained from scratch in one stage, a model this small learns the language prior (one answer
to every POPE question) long before it learns to look; dense per-patch labels give the tower features worth
attending to. Budgets are step counts, not seconds, so the same seed reproduces the same weights.
"""

from __future__ import annotations

import math
import random
import time
from dataclasses import asdict, dataclass, field
from typing import Callable

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from transformers import LlavaForConditionalGeneration, LlavaProcessor

from vittle_bench.data.builtin import questions as qa
from vittle_bench.data.builtin.scenes import CATEGORIES, MAX_OBJECTS, draw_scene, label_map, scene_rng
from vittle_bench.models.tiny_llava import IMAGE_TOKENS, PATCH_SIZE
from vittle_bench.tasks.closed_form import ClosedFormAdapter
from vittle_bench.tasks.pope import PopeAdapter
from vittle_bench.schema import Sample

TRAIN_SEED_OFFSET = 1_000  # scene seeds >= this are training scenes; the evaluation world uses seed 0


@dataclass
class Recipe:
    seed: int = 0
    stage1_steps: int = 1000
    stage1_batch: int = 64
    stage1_lr: float = 2e-3
    stage2_steps: int = 1400
    stage2_batch: int = 32
    turns: int = 6
    lr: float = 1e-3
    vision_lr_mult: float = 0.3
    warmup: int = 50
    embedding_std: float = 0.15
    text_layers: int = 4  # 2 layers learn counting and captions but not the two-hop "colour -> option letter"
    probe_every: int = 200
    turn_weights: dict[str, float] = field(default_factory=lambda: {
        "pope": 0.35, "colour_presence": 0.05, "shape_presence": 0.15, "multiple_choice": 0.3, "describe": 0.15})


def cosine_lr(base: float, step: int, total: int, warmup: int) -> float:
    if step < warmup:
        return base * (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return base * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * progress)))


def _pixels(processor: LlavaProcessor, images: list) -> torch.Tensor:
    return processor.image_processor(images, return_tensors="pt")["pixel_values"]


# ----------------------------------------------------------------------------- stage 1
class VisionHeads(nn.Module):
    def __init__(self, hidden: int) -> None:
        super().__init__()
        n = len(CATEGORIES)
        self.patch = nn.Linear(hidden, n + 1)
        self.presence = nn.Linear(hidden, n)
        self.presence_per_token = nn.Linear(hidden, n)
        self.count = nn.Linear(hidden, MAX_OBJECTS)


def _patch_labels(scene) -> np.ndarray:
    """Majority non-background category of each patch (0 when objects cover < 12 % of it)."""
    labels = label_map(scene)
    g = labels.shape[0] // PATCH_SIZE
    patches = labels.reshape(g, PATCH_SIZE, g, PATCH_SIZE).transpose(0, 2, 1, 3).reshape(g * g, -1)
    counts = np.stack([(patches == c).sum(1) for c in range(1, len(CATEGORIES) + 1)], 1)
    return np.where(counts.max(1) >= 0.12 * patches.shape[1], counts.argmax(1) + 1, 0)


def pretrain_vision(model: LlavaForConditionalGeneration, processor: LlavaProcessor, recipe: Recipe,
                    log: Callable[[str], None]) -> dict:
    tower = model.model.vision_tower
    heads = VisionHeads(tower.config.hidden_size)
    params = list(tower.parameters()) + list(heads.parameters())
    optimizer = torch.optim.AdamW(params, lr=recipe.stage1_lr, weight_decay=0.01, betas=(0.9, 0.98))
    start, index = time.time(), 0
    tower.train()
    for step in range(recipe.stage1_steps):
        scenes = [draw_scene(scene_rng(recipe.seed + TRAIN_SEED_OFFSET, index + i)) for i in range(recipe.stage1_batch)]
        index += recipe.stage1_batch
        hidden = tower(_pixels(processor, [s.image for s in scenes]), output_hidden_states=True).hidden_states[-1][:, 1:]
        patch = torch.from_numpy(np.stack([_patch_labels(s) for s in scenes]))
        presence = torch.zeros(len(scenes), len(CATEGORIES))
        for i, s in enumerate(scenes):
            for o in s.objects:
                presence[i, CATEGORIES.index(o.name)] = 1
        count = torch.tensor([len(s.objects) - 1 for s in scenes])
        pooled = hidden.mean(1)
        loss = (F.cross_entropy(heads.patch(hidden).flatten(0, 1), patch.flatten())
                + 3 * F.binary_cross_entropy_with_logits(heads.presence(pooled), presence)
                + 3 * F.binary_cross_entropy_with_logits(heads.presence_per_token(hidden),
                                                         presence[:, None].expand(-1, hidden.shape[1], -1))
                + 0.5 * F.cross_entropy(heads.count(pooled), count))
        for group in optimizer.param_groups:
            group["lr"] = cosine_lr(recipe.stage1_lr, step, recipe.stage1_steps, 30)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        if step % 100 == 0 or step == recipe.stage1_steps - 1:
            log(f"stage1 step {step} loss {loss.item():.4f} ({time.time() - start:.0f}s)")
    return {"steps": recipe.stage1_steps, "wall_s": round(time.time() - start, 1), "final_loss": round(loss.item(), 4)}


# ----------------------------------------------------------------------------- stage 2
def training_turns(objects, rng: random.Random, recipe: Recipe) -> list[tuple[str, str]]:
    """(prompt, answer) turns for one scene, each prompt built by the same adapter the evaluation uses."""
    kinds, weights = zip(*recipe.turn_weights.items())
    pope, mc = PopeAdapter(), ClosedFormAdapter()
    turns, seen = [], set()
    for _ in range(8 * recipe.turns):
        if len(turns) == recipe.turns:
            break
        kind = rng.choices(kinds, weights)[0]
        if kind == "multiple_choice":
            q = qa.multiple_choice_question(objects, rng)
            prompt = mc.build_request(Sample("train", "", q.question, choices=q.choices)).prompt
        elif kind == "describe":
            q = qa.open_question(objects)
            prompt = q.question
        else:
            builder = {"pope": qa.pope_style_question, "colour_presence": qa.colour_presence_question,
                       "shape_presence": qa.shape_presence_question}[kind]
            q = builder(objects, rng)
            prompt = pope.build_request(Sample("train", "", q.question)).prompt
        if prompt not in seen:
            seen.add(prompt)
            turns.append((prompt, q.answer))
    return turns


class ConversationEncoder:
    """Token ids and labels of a multi-turn conversation, identical to what the chat template + processor give
    for its first turn (checked in `check_matches_processor`); only answers and their </s> are supervised."""

    def __init__(self, processor: LlavaProcessor) -> None:
        self.processor = processor
        self.tok = processor.tokenizer
        self.image_id = self.tok.convert_tokens_to_ids(processor.image_token)

    def _ids(self, text: str) -> list[int]:
        return self.tok(text, add_special_tokens=False)["input_ids"]

    def encode(self, turns: list[tuple[str, str]]) -> tuple[list[int], list[int]]:
        ids, labels = [self.tok.bos_token_id], [-100]
        for i, (prompt, answer) in enumerate(turns):
            head = "USER: " + ("<image>\n" if i == 0 else "") + prompt + " ASSISTANT:"
            head_ids = [t for x in self._ids(head) for t in ([x] * IMAGE_TOKENS if x == self.image_id else [x])]
            answer_ids = self._ids(" " + answer) + [self.tok.eos_token_id]
            ids += head_ids + answer_ids
            labels += [-100] * len(head_ids) + answer_ids
        return ids, labels

    def check_matches_processor(self, image, prompt: str) -> None:
        messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": prompt}]}]
        text = self.processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        expected = self.processor(text=[text], images=[image], return_tensors="pt")["input_ids"][0].tolist()
        ids, _ = self.encode([(prompt, "x")])
        if ids[: len(expected)] != expected:
            raise AssertionError("training sequences do not match the chat template's tokenization")


def _stage2_batch(encoder: ConversationEncoder, processor: LlavaProcessor, rng: random.Random, recipe: Recipe,
                  first_index: int) -> dict[str, torch.Tensor]:
    scenes = [draw_scene(scene_rng(recipe.seed + 2 * TRAIN_SEED_OFFSET, first_index + i)) for i in range(recipe.stage2_batch)]
    encoded = [encoder.encode(training_turns(s.objects, rng, recipe)) for s in scenes]
    length = max(len(ids) for ids, _ in encoded)
    pad = encoder.tok.pad_token_id
    input_ids = torch.full((len(encoded), length), pad)
    labels = torch.full((len(encoded), length), -100)
    attention = torch.zeros((len(encoded), length), dtype=torch.long)
    for i, (ids, lab) in enumerate(encoded):
        input_ids[i, : len(ids)] = torch.tensor(ids)
        labels[i, : len(ids)] = torch.tensor(lab)
        attention[i, : len(ids)] = 1
    return {"input_ids": input_ids, "attention_mask": attention, "labels": labels,
            "pixel_values": _pixels(processor, [s.image for s in scenes])}


def train_stage2(model: LlavaForConditionalGeneration, processor: LlavaProcessor, recipe: Recipe,
                 log: Callable[[str], None], regularizer: Callable[[float], torch.Tensor] | None = None,
                 probe: Callable[[], dict] | None = None) -> dict:
    """Stage 2. `regularizer(progress)` (Vittle's KL term) is added to the loss after each forward;
    `probe()` (a cheap held-out check) is logged every `recipe.probe_every` steps."""
    encoder = ConversationEncoder(processor)
    encoder.check_matches_processor(draw_scene(scene_rng(0, 0)).image, PopeAdapter().build_request(
        Sample("t", "", "Is there a red circle in the image?")).prompt)
    vision_params = list(model.model.vision_tower.parameters())
    vision_ids = {id(p) for p in vision_params}
    other = [p for p in model.parameters() if id(p) not in vision_ids]
    groups = [{"params": vision_params, "mult": recipe.vision_lr_mult}, {"params": other, "mult": 1.0}]
    optimizer = torch.optim.AdamW(groups, lr=recipe.lr, weight_decay=0.01, betas=(0.9, 0.98))
    rng = random.Random(recipe.seed + 7)
    start, history = time.time(), []
    model.train()
    for step in range(recipe.stage2_steps):
        batch = _stage2_batch(encoder, processor, rng, recipe, step * recipe.stage2_batch)
        lr = cosine_lr(recipe.lr, step, recipe.stage2_steps, recipe.warmup)
        for group in optimizer.param_groups:
            group["lr"] = lr * group["mult"]
        loss = model(**batch).loss
        ce = loss.item()
        if regularizer is not None:
            loss = loss + regularizer(step / max(1, recipe.stage2_steps - 1))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_([p for g in groups for p in g["params"]], 1.0)
        optimizer.step()
        history.append(ce)
        if probe is not None and step and step % recipe.probe_every == 0:
            log(f"stage2 step {step} probe {probe()}")
        if step % 100 == 0 or step == recipe.stage2_steps - 1:
            log(f"stage2 step {step} ce {np.mean(history[-50:]):.4f} loss {loss.item():.4f} lr {lr:.2e} "
                f"({time.time() - start:.0f}s)")
    model.eval()
    return {"steps": recipe.stage2_steps, "wall_s": round(time.time() - start, 1),
            "final_ce": round(float(np.mean(history[-50:])), 4)}


def recipe_dict(recipe: Recipe) -> dict:
    return asdict(recipe)
