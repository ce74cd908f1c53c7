"""`vittle-bench tune` as a new user runs it, on tiny random-weight models of every family the `hf:` adapter
evaluates: each prior, the baseline and LoRA tune through the CLI and the result evaluates with `vittle-bench run
--model hf:DIR`; PaliGemma's prefix-LM labels; a family that cannot be labelled fails in one line at start-up."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from vittle_bench.cli import main
from vittle_bench.models.prompt_profiles import TRAINED_PROFILE_FILE
from vittle_bench.tuning.data import LlavaInstructionDataset
from vittle_bench.tuning.families import PrefixLMCollator

import tiny_vlms
from test_vittle_tune import read_log, write_scene_data

torch.set_num_threads(1)
# LLaVA-1.5 as llava-hf converts it stands for LLaVA; the built-in LLaVA architecture is tuned in test_vittle_tune.
FAMILIES = ["llava_1_5", "llava_next", "qwen2_vl", "qwen2_5_vl", "idefics3", "paligemma"]


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("tune-families")
    return {family: tiny_vlms.build(family, root / family) for family in FAMILIES}


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return write_scene_data(tmp_path_factory.mktemp("tune-data"), 3)


def tune_argv(checkpoint: Path, data: Path, out: Path, *extra: str) -> list[str]:
    return ["tune", "--model", f"hf:{checkpoint}", "--data", str(data / "data.json"), "--image-folder",
            str(data / "images"), "--output", str(out), "--max-steps", "2", "--batch-size", "2", "--lr", "3e-3", *extra]


def evaluate(model_dir: Path, out: Path, cache: Path) -> list[dict]:
    """`vittle-bench run --model hf:DIR` on a few clean POPE samples; the samples it wrote."""
    assert main(["run", "--model", f"hf:{model_dir}", "--tasks", "shapes_pope_random", "--shifts", "clean",
                 "--limit", "2", "--no-cache", "--output", str(out), "--cache-dir", str(cache)]) == 0
    return [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]


VARIANTS = {"fixed": ["--prior", "fixed"], "learnable": ["--prior", "learnable"], "baseline": ["--baseline"],
            "lora": ["--prior", "fixed", "--lora", "r=4,alpha=8"]}


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("family", FAMILIES)
def test_every_family_tunes_and_evaluates(family, variant, checkpoints, data, world_cache, tmp_path, capsys):
    out = tmp_path / "tuned"
    assert main(tune_argv(checkpoints[family], data, out, *VARIANTS[variant])) == 0
    log = read_log(out)
    assert [r["step"] for r in log] == [1, 2] and all(r["supervised_tokens"] > 0 for r in log)
    if variant == "baseline":
        assert not (out / "vittle_config.json").exists()
    else:
        assert all(r["kl_visual"] > 0 and r["kl_text"] > 0 for r in log), log
        prior = VARIANTS[variant][1]
        assert json.loads((out / "vittle_config.json").read_text())["config"]["prior"] == prior
    layout = "image_tokens_then_prompt" if family == "paligemma" else "chat_template"
    assert json.loads((out / TRAINED_PROFILE_FILE).read_text()) == {"prompt_profile": layout}
    samples = evaluate(out, tmp_path / "run", world_cache)
    assert len(samples) == 2 and all(s["error"] is None and s["raw_output"] is not None for s in samples)
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest["models"][0]["fingerprint_info"]["profile"]["name"] == layout  # asked as it was tuned


def test_prefix_lm_labels_supervise_exactly_each_answer(checkpoints, data):
    """PaliGemma: one example per answer, earlier turns in the prefix; the processor's `suffix` labels mark the
    answer and EOS only, token_type_ids mark the same positions, and the text-only row is left out."""
    from transformers import AutoProcessor

    processor = AutoProcessor.from_pretrained(checkpoints["paligemma"])
    dataset = LlavaInstructionDataset(data / "data.json", data / "images", one_answer_per_item=True)
    assert len(dataset) == 6 and dataset.skipped == 1  # 3 image rows x 2 answers; the text-only row left out
    second = dataset[1]
    assert [m["role"] for m in second["messages"]] == ["user", "assistant", "user", "assistant"]
    batch = PrefixLMCollator(processor, max_length=None)([dataset[0], second])
    tok = processor.tokenizer
    rows = json.loads((data / "data.json").read_text())
    for r, answer in enumerate([rows[0]["conversations"][1]["value"], rows[0]["conversations"][3]["value"]]):
        labels = batch["labels"][r]
        supervised = labels[labels != -100].tolist()
        assert supervised == [*tok(answer, add_special_tokens=False)["input_ids"], tok.eos_token_id]
        assert torch.equal(batch["token_type_ids"][r].bool(), labels != -100)
        assert (batch["input_ids"][r] == processor.image_token_id).sum() == processor.image_seq_length
    # the second example's prefix holds the first exchange before its own question
    prefix = tok.decode(batch["input_ids"][1][batch["token_type_ids"][1] == 0], skip_special_tokens=True)
    assert prefix.split()[:2] == "How many".split() and rows[0]["conversations"][1]["value"] in prefix.split()


def test_a_family_that_cannot_be_labelled_fails_at_start_up(checkpoints, data, tmp_path, capsys):
    """No chat template and no prefix-LM processor: one line naming the family and what is missing, exit 2,
    before any weight loads or the output directory is made."""
    bare = Path(shutil.copytree(checkpoints["llava_next"], tmp_path / "bare"))
    for name in ("chat_template.jinja", "chat_template.json"):
        (bare / name).unlink(missing_ok=True)
    for name in ("processor_config.json", "tokenizer_config.json"):
        path = bare / name
        if path.is_file():
            config = json.loads(path.read_text())
            config.pop("chat_template", None)
            path.write_text(json.dumps(config))
    out = tmp_path / "out"
    assert main(tune_argv(bare, data, out)) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "llava_next" in err and "no chat template" in err, err
    assert "Traceback" not in err and not out.exists()


def test_prefix_lm_data_without_images_is_refused_at_start_up(checkpoints, tmp_path, capsys):
    (tmp_path / "text.json").write_text(json.dumps([{"id": 0, "conversations": [
        {"from": "human", "value": "Is there a red circle?"}, {"from": "gpt", "value": "Yes"}]}]))
    assert main(["tune", "--model", f"hf:{checkpoints['paligemma']}", "--data", str(tmp_path / "text.json"),
                 "--output", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "paligemma" in err and "image in every row" in err, err


def test_tuned_paligemma_answers_from_the_prefix_it_was_trained_on(checkpoints, data, tmp_path):
    """The deterministic (eval-mode) loss of the PaliGemma examples falls after tuning on them: the prefix-LM
    labels and token types reach the model as it computes its loss."""
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from vittle_bench.models import load_model

    processor = AutoProcessor.from_pretrained(checkpoints["paligemma"])
    dataset = LlavaInstructionDataset(data / "data.json", data / "images", one_answer_per_item=True)
    batch = PrefixLMCollator(processor)([dataset[i] for i in range(len(dataset))])

    def loss(model: torch.nn.Module) -> float:
        model.eval()
        with torch.no_grad():
            return model(**batch).loss.item()

    before = loss(AutoModelForImageTextToText.from_pretrained(checkpoints["paligemma"]))
    out = tmp_path / "tuned"
    assert main(tune_argv(checkpoints["paligemma"], data, out, "--baseline", "--max-steps", "8",
                          "--batch-size", "6", "--warmup-ratio", "0")) == 0
    assert loss(load_model(f"hf:{out}").model) < before - 0.5
