"""Stage 2 of the built-in recipe: train the whole LLaVA on single presence questions with supervised
grounding, then on mixed multi-turn instructions about each scene, with supervised attention heads that carry a
multiple-choice answer from the image to an option and its letter."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from transformers import LlavaForConditionalGeneration, LlavaProcessor

from vittle_bench.adapters.closed_form import ClosedFormAdapter
from vittle_bench.adapters.pope import PopeAdapter
from vittle_bench.builtin import questions as qa
from vittle_bench.builtin.recipe import CATEGORY_WORDS, TRAIN_SEED_OFFSET, Recipe, cosine_lr, pixel_values
from vittle_bench.builtin.scenes import draw_scene, scene_rng
from vittle_bench.builtin.stage1 import (
    alignment_extras,
    alignment_loss,
    extreme_labels,
    scene_patch_labels,
    word_targets,
)
from vittle_bench.builtin.tiny_llava import IMAGE_TOKENS
from vittle_bench.schema import Sample

PRESENCE_BUILDERS: dict[str, Callable[..., qa.Question]] = {
    "pope": qa.pope_style_question, "colour_presence": qa.colour_presence_question,
    "shape_presence": qa.shape_presence_question}


@dataclass(frozen=True)
class Turn:
    """One training turn: the prompt as the evaluation adapter writes it, the answer, and the question's
    training-only attention targets (`choices` locate the options in the prompt)."""

    prompt: str
    answer: str
    grounding: qa.Grounding | None = None
    choices: tuple[str, ...] = ()
    option_groundings: tuple[qa.Grounding, ...] = ()


def training_turns(objects, rng: random.Random, recipe: Recipe, presence_only: bool = False) -> list[Turn]:
    """Turns for one scene, each prompt built by the same adapter the evaluation uses.
    `presence_only`: one yes/no presence turn (the grounding warm-up)."""
    weights_by_kind = recipe.turn_weights
    if presence_only:
        weights_by_kind = {k: w for k, w in weights_by_kind.items() if k in PRESENCE_BUILDERS}
    kinds, weights = zip(*weights_by_kind.items())
    wanted = 1 if presence_only else recipe.turns
    pope, mc = PopeAdapter(), ClosedFormAdapter()
    turns: list[Turn] = []
    seen: set[str] = set()
    for _ in range(8 * wanted):
        if len(turns) == wanted:
            break
        kind = rng.choices(kinds, weights)[0]
        if kind == "multiple_choice":
            q = qa.multiple_choice_question(objects, rng)
            prompt = mc.build_request(Sample("train", "", q.question, choices=q.choices)).prompt
        elif kind == "describe":
            q = qa.open_question(objects)
            prompt = q.question
        else:
            q = PRESENCE_BUILDERS[kind](objects, rng)
            prompt = pope.build_request(Sample("train", "", q.question)).prompt
        if prompt not in seen:
            seen.add(prompt)
            turns.append(Turn(prompt, q.answer, q.grounding, q.choices, q.option_groundings))
    return turns


@dataclass
class Encoded:
    """A conversation's token ids and labels, with the sequence positions its attention targets refer to."""

    ids: list[int]
    labels: list[int]
    grounded: list[tuple[int, qa.Grounding]]  # (question word, object)
    options: list[tuple[int, qa.Grounding]]  # (an option's last word, the object it names)
    pointers: list[tuple[int, int, int]]  # (answer position, first and one-past-last target token)
    bindings: list[tuple[int, int, int]]  # (an option's last word, first and one-past-last token of its letter)


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
        """Token ids and labels of (prompt, answer) turns."""
        encoded = self.encode_turns([Turn(prompt, answer) for prompt, answer in turns])
        return encoded.ids, encoded.labels

    def _option_span(self, head_ids: list[int], letter: str, choice: str) -> tuple[int, int]:
        """Where the option line "<letter>. <choice>" lies in a turn's head."""
        pattern = self._ids(f"{letter}. {choice}")
        for start in range(len(head_ids) - len(pattern) + 1):
            if head_ids[start: start + len(pattern)] == pattern:
                return start, start + len(pattern)
        raise ValueError(f"option {letter}. {choice} is not in the prompt")

    def encode_turns(self, turns: list[Turn]) -> Encoded:
        out = Encoded([self.tok.bos_token_id], [-100], [], [], [], [])
        for i, turn in enumerate(turns):
            head = "USER: " + ("<image>\n" if i == 0 else "") + turn.prompt + " ASSISTANT:"
            head_ids = [t for x in self._ids(head) for t in ([x] * IMAGE_TOKENS if x == self.image_id else [x])]
            answer_ids = self._ids(" " + turn.answer) + [self.tok.eos_token_id]
            offset = len(out.ids)
            if turn.grounding is not None:
                word = self.tok.convert_tokens_to_ids(turn.grounding.word)
                out.grounded.append((offset + head_ids.index(word), turn.grounding))
            if turn.choices:
                spans = [self._option_span(head_ids, letter, choice)
                         for letter, choice in zip(qa.LETTERS, turn.choices)]
                right = spans[qa.LETTERS.index(turn.answer)][1] - 1 + offset
                out.pointers.append((offset + len(head_ids) - 1, right, right + 1))
                out.bindings += [(offset + end - 1, offset + start, offset + start + 1) for start, end in spans]
                out.options += [(offset + end - 1, g) for (_, end), g in zip(spans, turn.option_groundings)]
            out.ids += head_ids + answer_ids
            out.labels += [-100] * len(head_ids) + answer_ids
        return out

    def check_matches_processor(self, image, prompt: str) -> None:
        messages: list[dict[str, Any]] = [
            {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": prompt}]}]
        text = self.processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        expected = self.processor(text=[text], images=[image], return_tensors="pt")["input_ids"][0].tolist()
        ids, _ = self.encode([(prompt, "x")])
        if ids[: len(expected)] != expected:
            raise AssertionError("training sequences do not match the chat template's tokenization")


def _matches(category: int, grounding: qa.Grounding) -> bool:
    if category == 0:
        return False
    colour, shape = CATEGORY_WORDS[category - 1]
    return grounding.colour in (None, colour) and grounding.shape in (None, shape)


def grounding_targets(input_ids: torch.Tensor, image_id: int, patch_labels: np.ndarray,
                      grounded: list[list[tuple[int, qa.Grounding]]],
                      ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None:
    """(rows, positions, target masks over the sequence): the image patches of the object the grounding names,
    or <s> (position 0, the usual attention sink) when no patch does."""
    targets = []
    for row, turns in enumerate(grounded):
        image_positions = (input_ids[row] == image_id).nonzero().flatten()
        for position, grounding in turns:
            hits = torch.tensor([_matches(c, grounding) for c in patch_labels[row].tolist()])
            mask = torch.zeros(input_ids.shape[1], dtype=torch.bool)
            if hits.any():
                mask[image_positions[hits]] = True
            else:
                mask[0] = True
            targets.append((row, position, mask))
    return _stacked(targets)


def pointer_targets(length: int, pointers: list[list[tuple[int, int, int]]],
                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None:
    """(rows, query positions, masks over the sequence) from (query, first, one-past-last target) triples."""
    targets = []
    for row, turns in enumerate(pointers):
        for position, start, end in turns:
            mask = torch.zeros(length, dtype=torch.bool)
            mask[start:end] = True
            targets.append((row, position, mask))
    return _stacked(targets)


def _stacked(targets: list[tuple[int, int, torch.Tensor]]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None:
    """(row, query position, mask) triples as three batched tensors; None when there are none."""
    if not targets:
        return None
    rows, positions, masks = zip(*targets)
    return torch.tensor(rows), torch.tensor(positions), torch.stack(masks)


def grounding_loss(attentions: torch.Tensor, targets: tuple[torch.Tensor, torch.Tensor, torch.Tensor]) -> torch.Tensor:
    """-log of the attention mass (one head, batch x query x key) that lands on each target set."""
    rows, positions, masks = targets
    return -torch.log((attentions[rows, positions] * masks).sum(-1) + 1e-6).mean()


def attention_losses(recipe: Recipe) -> dict[str, tuple[int, int, float]]:
    """The supervised attention losses the recipe turns on: name -> (decoder layer, head, weight)."""
    losses = {"grounding": (recipe.grounding_layer, 0, recipe.grounding_weight),
              "options": (recipe.option_grounding_layer, 0, recipe.option_grounding_weight),
              "pointer": (recipe.text_layers - 1, 0, recipe.pointer_weight),
              "binding": (0, 1, recipe.binding_weight)}
    return {name: spec for name, spec in losses.items() if spec[2]}


def _stage2_batch(encoder: ConversationEncoder, processor: LlavaProcessor, rng: random.Random, recipe: Recipe,
                  first_index: int, presence_only: bool = False) -> dict:
    scenes = [draw_scene(scene_rng(recipe.seed + 2 * TRAIN_SEED_OFFSET, first_index + i))
              for i in range(recipe.stage2_batch)]
    encoded = [encoder.encode_turns(training_turns(s.objects, rng, recipe, presence_only)) for s in scenes]
    length = max(len(e.ids) for e in encoded)
    pad = encoder.tok.pad_token_id
    input_ids = torch.full((len(encoded), length), pad)
    labels = torch.full((len(encoded), length), -100)
    attention = torch.zeros((len(encoded), length), dtype=torch.long)
    for i, e in enumerate(encoded):
        input_ids[i, : len(e.ids)] = torch.tensor(e.ids)
        labels[i, : len(e.ids)] = torch.tensor(e.labels)
        attention[i, : len(e.ids)] = 1
    batch: dict[str, Any] = {"input_ids": input_ids, "attention_mask": attention, "labels": labels,
                             "pixel_values": pixel_values(processor, [s.image for s in scenes])}
    patch_labels = np.stack([scene_patch_labels(s) for s in scenes])
    targets = {"grounding": lambda: grounding_targets(input_ids, encoder.image_id, patch_labels,
                                                      [e.grounded for e in encoded]),
               "options": lambda: grounding_targets(input_ids, encoder.image_id, patch_labels,
                                                    [e.options for e in encoded]),
               "pointer": lambda: pointer_targets(length, [e.pointers for e in encoded]),
               "binding": lambda: pointer_targets(length, [e.bindings for e in encoded])}
    batch["attention_targets"] = {name: (*spec, found) for name, spec in attention_losses(recipe).items()
                                  if (found := targets[name]()) is not None}
    if recipe.align_weight:
        batch["patch_labels"] = torch.from_numpy(patch_labels)
        batch["extremes"] = torch.from_numpy(np.stack([extreme_labels(s, p) for s, p in zip(scenes, patch_labels)]))
    return batch


def _parameter_groups(model: LlavaForConditionalGeneration, recipe: Recipe) -> list[dict[str, Any]]:
    """The vision tower at `recipe.vision_lr_mult` times the learning rate, everything else at 1."""
    vision_params = list(model.model.vision_tower.parameters())
    vision_ids = {id(p) for p in vision_params}
    other = [p for p in model.parameters() if id(p) not in vision_ids]
    return [{"params": vision_params, "mult": recipe.vision_lr_mult}, {"params": other, "mult": 1.0}]


def _progress(step: int, history: list[float], attention_history: dict[str, list[float]], loss: float, lr: float,
              elapsed: float) -> str:
    attended = "".join(f" {name} {np.mean(h[-50:]):.3f}" for name, h in attention_history.items() if h)
    return (f"stage2 step {step} ce {np.mean(history[-50:]):.4f}{attended} loss {loss:.4f} lr {lr:.2e} "
            f"({elapsed:.0f}s)")


def train_stage2(model: LlavaForConditionalGeneration, processor: LlavaProcessor, recipe: Recipe,
                 log: Callable[[str], None], regularizer: Callable[[float], torch.Tensor] | None = None,
                 probe: Callable[[], dict] | None = None) -> dict:
    """Stage 2: `recipe.grounding_steps` single-turn presence steps, then `recipe.stage2_steps` mixed
    multi-turn steps, one cosine schedule over both. `regularizer(progress)` (Vittle's KL term) is added to
    the loss after each forward; `probe()` (a cheap held-out check) is logged every `recipe.probe_every` steps."""
    encoder = ConversationEncoder(processor)
    encoder.check_matches_processor(draw_scene(scene_rng(0, 0)).image, PopeAdapter().build_request(
        Sample("t", "", "Is there a red circle in the image?")).prompt)
    groups = _parameter_groups(model, recipe)
    optimizer = torch.optim.AdamW(groups, lr=recipe.lr, weight_decay=0.01, betas=(0.9, 0.98))
    rng = random.Random(recipe.seed + 7)
    start, history = time.time(), []
    attention_history: dict[str, list[float]] = {name: [] for name in attention_losses(recipe)}
    total = recipe.grounding_steps + recipe.stage2_steps
    attn_implementation = model.config._attn_implementation
    if attention_history:
        model.set_attn_implementation("eager")  # the attention losses read attention weights; sdpa returns none
    projected: list[torch.Tensor] = []  # the projector's output of the current step, for the alignment loss
    hook = (model.model.multi_modal_projector.register_forward_hook(lambda _m, _i, out: projected.append(out))
            if recipe.align_weight else None)
    model.train()
    for step in range(total):
        batch = _stage2_batch(encoder, processor, rng, recipe, step * recipe.stage2_batch,
                              presence_only=step < recipe.grounding_steps)
        attention_targets = batch.pop("attention_targets")
        patch_labels = batch.pop("patch_labels", None)
        extremes = batch.pop("extremes", None)
        projected.clear()
        lr = cosine_lr(recipe.lr, step, total, recipe.warmup)
        for group in optimizer.param_groups:
            group["lr"] = lr * group["mult"]
        out = model(**batch, output_attentions=bool(attention_targets))
        loss = out.loss
        ce = loss.item()
        for name, (layer, head, weight, targets) in attention_targets.items():
            attention_loss = grounding_loss(out.attentions[layer][:, head], targets)
            attention_history[name].append(attention_loss.item())
            loss = loss + weight * attention_loss
        if patch_labels is not None:
            loss = loss + recipe.align_weight * alignment_loss(
                projected[0], patch_labels, word_targets(model, processor).detach(),
                alignment_extras(model, processor, recipe, extremes))
        if regularizer is not None:
            loss = loss + regularizer(step / max(1, total - 1))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_([p for g in groups for p in g["params"]], 1.0)
        optimizer.step()
        history.append(ce)
        if probe is not None and step and step % recipe.probe_every == 0:
            log(f"stage2 step {step} probe {probe()}")
        if step % 100 == 0 or step == total - 1:
            log(_progress(step, history, attention_history, loss.item(), lr, time.time() - start))
    if hook is not None:
        hook.remove()
    model.set_attn_implementation(attn_implementation)
    model.eval()
    return {"steps": total, "wall_s": round(time.time() - start, 1),
            "final_ce": round(float(np.mean(history[-50:])), 4)}

