"""Stage 1 of the built-in recipe: pre-train the vision tower on dense scene labels (per-patch category,
presence, count, the objects furthest in each direction) and align the projector's image tokens with the words
that name them, so the decoder can match an image token against a question word."""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from transformers import LlavaForConditionalGeneration, LlavaProcessor

from vittle_bench.builtin import questions as qa
from vittle_bench.builtin.recipe import CATEGORY_WORDS, TRAIN_SEED_OFFSET, Recipe, cosine_lr, pixel_values
from vittle_bench.builtin.scenes import CATEGORIES, MAX_OBJECTS, draw_scene, label_map, scene_rng
from vittle_bench.builtin.tiny_llava import PATCH_SIZE


class VisionHeads(nn.Module):
    def __init__(self, hidden: int) -> None:
        super().__init__()
        n = len(CATEGORIES)
        self.patch = nn.Linear(hidden, n + 1)
        self.presence = nn.Linear(hidden, n)
        self.presence_per_token = nn.Linear(hidden, n)
        self.count = nn.Linear(hidden, MAX_OBJECTS)
        self.extreme = nn.Linear(hidden, len(EXTREME_DIRECTIONS))


def scene_patch_labels(scene) -> np.ndarray:
    """Majority non-background category of each patch (0 when objects cover < 12 % of it)."""
    labels = label_map(scene)
    g = labels.shape[0] // PATCH_SIZE
    patches = labels.reshape(g, PATCH_SIZE, g, PATCH_SIZE).transpose(0, 2, 1, 3).reshape(g * g, -1)
    counts = np.stack([(patches == c).sum(1) for c in range(1, len(CATEGORIES) + 1)], 1)
    return np.where(counts.max(1) >= 0.12 * patches.shape[1], counts.argmax(1) + 1, 0)


EXTREME_DIRECTIONS = tuple(qa.POSITION_WORDS)  # left, right, top, bottom


def extreme_labels(scene, patch_labels: np.ndarray) -> np.ndarray:
    """(patches, directions): 1 on the patches of the object furthest in each direction, when that object is
    unambiguous (the position questions' margin) and the only one of its category in the scene."""
    names = [o.name for o in scene.objects]
    flags = np.zeros((len(patch_labels), len(EXTREME_DIRECTIONS)), dtype=np.float32)
    for d, direction in enumerate(EXTREME_DIRECTIONS):
        extreme = qa.extreme_object(scene.objects, direction)
        if extreme is not None and names.count(extreme.name) == 1:
            flags[:, d] = patch_labels == CATEGORIES.index(extreme.name) + 1
    return flags


def _input_embedding_weight(model: LlavaForConditionalGeneration) -> torch.Tensor:
    weight = model.get_input_embeddings().weight
    assert isinstance(weight, torch.Tensor)
    return weight


def direction_word_targets(model: LlavaForConditionalGeneration, processor: LlavaProcessor) -> torch.Tensor:
    """Row d: the decoder's input embedding of the position questions' word for direction d ("left", ...)."""
    ids = processor.tokenizer.convert_tokens_to_ids([qa.POSITION_WORDS[d].split()[-1] for d in EXTREME_DIRECTIONS])
    return _input_embedding_weight(model)[ids]


def word_targets(model: LlavaForConditionalGeneration, processor: LlavaProcessor) -> torch.Tensor:
    """Row c + 1: the sum of the decoder's input embeddings of category c's colour and shape words; row 0
    (background): zeros. Projected image tokens are pulled towards these rows, so an image token showing a
    red ring looks to the decoder like the words "red ring" (LLaVA's alignment stage, done with labels)."""
    embeddings = _input_embedding_weight(model)
    ids = processor.tokenizer.convert_tokens_to_ids
    rows = [embeddings[ids(colour)] + embeddings[ids(shape)] for colour, shape in CATEGORY_WORDS]
    return torch.cat([torch.zeros_like(rows[0])[None], torch.stack(rows)])


def alignment_extras(model: LlavaForConditionalGeneration, processor: LlavaProcessor, recipe: Recipe,
                     extremes: torch.Tensor) -> torch.Tensor | None:
    """What the recipe adds to the word targets: on the extreme objects' patches, their directions' words."""
    if not recipe.extreme_weight:
        return None
    return (recipe.extreme_weight * extremes @ direction_word_targets(model, processor)).detach()


def alignment_loss(projected: torch.Tensor, patch_labels: torch.Tensor, targets: torch.Tensor,
                   extra: torch.Tensor | None = None) -> torch.Tensor:
    """Squared error of the projected image tokens to their patch's word target (plus `extra`, per patch),
    relative to the word targets' size."""
    wanted = targets[patch_labels]
    if extra is not None:
        wanted = wanted + extra
    return (projected - wanted).pow(2).mean() / targets[1:].pow(2).mean()


def pretrain_vision(model: LlavaForConditionalGeneration, processor: LlavaProcessor, recipe: Recipe,
                    log: Callable[[str], None]) -> dict:
    tower, projector = model.model.vision_tower, model.model.multi_modal_projector
    heads = VisionHeads(tower.config.hidden_size)
    params = list(tower.parameters()) + list(heads.parameters())
    if recipe.align_weight:
        params += list(projector.parameters())
        targets = word_targets(model, processor).detach()
    optimizer = torch.optim.AdamW(params, lr=recipe.stage1_lr, weight_decay=0.01, betas=(0.9, 0.98))
    start, index = time.time(), 0
    tower.train()
    for step in range(recipe.stage1_steps):
        scenes = [draw_scene(scene_rng(recipe.seed + TRAIN_SEED_OFFSET, index + i)) for i in range(recipe.stage1_batch)]
        index += recipe.stage1_batch
        pixels = pixel_values(processor, [s.image for s in scenes])
        hidden = tower(pixels, output_hidden_states=True).hidden_states[-1][:, 1:]
        patch = torch.from_numpy(np.stack([scene_patch_labels(s) for s in scenes]))
        extremes = torch.from_numpy(np.stack([extreme_labels(s, p) for s, p in zip(scenes, patch.numpy())]))
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
        if recipe.extreme_weight:
            loss = loss + F.binary_cross_entropy_with_logits(heads.extreme(hidden), extremes)
        if recipe.align_weight:
            loss = loss + recipe.align_weight * alignment_loss(
                projector(hidden), patch, targets, alignment_extras(model, processor, recipe, extremes))
        for group in optimizer.param_groups:
            group["lr"] = cosine_lr(recipe.stage1_lr, step, recipe.stage1_steps, 30)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        if step % 100 == 0 or step == recipe.stage1_steps - 1:
            log(f"stage1 step {step} loss {loss.item():.4f} ({time.time() - start:.0f}s)")
    return {"steps": recipe.stage1_steps, "wall_s": round(time.time() - start, 1), "final_loss": round(loss.item(), 4)}


