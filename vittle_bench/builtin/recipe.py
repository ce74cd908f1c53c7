"""The training recipe of the built-in tiny LLaVA: its settings (step budgets, not seconds, so the same seed
reproduces the same weights) and the learning-rate schedule both stages share. Why each part is there, and
what it measured: docs/builtin-model.md."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import torch
from transformers import LlavaProcessor

from vittle_bench.builtin.scenes import CATEGORIES

TRAIN_SEED_OFFSET = 1_000  # scene seeds >= this are training scenes; the evaluation world uses seed 0
CATEGORY_WORDS = tuple(tuple(name.split()) for name in CATEGORIES)  # (colour, shape) of each category


@dataclass
class Recipe:
    seed: int = 0
    stage1_steps: int = 1000
    stage1_batch: int = 64
    stage1_lr: float = 2e-3
    stage2_steps: int = 2000  # mixed multi-turn steps: multiple choice is the last skill to converge
    stage2_batch: int = 32
    turns: int = 6
    lr: float = 1e-3
    vision_lr_mult: float = 0.3
    warmup: int = 50
    embedding_std: float = 0.15
    text_layers: int = 4  # 2 layers learn counting and captions but not the two-hop "colour -> option letter"
    probe_every: int = 100
    # Alignment: projected image tokens regress onto the word embeddings of their object's colour and shape
    # (stage 1 and stage 2), so that the decoder can match an image token against a question word.
    align_weight: float = 1.0
    # Grounding: head 0 of the first decoder layer attends from a question word to the image patches of the
    # object that decides the answer (to <s> when none does), supervised: presence questions from their last
    # attribute word ("ring" in "Is there a ring ..."), colour questions from the shape asked about,
    # position questions from the direction word. Stage 2 opens with `grounding_steps` single-turn presence
    # steps. Alignment and grounding together make the decoder match both attributes, colour and shape.
    grounding_weight: float = 1.0
    grounding_layer: int = 0
    grounding_steps: int = 600
    # Extremes: the patches of the object furthest left / right / up / down also carry the embedding of that
    # direction's word ("left", "right", "highest", "lowest"), and stage 1 classifies them per patch; so the
    # tower does the comparison and the decoder only matches words against image tokens, as for POPE.
    extreme_weight: float = 1.0
    # Option grounding: head 0 of layer `option_grounding_layer` attends from each option's last word to the
    # patches of the object the option names (<s> when absent), so an option token learns where its object is.
    option_grounding_weight: float = 1.0
    option_grounding_layer: int = 1
    # Pointer: head 0 of the last layer attends from the answer position to the correct option's last word:
    # the second hop of an MC answer, from what the image showed back to an option (and, via binding, a letter).
    pointer_weight: float = 1.0
    # Binding: head 1 of the first layer attends from each option's last word to the option's letter, so
    # that what the pointer reads there carries the letter to answer with.
    binding_weight: float = 1.0
    turn_weights: dict[str, float] = field(default_factory=lambda: {
        "pope": 0.35, "colour_presence": 0.05, "shape_presence": 0.15, "multiple_choice": 0.3, "describe": 0.15})

    def __post_init__(self) -> None:
        for name in ("grounding_layer", "option_grounding_layer"):
            if not 0 <= getattr(self, name) < self.text_layers:
                raise ValueError(f"{name} = {getattr(self, name)} is not a layer of a {self.text_layers}-layer decoder")


def cosine_lr(base: float, step: int, total: int, warmup: int) -> float:
    if step < warmup:
        return base * (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return base * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * progress)))


def pixel_values(processor: LlavaProcessor, images: list) -> torch.Tensor:
    return processor.image_processor(images, return_tensors="pt")["pixel_values"]


def recipe_dict(recipe: Recipe) -> dict:
    return asdict(recipe)
