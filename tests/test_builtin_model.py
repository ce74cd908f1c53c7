"""The committed built-in models: they load through the ordinary HF path, their processor matches the
training recipe's tokenisation, and the baseline's quality on clean data against the issue's targets."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from transformers import AutoProcessor, LlavaForConditionalGeneration

from vittle_bench.builtin.model import BUILTIN_MODELS, weights_dir
from vittle_bench.builtin.scenes import draw_scene, scene_rng
from vittle_bench.builtin.stage2 import ConversationEncoder
from vittle_bench.cli import main
from vittle_bench.models import load_model
from vittle_bench.schema import Request
from vittle_bench.vittle import get_vittle_handle

POPE_FLOOR, MC_FLOOR = 90.0, 82.0  # percent; measured with the committed weights: 94.7 and 85.5 (README)


@pytest.mark.parametrize("name", BUILTIN_MODELS)
def test_committed_weights_load_and_training_format_matches_the_chat_template(name):
    processor = AutoProcessor.from_pretrained(weights_dir(name))
    ConversationEncoder(processor).check_matches_processor(
        draw_scene(scene_rng(0, 0)).image,
        "Is there a red circle in the image?\nAnswer the question using a single word or phrase.")
    model = load_model(f"builtin:{name}")
    assert (get_vittle_handle(model.model) is not None) == ("vittle" in name)
    plain = LlavaForConditionalGeneration.from_pretrained(weights_dir(name))  # a plain loader still works
    assert not hasattr(plain, "vittle_bottleneck")
    log = json.loads((weights_dir(name) / "training_log.json").read_text())
    recipe = log["recipe"]
    assert log["variant"] == name and log["stage2"]["steps"] == recipe["grounding_steps"] + recipe["stage2_steps"]


def test_batching_does_not_change_answers():
    model = load_model("builtin:tiny-llava")
    prompt = ("How many objects are in the image?\nA. 1\nB. 2\nC. 3\nD. 4\n"
              "Answer with the option's letter from the given choices directly.")
    requests = [Request(prompt, (draw_scene(scene_rng(3, i)).image,), 4) for i in range(8)]
    assert model.generate(requests) == [model.generate([r])[0] for r in requests]


@pytest.fixture(scope="module")
def baseline_run(world_cache, tmp_path_factory):
    out = tmp_path_factory.mktemp("baseline")
    assert main(["run", "--model", "builtin:tiny-llava", "--tasks", "shapes_pope_adversarial,shapes_mc",
                 "--shifts", "gaussian_noise@5", "--batch-size", "64", "--output", str(out),
                 "--cache-dir", str(world_cache)]) == 0
    return pd.read_csv(out / "results.csv").set_index(["task", "shift", "metric"])["value"]


def test_baseline_uses_the_image_and_the_strongest_shift_bites(baseline_run):
    """Regression floor at the committed weights' measured level (README): well above the 0.5 of a model
    that answers one word to everything, with both answers in use, and noise at severity 5 hurts."""
    pope_clean = baseline_run[("shapes_pope_adversarial", "clean", "accuracy")]
    assert pope_clean >= POPE_FLOOR
    assert 20 <= baseline_run[("shapes_pope_adversarial", "clean", "yes_ratio")] <= 90
    assert baseline_run[("shapes_mc", "clean", "accuracy")] >= MC_FLOOR
    assert baseline_run[("shapes_pope_adversarial", "gaussian_noise", "accuracy")] < pope_clean - 3


def test_baseline_meets_the_issue_targets(baseline_run):
    assert baseline_run[("shapes_pope_adversarial", "clean", "accuracy")] >= 75
    assert 35 <= baseline_run[("shapes_pope_adversarial", "clean", "yes_ratio")] <= 65
    assert baseline_run[("shapes_mc", "clean", "accuracy")] >= 80
