"""`vittle-bench tune` on two CPU processes (DDP over gloo), against one process with the same global batch, and
interrupted and resumed on two processes against the uninterrupted run.

On CPUs `accelerate launch --cpu` spreads processes only through MPI, so the runs start with torchrun (what
`accelerate launch --multi_gpu` runs on GPUs), Accelerate kept on the CPU by its own ACCELERATE_USE_CPU.
The bottleneck's posterior sample is the one random draw that depends on how rows are split over processes;
alpha_max 0 keeps it out of the forward (the KL terms, the hooks and masks, and the heads' training stay), so the
comparison is exact up to float summation order."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from vittle_bench.tuning.data import ConversationCollator, LlavaInstructionDataset
from vittle_bench.tuning.train import TuneConfig, train

from test_vittle_tune import read_log, write_scene_data

torch.set_num_threads(1)
# 8 rows, global batch 4: each step's rows depend on the sampler's shuffle; 4 steps cross an epoch boundary
RECIPE = {"max_steps": 4, "grad_accum": 2, "lr": 3e-3, "warmup_ratio": 0.0, "prior": "learnable",
          "alpha_max": 0.0, "save_every": 2, "keep_checkpoints": True}


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return write_scene_data(tmp_path_factory.mktemp("ddp-data"), 7)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def two_processes(checkpoint: Path, data: Path, out: Path, *extra: str) -> str:
    """A 2-process CLI run with RECIPE and a per-process batch of 1; its stdout."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(_free_port()),
           "-m", "vittle_bench", "tune", "--model", f"hf:{checkpoint}", "--data", str(data / "data.json"),
           "--image-folder", str(data / "images"), "--output", str(out), "--batch-size", "1",
           *[a for k, v in RECIPE.items() if v is not True for a in (f"--{k.replace('_', '-')}", str(v))],
           "--keep-checkpoints", *extra]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "ACCELERATE_USE_CPU": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


def weights(out: Path) -> dict[str, torch.Tensor]:
    return {**load_file(out / "model.safetensors"), **load_file(out / "vittle_bottleneck.safetensors")}


@pytest.mark.slow
def test_two_processes_equal_one_with_the_same_global_batch_and_resume_equals_uninterrupted(
        tiny_random_checkpoint, data, tmp_path):
    two = tmp_path / "two"
    stdout = two_processes(tiny_random_checkpoint, data, two)
    assert "global batch 4" in stdout and "2 process(es)" in stdout
    log2, weights2 = read_log(two), weights(two)

    one = tmp_path / "one"
    train(TuneConfig(model=f"hf:{tiny_random_checkpoint}", data=str(data / "data.json"),
                     image_folder=str(data / "images"), output=str(one), batch_size=2, **RECIPE), log=lambda _: None)
    log1 = read_log(one)
    assert [r["step"] for r in log1] == [r["step"] for r in log2] == [1, 2, 3, 4]
    for a, b in zip(log1, log2):
        assert a["supervised_tokens"] == b["supervised_tokens"] and a["epoch"] == b["epoch"]
        for key in ("ce", "kl_visual", "kl_text", "loss"):
            assert a[key] == pytest.approx(b[key], rel=1e-5), (key, a, b)
    # each epoch's two steps see every row once
    from transformers import AutoProcessor

    dataset = LlavaInstructionDataset(data / "data.json", data / "images")
    batch = ConversationCollator(AutoProcessor.from_pretrained(tiny_random_checkpoint))(list(dataset))
    total = int((batch["labels"] != -100).sum())
    assert [log1[0]["supervised_tokens"] + log1[1]["supervised_tokens"],
            log1[2]["supervised_tokens"] + log1[3]["supervised_tokens"]] == [total, total]
    for name, value in weights(one).items():
        torch.testing.assert_close(weights2[name], value, rtol=1e-4, atol=1e-6, msg=name)

    # interrupted after step 2 (step 4's checkpoint and the final files gone), resumed on two processes
    shutil.rmtree(two / "checkpoints" / "step-00000004")
    stdout = two_processes(tiny_random_checkpoint, data, two, "--resume")
    log_resumed = read_log(two)
    assert [r["step"] for r in log_resumed] == [1, 2, 3, 4]
    for a, b in zip(log2, log_resumed):
        assert a["ce"] == pytest.approx(b["ce"], rel=1e-6) and a["kl_text"] == pytest.approx(b["kl_text"], rel=1e-6)
    for name, value in weights2.items():
        torch.testing.assert_close(weights(two)[name], value, rtol=0, atol=0, msg=name)

    from vittle_bench.models import load_model
    from vittle_bench.vittle import get_vittle_handle

    assert get_vittle_handle(load_model(f"hf:{two}").model) is not None


@pytest.mark.parametrize("name", ["zero2", "zero3", "fsdp"])
def test_shipped_accelerate_configs_leave_tunes_values_to_tune(name):
    """configs/accelerate/*.yaml load with Accelerate's own reader; the DeepSpeed files leave the micro-batch, the
    accumulation steps and bf16 to tune ("auto": a number there would override --grad-accum), and ZeRO-3 gathers
    the weights on save (tune writes the model from the gathered state)."""
    from accelerate.commands.config.config_args import load_config_from_file
    from accelerate.utils.deepspeed import HfDeepSpeedConfig

    root = Path(__file__).resolve().parents[1]
    config = load_config_from_file(str(root / "configs" / "accelerate" / f"{name}.yaml"))
    if name == "fsdp":
        assert config.distributed_type == "FSDP" and config.fsdp_config["fsdp_state_dict_type"] == "FULL_STATE_DICT"
        return
    assert config.distributed_type == "DEEPSPEED"
    ds = HfDeepSpeedConfig(str(root / config.deepspeed_config["deepspeed_config_file"]))
    assert ds.get_value("zero_optimization.stage") == int(name[-1])
    for key in ("train_micro_batch_size_per_gpu", "gradient_accumulation_steps", "bf16.enabled"):
        assert ds.get_value(key) == "auto", key
    assert (ds.get_value("zero_optimization.stage3_gather_16bit_weights_on_model_save") is True) == (name == "zero3")
    assert config.deepspeed_config["zero3_init_flag"] == (name == "zero3")
