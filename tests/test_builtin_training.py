"""`train_builtin` end to end on a tiny recipe (the committed weights take ~25 CPU minutes each): variants share
one stage-1 checkpoint, which is refused when it was made with another seed, and the saved directories load
like any HF checkpoint."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from transformers import LlavaForConditionalGeneration

from vittle_bench.builtin.recipe import Recipe
from vittle_bench.builtin.training import stage1_model, train_builtin
from vittle_bench.config import ConfigError

TINY = dict(stage1_steps=2, stage1_batch=4, grounding_steps=1, stage2_steps=2, stage2_batch=2, turns=2, warmup=1,
            text_layers=1, option_grounding_layer=0, probe_every=10_000)


def test_train_builtin_shares_stage1_and_saves_loadable_variants(tmp_path, monkeypatch):
    import vittle_bench.builtin.training as training

    monkeypatch.setattr(training, "probe", lambda model, processor: {"pope_acc": 0.0})  # 300-scene probe: slow
    recipe = Recipe(**TINY)
    checkpoint = tmp_path / "stage1.pt"
    reports = train_builtin(tmp_path, ["tiny-llava", "tiny-llava-vittle-f"], recipe, log=lambda m: None,
                            stage1_checkpoint=checkpoint)
    assert checkpoint.is_file() and set(reports) == {"tiny-llava", "tiny-llava-vittle-f"}
    for name in reports:
        log = json.loads((tmp_path / name / "training_log.json").read_text())
        assert log["variant"] == name and log["stage2"]["steps"] == 1 + 2 and log["recipe"]["text_layers"] == 1
        loaded = LlavaForConditionalGeneration.from_pretrained(tmp_path / name)
        assert loaded.config.text_config.num_hidden_layers == 1
        assert loaded.config._attn_implementation == "sdpa"  # grounding trains with eager attention only
    assert (tmp_path / "tiny-llava-vittle-f" / "vittle_config.json").is_file()

    # Another process reuses the tower stored in the checkpoint rather than training its own (marked here,
    # so that a retrained, seed-identical tower could not pass for a loaded one)...
    saved = torch.load(checkpoint, weights_only=True)
    key = "model.vision_tower.embeddings.patch_embedding.weight"
    saved["state"][key] = torch.full_like(saved["state"][key], 0.25)
    torch.save(saved, checkpoint)
    _, model, _ = stage1_model(recipe, checkpoint, log=lambda m: None)
    assert torch.equal(model.state_dict()[key], saved["state"][key])
    # ...but never one made with another seed or stage-1 recipe (train-builtin --seed 1 used to reuse it).
    for other in (Recipe(**{**TINY, "seed": 1}), Recipe(**{**TINY, "stage1_steps": 3}),
                  Recipe(**{**TINY, "align_weight": 0.0}), Recipe(**{**TINY, "extreme_weight": 0.0})):
        with pytest.raises(ConfigError, match="another seed, stage-1 recipe or tokenizer"):
            stage1_model(other, checkpoint, log=lambda m: None)


# ----------------------------------------------------------------------------- alignment and grounding
def test_questions_carry_the_word_and_object_their_grounding_names():
    import random

    from vittle_bench.builtin import questions as qa
    from vittle_bench.builtin.scenes import draw_scene, scene_rng

    rng, positions = random.Random(0), 0
    for i in range(60):
        objects = draw_scene(scene_rng(5, i)).objects
        pope = qa.pope_style_question(objects, rng)
        g = pope.grounding
        assert f"a {g.colour} {g.shape} in" in pope.question and g.word == g.shape
        assert (pope.answer == "Yes") == any((o.colour, o.shape) == (g.colour, g.shape) for o in objects)
        colour_q = qa.colour_presence_question(objects, rng)
        g = colour_q.grounding
        assert (g.word, g.shape) == (g.colour, None)
        assert (colour_q.answer == "Yes") == any(o.colour == g.colour for o in objects)
        shape_q = qa.shape_presence_question(objects, rng)
        g = shape_q.grounding
        assert (g.word, g.colour) == (g.shape, None)
        assert (shape_q.answer == "Yes") == any(o.shape == g.shape for o in objects)
        colour_mc = qa.colour_question(objects, rng)
        if colour_mc:  # grounded on the one object of the shape asked about, whose colour is the answer
            g = colour_mc.grounding
            assert g.word == g.shape and f"the {g.shape}?" in colour_mc.question and g.colour is None
            [target] = [o for o in objects if o.shape == g.shape]
            assert colour_mc.choices["ABCD".index(colour_mc.answer)] == target.colour
            # each option (a colour word) is grounded on the patches of that colour
            assert colour_mc.option_groundings == tuple(qa.Grounding(c, c, None) for c in colour_mc.choices)
        position = qa.position_question(objects, rng)
        if position:  # grounded from the direction word on the object that is the answer
            positions += 1
            g = position.grounding
            assert position.question.endswith(f"{g.word}?")
            assert position.choices["ABCD".index(position.answer)] == f"{g.colour} {g.shape}"
            # each option ("red ring") is grounded from its shape word on that object's patches
            assert [f"{o.colour} {o.shape}" for o in position.option_groundings] == list(position.choices)
            assert all(o.word == o.shape for o in position.option_groundings)
    assert positions > 10
    count = qa.count_question(objects, rng)
    assert count.grounding is None and count.option_groundings == ()


def test_encode_turns_points_at_the_grounded_word_options_and_answer_position_of_each_turn():
    from vittle_bench.builtin.questions import Grounding
    from vittle_bench.builtin.stage2 import ConversationEncoder, Turn
    from vittle_bench.builtin.tiny_llava import build_processor

    processor = build_processor()
    encoder, tok = ConversationEncoder(processor), processor.tokenizer
    groundings = [Grounding("ring", "red", "ring"), Grounding("blue", "blue", None), Grounding("ring", None, "ring"),
                  Grounding("left", "red", "ring")]
    options = (Grounding("ring", "blue", "ring"), Grounding("ring", "red", "ring"))
    turns = [Turn("Is there a red ring in the image?", "No", groundings[0]),
             Turn("How many objects are in the image?\nA. 1\nB. 2", "B", None, ("1", "2")),
             Turn("Is there a blue object in the image?", "Yes", groundings[1]),
             Turn("Is there a ring in the image?", "Yes", groundings[2]),
             Turn("Which object is furthest to the left?\nA. blue ring\nB. red ring", "B", groundings[3],
                  ("blue ring", "red ring"), options)]
    encoded = encoder.encode_turns(turns)
    ids, name = encoded.ids, tok.convert_ids_to_tokens
    assert (ids, encoded.labels) == encoder.encode([(t.prompt, t.answer) for t in turns])
    grounded = encoded.grounded
    assert [g for _, g in grounded] == groundings
    assert [name(ids[p]) for p, _ in grounded] == ["ring", "blue", "ring", "left"]
    assert [name(ids[p - 1]) for p, _ in grounded] == ["red", "a", "a", "the"]
    assert [p for p, _ in grounded] == sorted({p for p, _ in grounded})  # each turn's own word, not an earlier turn's
    # options: the last word of each option line of the position turn, with the object it names
    assert [g for _, g in encoded.options] == list(options)
    assert [name(ids[p - 3: p + 1]) for p, _ in encoded.options] == [["A", ".", "blue", "ring"],
                                                                      ["B", ".", "red", "ring"]]
    # pointers: from the token before each MC answer onto the last word of the correct option
    assert [name(ids[start - 3:end]) for _, start, end in encoded.pointers] == [["1", "B", ".", "2"],
                                                                              ["B", ".", "red", "ring"]]
    assert [end - start for _, start, end in encoded.pointers] == [1, 1]
    assert [encoded.labels[p + 1] for p, _, _ in encoded.pointers] == [tok.convert_tokens_to_ids("B")] * 2
    assert all(name(ids[p]) == ":" and p > end for p, _, end in encoded.pointers)
    # bindings: from each option's last word onto its own letter
    assert [(name(ids[p]), name(ids[start:end])) for p, start, end in encoded.bindings] == [
        ("1", ["A"]), ("2", ["B"]), ("ring", ["A"]), ("ring", ["B"])]


def test_pointer_targets_mask_the_correct_option_span():
    from vittle_bench.builtin.stage2 import pointer_targets

    rows, positions, masks = pointer_targets(6, [[(5, 1, 3)], [], [(4, 2, 4), (5, 0, 1)]])
    assert rows.tolist() == [0, 2, 2] and positions.tolist() == [5, 4, 5]
    assert [m.nonzero().flatten().tolist() for m in masks] == [[1, 2], [2, 3], [0]]
    assert pointer_targets(6, [[], []]) is None


def test_grounding_targets_are_the_patches_of_the_asked_object_or_bos():
    from vittle_bench.builtin.questions import Grounding
    from vittle_bench.builtin.scenes import CATEGORIES
    from vittle_bench.builtin.stage2 import grounding_targets

    red_ring, blue_ring = CATEGORIES.index("red ring") + 1, CATEGORIES.index("blue ring") + 1
    image = 9
    input_ids = torch.tensor([[1, 5, image, image, image, image, 7, 8, 8]])
    patch_labels = np.array([[0, red_ring, blue_ring, red_ring]])
    grounded = [[(7, Grounding("ring", "red", "ring")), (7, Grounding("ring", None, "ring")),
                 (8, Grounding("blue", "blue", None)), (8, Grounding("ring", "green", "ring"))]]
    rows, positions, masks = grounding_targets(input_ids, image, patch_labels, grounded)
    assert rows.tolist() == [0, 0, 0, 0] and positions.tolist() == [7, 7, 8, 8]
    assert [m.nonzero().flatten().tolist() for m in masks] == [[3, 5], [3, 4, 5], [4], [0]]
    assert grounding_targets(input_ids, image, patch_labels, [[]]) is None


def test_grounding_and_alignment_losses_against_hand_computed_values():
    from vittle_bench.builtin.stage1 import alignment_loss
    from vittle_bench.builtin.stage2 import grounding_loss

    attention = torch.zeros(2, 3, 4)
    attention[0, 2] = torch.tensor([0.1, 0.2, 0.3, 0.4])
    attention[1, 1] = torch.tensor([0.5, 0.25, 0.25, 0.0])
    masks = torch.tensor([[False, False, True, True], [True, False, False, False]])
    loss = grounding_loss(attention, (torch.tensor([0, 1]), torch.tensor([2, 1]), masks))
    assert loss.item() == pytest.approx(-(np.log(0.7) + np.log(0.5)) / 2, rel=1e-5)

    targets = torch.tensor([[0.0, 0.0], [1.0, 1.0], [3.0, -1.0]])  # row 0: background
    labels = torch.tensor([[0, 1, 2]])
    exact = targets[labels]
    assert alignment_loss(exact, labels, targets).item() == 0.0
    off = exact + torch.tensor([[[0.0, 0.0], [1.0, 0.0], [0.0, 2.0]]])
    # mean squared error (0 + 1 + 4) / 6, over the targets' mean square (1 + 1 + 9 + 1) / 4
    assert alignment_loss(off, labels, targets).item() == pytest.approx((5 / 6) / 3)
    # per-patch extras (the extreme directions' words) add to the word targets
    extra = torch.tensor([[[0.0, 0.0], [0.5, 0.0], [0.0, -0.5]]])
    assert alignment_loss(exact + extra, labels, targets, extra).item() == 0.0
    assert alignment_loss(exact, labels, targets, extra).item() == pytest.approx((0.5 / 6) / 3)


def test_probe_reports_mc_accuracy_per_question_kind_consistent_with_the_overall():
    import random

    from vittle_bench.builtin.questions import multiple_choice_question, pope_style_question
    from vittle_bench.builtin.scenes import draw_scene, scene_rng
    from vittle_bench.builtin.tiny_llava import build_model, build_processor
    from vittle_bench.builtin.training import PROBE_SEED, probe

    torch.manual_seed(0)
    processor = build_processor()
    n = 40
    result = probe(build_model(processor, text_layers=1).eval(), processor, n=n)
    # the probe's own question stream: POPE questions first, then one MC question per scene
    rng = random.Random(PROBE_SEED)
    scenes = [draw_scene(scene_rng(PROBE_SEED, i)) for i in range(n)]
    for s in scenes:
        pope_style_question(s.objects, rng)
    kinds = [multiple_choice_question(s.objects, rng).kind for s in scenes]
    assert {k for k in result if k.startswith("mc_") and k != "mc_acc"} == {f"mc_{k}" for k in set(kinds)}
    weighted = sum(result[f"mc_{k}"] * kinds.count(k) for k in set(kinds)) / n
    assert weighted == pytest.approx(result["mc_acc"], abs=0.01)


def test_recipe_refuses_an_attention_loss_on_a_layer_the_decoder_lacks():
    with pytest.raises(ValueError, match="option_grounding_layer = 4 is not a layer of a 4-layer decoder"):
        Recipe(option_grounding_layer=4)
    assert Recipe(text_layers=2, option_grounding_layer=1).option_grounding_layer == 1


def test_extreme_labels_flag_the_patches_of_the_unambiguous_unique_extreme_objects():
    from vittle_bench.builtin.scenes import CATEGORIES, Scene, SceneObject
    from vittle_bench.builtin.stage1 import EXTREME_DIRECTIONS, extreme_labels

    def category(name: str) -> int:
        return CATEGORIES.index(name) + 1

    red_circle = SceneObject("circle", "red", "small", cx=10.0, cy=30.0, radius=5.0)
    blue_ring = SceneObject("ring", "blue", "small", cx=40.0, cy=31.0, radius=5.0)  # 1 px lower: top/bottom ambiguous
    patches = np.array([0, category("red circle"), category("blue ring"), category("blue ring")])
    flags = extreme_labels(Scene(None, (red_circle, blue_ring)), patches)
    assert EXTREME_DIRECTIONS == ("left", "right", "top", "bottom")
    assert flags.tolist() == [[0, 0, 0, 0], [1, 0, 0, 0], [0, 1, 0, 0], [0, 1, 0, 0]]
    # a second red circle (not the extreme one) makes "the red circle's patches" ambiguous: no flag
    other = SceneObject("circle", "red", "small", cx=30.0, cy=5.0, radius=5.0)
    flags = extreme_labels(Scene(None, (red_circle, blue_ring, other)), patches)
    assert flags[:, 0].tolist() == [0, 0, 0, 0] and flags[:, 1].tolist() == [0, 0, 1, 1]
    assert flags[:, 2].tolist() == [0, 0, 0, 0]  # highest by far, but a red circle too
