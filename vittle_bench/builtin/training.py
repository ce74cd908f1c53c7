"""`vittle-bench train-builtin`: reproduce the committed weights of the built-in models.

Stage 1 (vision pre-training) runs once; every variant then runs the identical stage 2 (same scenes, same
turns, same steps) from that tower, the Vittle variants with the bottleneck attached: baseline and Vittle
differ by the bottleneck alone.
"""

from __future__ import annotations

import copy
import functools
import json
import random
import time
from collections.abc import Callable
from pathlib import Path

import torch

from vittle_bench.adapters.closed_form import ClosedFormAdapter
from vittle_bench.adapters.pope import PopeAdapter
from vittle_bench.builtin.questions import LETTERS, multiple_choice_question, pope_style_question
from vittle_bench.builtin.recipe import Recipe, recipe_dict
from vittle_bench.builtin.scenes import draw_scene, scene_rng
from vittle_bench.builtin.stage1 import pretrain_vision
from vittle_bench.builtin.stage2 import ConversationEncoder, train_stage2
from vittle_bench.builtin.tiny_llava import build_model, build_processor
from vittle_bench.errors import ConfigError
from vittle_bench.schema import Sample
from vittle_bench.vittle import VittleConfig, attach_bottleneck, save_vittle

VARIANTS: dict[str, VittleConfig | None] = {
    "tiny-llava": None,
    "tiny-llava-vittle-f": VittleConfig(prior="fixed"),
    "tiny-llava-vittle-l": VittleConfig(prior="learnable"),
}
PROBE_SEED = 777  # held-out scenes for the training-time probe (the evaluation world uses seed 0)


@torch.no_grad()
def _answer_logits(model, processor, scenes, prompts: list[str]) -> torch.Tensor:
    """Next-token logits after each prompt's `ASSISTANT:` (left-padded batch, eval mode)."""
    encoder, tok = ConversationEncoder(processor), processor.tokenizer
    ids = [encoder.encode([(p, "x")])[0][:-2] for p in prompts]
    length = max(map(len, ids))
    input_ids = torch.tensor([[tok.pad_token_id] * (length - len(x)) + x for x in ids])
    was_training = model.training
    model.eval()
    pixels = processor.image_processor([s.image for s in scenes], return_tensors="pt")["pixel_values"]
    logits = model(input_ids=input_ids, attention_mask=(input_ids != tok.pad_token_id).long(),
                   pixel_values=pixels).logits
    model.train(was_training)
    return logits[:, -1]


def probe(model, processor, n: int = 300) -> dict[str, float]:
    """Teacher-forced checks on held-out scenes (POPE: Yes vs No logit; MC: best of the four letters, overall
    and per question kind).
    A cheap progress signal only; reported figures come from `vittle-bench run`."""
    rng, tok = random.Random(PROBE_SEED), processor.tokenizer
    scenes = [draw_scene(scene_rng(PROBE_SEED, i)) for i in range(n)]
    pope = [pope_style_question(s.objects, rng) for s in scenes]
    prompts = [PopeAdapter().build_request(Sample("p", "", q.question)).prompt for q in pope]
    logits = _answer_logits(model, processor, scenes, prompts)
    said_yes = (logits[:, tok.convert_tokens_to_ids("Yes")] > logits[:, tok.convert_tokens_to_ids("No")]).tolist()
    mc = [multiple_choice_question(s.objects, rng) for s in scenes]
    logits = _answer_logits(model, processor, scenes, [ClosedFormAdapter().build_request(
        Sample("p", "", q.question, choices=q.choices)).prompt for q in mc])
    letters = logits[:, tok.convert_tokens_to_ids(list(LETTERS))].argmax(-1).tolist()
    correct = [LETTERS[i] == q.answer for i, q in zip(letters, mc)]
    by_kind = {f"mc_{kind}": round(sum(c for c, q in zip(correct, mc) if q.kind == kind)
                                   / sum(q.kind == kind for q in mc), 3) for kind in sorted({q.kind for q in mc})}
    return {"pope_acc": round(sum(y == (q.answer == "Yes") for y, q in zip(said_yes, pope)) / n, 3),
            "yes_ratio": round(sum(said_yes) / n, 3), "mc_acc": round(sum(correct) / n, 3), **by_kind}


STAGE1_FIELDS = ("seed", "stage1_steps", "stage1_batch", "stage1_lr", "embedding_std", "text_layers", "align_weight",
                 "extreme_weight")


def _stage1_key(recipe: Recipe, processor) -> str:
    """What a stage-1 checkpoint must match: the stage-1 part of the recipe and the tokenizer's vocabulary."""
    fields = recipe_dict(recipe)
    return json.dumps({**{k: fields[k] for k in STAGE1_FIELDS}, "vocab": processor.tokenizer.get_vocab()},
                      sort_keys=True)


def stage1_model(recipe: Recipe, checkpoint: Path | None, log: Callable[[str], None]):
    """The model after stage 1, shared by every variant; cached at `checkpoint` (if given) so variants
    can be trained in separate processes from the very same tower. A checkpoint made with another seed,
    stage-1 recipe or tokenizer is refused rather than silently reused."""
    torch.manual_seed(recipe.seed)
    processor = build_processor()
    model = build_model(processor, text_layers=recipe.text_layers)
    key = _stage1_key(recipe, processor)
    if checkpoint is not None and checkpoint.is_file():
        saved = torch.load(checkpoint, weights_only=True)
        if saved.get("stage1_recipe") != key:
            raise ConfigError(f"{checkpoint} holds a stage-1 model made with another seed, stage-1 recipe or "
                              "tokenizer; delete it (or train into another --output) to train stage 1 again")
        model.load_state_dict(saved["state"])
        return processor, model, json.loads(saved["report"])
    with torch.no_grad():
        model.model.language_model.embed_tokens.weight.normal_(0, recipe.embedding_std)
    report = pretrain_vision(model, processor, recipe, log)
    if checkpoint is not None:
        checkpoint.parent.mkdir(parents=True, exist_ok=True)
        torch.save({"state": model.state_dict(), "report": json.dumps(report), "stage1_recipe": key}, checkpoint)
    return processor, model, report


def train_builtin(output_root: Path, variants: list[str], recipe: Recipe | None = None,
                  log: Callable[[str], None] = print, stage1_checkpoint: Path | None = None) -> dict[str, dict]:
    recipe = recipe or Recipe()
    processor, base, stage1 = stage1_model(recipe, stage1_checkpoint, log)
    reports = {}
    for name in variants:
        torch.manual_seed(recipe.seed + 1)
        model = copy.deepcopy(base)
        vittle = VARIANTS[name]
        handle = attach_bottleneck(model, vittle) if vittle else None

        def regularizer(progress: float, handle=handle) -> torch.Tensor:
            handle.set_progress(progress)
            return handle.regularizer()

        def variant_log(message: str, name: str = name) -> None:
            log(f"[{name}] {message}")

        start = time.time()
        stage2 = train_stage2(model, processor, recipe, variant_log, regularizer if handle else None,
                              functools.partial(probe, model, processor))
        final_probe = probe(model, processor)
        log(f"[{name}] done: {final_probe}")
        out = output_root / name
        model.save_pretrained(out)
        processor.save_pretrained(out)
        if handle:
            save_vittle(handle, out)
        report = {"variant": name, "recipe": recipe_dict(recipe), "vittle": vittle.to_dict() if vittle else None,
                  "stage1": stage1, "stage2": stage2, "probe_teacher_forced": final_probe,
                  "stage2_total_s": round(time.time() - start, 1),
                  "parameters": sum(p.numel() for p in model.parameters())}
        (out / "training_log.json").write_text(json.dumps(report, indent=1))
        reports[name] = report
    return reports
