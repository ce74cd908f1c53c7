"""`train_builtin` end to end on a tiny recipe: the stage-1 checkpoint is shared by variants and refused for
another stage-1 recipe, the vision-aux loss runs, and the saved directories load like any HF checkpoint."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import LlavaForConditionalGeneration

from vittle_bench.models.builtin_training import stage1_model, train_builtin
from vittle_bench.models.tiny_llava_train import Recipe

TINY = dict(stage1_steps=2, stage1_batch=4, stage2_steps=2, stage2_batch=2, turns=2, warmup=1,
            vision_layers=1, text_layers=1, probe_every=10_000)


def test_train_builtin_shares_stage1_and_saves_loadable_variants(tmp_path, monkeypatch):
    import vittle_bench.models.builtin_training as training

    monkeypatch.setattr(training, "probe", lambda model, processor: {"pope_acc": 0.0})  # 300-scene probe: slow
    recipe = Recipe(**TINY, stage2_vision_aux=0.5)
    checkpoint = tmp_path / "stage1.pt"
    reports = train_builtin(tmp_path, ["tiny-llava", "tiny-llava-vittle-f"], recipe, log=lambda m: None,
                            stage1_checkpoint=checkpoint)
    assert checkpoint.is_file() and set(reports) == {"tiny-llava", "tiny-llava-vittle-f"}
    for name in reports:
        log = json.loads((tmp_path / name / "training_log.json").read_text())
        assert log["recipe"]["stage2_vision_aux"] == 0.5 and log["stage2"]["steps"] == 2
        assert LlavaForConditionalGeneration.from_pretrained(tmp_path / name).config.vision_config.num_hidden_layers == 1
    assert (tmp_path / "tiny-llava-vittle-f" / "vittle_config.json").is_file()

    # A second process reuses the tower and heads stored in the checkpoint rather than training its own
    # (marked here so that a retrained, seed-identical tower could not pass for a loaded one)...
    saved = torch.load(checkpoint, weights_only=True)
    key = "model.vision_tower.embeddings.patch_embedding.weight"
    saved["state"][key] = torch.full_like(saved["state"][key], 0.25)
    saved["heads"]["count.bias"] = torch.full_like(saved["heads"]["count.bias"], -3.0)
    torch.save(saved, checkpoint)
    _, model, heads, _ = stage1_model(recipe, checkpoint, log=lambda m: None)
    assert torch.equal(model.state_dict()[key], saved["state"][key])
    assert torch.equal(heads.count.bias, saved["heads"]["count.bias"])
    # ...but never a tower trained with another stage-1 recipe.
    with pytest.raises(ValueError, match="another stage-1 recipe"):
        stage1_model(Recipe(**{**TINY, "stage1_steps": 3}), checkpoint, log=lambda m: None)


def test_each_turn_weighs_the_same_in_the_stage2_loss():
    """A one-word answer and a long description count equally: the loss is the mean over turns of each
    turn's mean token cross-entropy."""
    from vittle_bench.models.tiny_llava import build_processor
    from vittle_bench.models.tiny_llava_train import ConversationEncoder, turn_balanced_loss

    turns = [("Is there a red circle in the image?", "Yes"),
             ("Describe the objects in the image.", "There are 2 objects: a small red circle and a large blue ring.")]
    ids, labels, weights = ConversationEncoder(build_processor()).encode(turns)
    answers = [[w for w, lab in zip(weights, labels) if lab != -100 and w == w0] for w0 in sorted(set(weights) - {0.0})]
    assert sorted(len(a) for a in answers) == [2, 14]  # "Yes </s>"; 13 description tokens (object names are one each) + "</s>" and all(sum(a) == pytest.approx(1.0) for a in answers)
    torch.manual_seed(0)
    logits = torch.randn(1, len(ids), 50)
    labels_t = torch.tensor([[lab % 50 if lab != -100 else -100 for lab in labels]])
    ce = torch.nn.functional.cross_entropy(logits[0, :-1], labels_t[0, 1:], ignore_index=-100, reduction="none")
    turn_of = torch.tensor(weights[1:])
    per_turn = [ce[(turn_of == w) & (labels_t[0, 1:] != -100)].mean() for w in sorted(set(weights) - {0.0})]
    expected = torch.stack(per_turn).mean()
    assert turn_balanced_loss(logits, labels_t, torch.tensor([weights])) == pytest.approx(expected.item(), rel=1e-5)
