"""`vittle-bench tune --lora` on tiny LLaVA-1.5 and Qwen2-VL models: the adapters go where configured and nowhere
else (the trainable-parameter count is computed here from the model's own modules), the bottleneck and the
connector train fully, the loss falls on a tiny overfit, and the merged output evaluates with `run --model hf:DIR`."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import peft  # the [tune] extra, installed with [test]: these tests must run, not skip
import pytest
import torch
from safetensors.torch import load_file
from test_tune_families import evaluate, tune_argv
from torch import nn
from transformers import AutoModelForImageTextToText

from vittle_bench.cli import main
from vittle_bench.tuning import lora
from vittle_bench.vittle import count_bottleneck_parameters, get_vittle_handle

import tiny_vlms
from test_vittle_tune import read_log, write_scene_data

torch.set_num_threads(1)
CONNECTOR = {"llava_1_5": "multi_modal_projector", "qwen2_vl": None}  # Qwen2-VL's merger is in its frozen tower


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("lora-families")
    return {family: tiny_vlms.build(family, root / family) for family in CONNECTOR}


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return write_scene_data(tmp_path_factory.mktemp("lora-data"), 3)


def expected_trainable(checkpoint: Path, family: str, r: int, targets: set[str], prior: str | None) -> int:
    """LoRA's r x (in + out) on each targeted linear module of the decoder, plus the bottleneck and the connector."""
    model = AutoModelForImageTextToText.from_pretrained(checkpoint)
    decoder = model.get_decoder()
    adapters = sum(r * (m.in_features + m.out_features) for name, m in decoder.named_modules()
                   if isinstance(m, nn.Linear) and name.rsplit(".", 1)[-1] in targets)
    assert adapters > 0
    bottleneck = count_bottleneck_parameters(model.config.get_text_config().hidden_size, 2, prior) if prior else 0
    connector = CONNECTOR[family]
    full = sum(p.numel() for p in getattr(model.model, connector).parameters()) if connector else 0
    return adapters + bottleneck + full


@pytest.mark.parametrize(("family", "prior"), [("llava_1_5", "fixed"), ("qwen2_vl", "learnable")])
def test_lora_trains_what_it_is_configured_to_and_the_merged_model_evaluates(family, prior, checkpoints, data,
                                                                             world_cache, tmp_path):
    checkpoint, out = checkpoints[family], tmp_path / "lora"
    assert main(tune_argv(checkpoint, data, out, "--prior", prior, "--lora", "r=4,alpha=8,targets=q_proj,v_proj",
                          "--max-steps", "3")) == 0
    done = json.loads((out / "train_log.jsonl").read_text().splitlines()[-1])
    assert done["trainable_parameters"] == expected_trainable(checkpoint, family, 4, {"q_proj", "v_proj"}, prior)
    assert json.loads((out / "adapter" / "adapter_config.json").read_text())["r"] == 4

    base, tuned = load_file(checkpoint / "model.safetensors"), load_file(out / "model.safetensors")
    assert base.keys() == tuned.keys()  # merged: the base model's own tensors, no adapter or bottleneck keys
    connector = CONNECTOR[family]
    for name, value in base.items():
        in_tower = "vision" in name or "visual" in name  # CLIP's attention has q_proj / v_proj too
        adapted = not in_tower and any(name.endswith(f".{t}.weight") for t in ("q_proj", "v_proj"))  # not biases
        trained = adapted or bool(connector and f"{connector}." in name)
        assert torch.equal(value, tuned[name]) != trained, name  # k_proj, MLP, embeddings, tower untouched

    from vittle_bench.models import load_model

    handle = get_vittle_handle(load_model(f"hf:{out}").model)
    assert handle is not None and handle.config.prior == prior
    samples = evaluate(out, tmp_path / "run", world_cache)
    assert len(samples) == 2 and all(s["error"] is None for s in samples)


def test_lora_loss_falls_on_a_tiny_overfit(checkpoints, data, tmp_path):
    """4 rows in one batch, 8 steps at a high learning rate: the baseline's CE falls step by step."""
    out = tmp_path / "overfit"
    assert main(tune_argv(checkpoints["llava_1_5"], data, out, "--baseline", "--lora", "r=8,alpha=16",
                          "--batch-size", "4", "--max-steps", "8", "--lr", "1e-2", "--warmup-ratio", "0")) == 0
    ces = [r["ce"] for r in read_log(out)]
    assert len(ces) == 8 and all(b < a for a, b in zip(ces, ces[1:])) and ces[-1] < ces[0] - 0.5, ces


def test_lora_usage_errors_are_one_line(checkpoints, data, tmp_path, capsys, monkeypatch):
    def error(*flags: str) -> str:
        assert main(tune_argv(checkpoints["llava_1_5"], data, tmp_path / "out", *flags)) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "Traceback" not in err, err
        return err

    assert "not KEY=VALUE" in error("--lora", "16")
    assert "unknown key 'rank'" in error("--lora", "rank=16")
    assert "r >= 1" in error("--lora", "r=0")
    assert "no linear module of that name" in error("--lora", "targets=qkv")
    monkeypatch.setattr(lora, "bitsandbytes_available", lambda: False)
    assert "needs bitsandbytes" in error("--lora", "r=4,bits=4")
    monkeypatch.setitem(sys.modules, "peft", None)  # as if the [tune] extra were not installed
    assert "pip install 'vittle-bench[tune]'" in error("--lora", "r=4")
    assert not (tmp_path / "out" / "model.safetensors").exists()
    assert peft.__version__


def test_lora_resume_equals_an_uninterrupted_run(checkpoints, data, tmp_path):
    """Accelerate's checkpoint of a LoRA run (adapters, connector, bottleneck, optimiser) resumes to the same
    merged weights as the run that was not interrupted."""
    from vittle_bench.tuning.train import TuneConfig, train

    out = tmp_path / "run"
    kw = dict(model=f"hf:{checkpoints['llava_1_5']}", data=str(data / "data.json"), image_folder=str(data / "images"),
              output=str(out), lora="r=4,alpha=8", max_steps=5, save_every=3, keep_checkpoints=True, batch_size=1,
              grad_accum=2, prior="learnable", lr=3e-3, warmup_ratio=0.0)
    train(TuneConfig(**kw), log=lambda _: None)
    straight = {**load_file(out / "model.safetensors"), **load_file(out / "vittle_bottleneck.safetensors")}
    shutil.rmtree(out / "checkpoints" / "step-00000005")  # as if the run had died after step 4
    messages: list[str] = []
    train(TuneConfig(**kw, resume=True), log=messages.append)
    assert any("resuming" in m and "step 3" in m for m in messages)
    resumed = {**load_file(out / "model.safetensors"), **load_file(out / "vittle_bottleneck.safetensors")}
    for name, value in straight.items():
        torch.testing.assert_close(resumed[name], value, rtol=0, atol=0, msg=name)
