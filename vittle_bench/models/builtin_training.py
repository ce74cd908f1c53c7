"""`vittle-bench train-builtin`: reproduce the committed weights of the built-in models.

Stage 1 (vision pre-training) runs once; every variant then runs the identical stage 2 (same scenes, same
turns, same steps) from that tower, the Vittle variants with the bottleneck attached: baseline and Vittle
differ by the bottleneck alone.
"""

from __future__ import annotations

import copy
import json
import random
import time
from pathlib import Path
from typing import Callable

import torch

from vittle_bench.data.builtin.questions import pope_style_question
from vittle_bench.data.builtin.scenes import draw_scene, scene_rng
from vittle_bench.models.tiny_llava import build_model, build_processor
from vittle_bench.models.tiny_llava_train import ConversationEncoder, Recipe, pretrain_vision, recipe_dict, train_stage2
from vittle_bench.schema import Sample
from vittle_bench.tasks.pope import PopeAdapter
from vittle_bench.vittle import VittleConfig, attach_bottleneck, save_vittle

VARIANTS: dict[str, VittleConfig | None] = {
    "tiny-llava": None,
    "tiny-llava-vittle-f": VittleConfig(prior="fixed"),
    "tiny-llava-vittle-l": VittleConfig(prior="learnable"),
}
PROBE_SEED = 777  # held-out scenes for the training-time probe (the evaluation world uses seed 0)


@torch.no_grad()
def pope_probe(model, processor, n: int = 300) -> dict[str, float]:
    """Teacher-forced POPE check (Yes vs No logit) on held-out scenes: a cheap progress signal only;
    reported figures come from `vittle-bench run`."""
    encoder, adapter, rng = ConversationEncoder(processor), PopeAdapter(), random.Random(PROBE_SEED)
    tok = processor.tokenizer
    yes_id, no_id = tok.convert_tokens_to_ids("Yes"), tok.convert_tokens_to_ids("No")
    scenes = [draw_scene(scene_rng(PROBE_SEED, i)) for i in range(n)]
    questions = [pope_style_question(s.objects, rng) for s in scenes]
    ids = [encoder.encode([(adapter.build_request(Sample("p", "", q.question)).prompt, "x")])[0][:-2] for q in questions]
    length = max(map(len, ids))
    input_ids = torch.tensor([[tok.pad_token_id] * (length - len(x)) + x for x in ids])
    mask = (input_ids != tok.pad_token_id).long()
    was_training = model.training
    model.eval()
    logits = model(input_ids=input_ids, attention_mask=mask,
                   pixel_values=processor.image_processor([s.image for s in scenes], return_tensors="pt")["pixel_values"]).logits[:, -1]
    model.train(was_training)
    said_yes = (logits[:, yes_id] > logits[:, no_id]).tolist()
    correct = [y == (q.answer == "Yes") for y, q in zip(said_yes, questions)]
    return {"pope_acc": sum(correct) / n, "yes_ratio": sum(said_yes) / n}


def train_builtin(output_root: Path, variants: list[str], recipe: Recipe | None = None,
                  log: Callable[[str], None] = print) -> dict[str, dict]:
    recipe = recipe or Recipe()
    torch.manual_seed(recipe.seed)
    processor = build_processor()
    base = build_model(processor)
    with torch.no_grad():
        base.model.language_model.embed_tokens.weight.normal_(0, recipe.embedding_std)
    stage1 = pretrain_vision(base, processor, recipe, log)
    log(f"after stage 1: {pope_probe(base, processor)}")
    reports = {}
    for name in variants:
        torch.manual_seed(recipe.seed + 1)
        model = copy.deepcopy(base)
        vittle = VARIANTS[name]
        handle = attach_bottleneck(model, vittle) if vittle else None

        def regularizer(progress: float, handle=handle) -> torch.Tensor:
            handle.set_progress(progress)
            return handle.regularizer()

        start = time.time()
        stage2 = train_stage2(model, processor, recipe, lambda m: log(f"[{name}] {m}"),
                              regularizer if handle else None)
        probe = pope_probe(model, processor)
        log(f"[{name}] done: {probe}")
        out = output_root / name
        model.save_pretrained(out)
        processor.save_pretrained(out)
        if handle:
            save_vittle(handle, out)
        report = {"variant": name, "recipe": recipe_dict(recipe), "vittle": vittle.to_dict() if vittle else None,
                  "stage1": stage1, "stage2": stage2, "probe_teacher_forced": probe,
                  "stage2_total_s": round(time.time() - start, 1),
                  "parameters": sum(p.numel() for p in model.parameters())}
        (out / "training_log.json").write_text(json.dumps(report, indent=1))
        reports[name] = report
    return reports
