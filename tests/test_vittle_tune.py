"""`vittle-bench tune`: LLaVA-format data and labels, the accelerate tune loop (both priors and --baseline),
checkpoint/resume, loading the result through `hf:`, and --recipe. Other families: test_tune_families.py; LoRA:
test_tune_lora.py; two processes: test_tune_distributed.py."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from vittle_bench.builtin.scenes import draw_scene, scene_rng
from vittle_bench.tuning.data import ConversationCollator, LlavaInstructionDataset, load_rows, to_messages
from vittle_bench.tuning.train import TuneConfig, resolve_model_source, train
from vittle_bench.vittle import LearnableGaussianPrior, get_vittle_handle

torch.set_num_threads(1)


def scene_rows(image_dir: Path, n: int, seed: int = 5) -> list[dict]:
    """LLaVA-format rows about built-in scenes (answers from the scene labels); the last row is text-only."""
    image_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(n):
        scene = draw_scene(scene_rng(seed, i))
        scene.image.save(image_dir / f"{i}.png")
        names = [o.name for o in scene.objects]
        marker = ("<image>\nHow many objects are in the image?" if i % 2
                  else "How many objects are in the image?\n<image>")
        rows.append({"id": i, "image": f"{i}.png", "conversations": [
            {"from": "human", "value": marker}, {"from": "gpt", "value": str(len(names))},
            {"from": "human", "value": "Describe the objects in the image."},
            {"from": "gpt", "value": " and ".join(names)}]})
    rows.append({"id": "text-only", "conversations": [
        {"from": "human", "value": "Is there a red circle in the image?"}, {"from": "gpt", "value": "Yes"}]})
    return rows


def write_scene_data(root: Path, n: int) -> Path:
    """`root` holding `n` scene images under images/ and their rows in data.json (tune's --data, --image-folder)."""
    (root / "data.json").write_text(json.dumps(scene_rows(root / "images", n)))
    return root


@pytest.fixture(scope="module")
def llava_data(tmp_path_factory) -> Path:
    return write_scene_data(tmp_path_factory.mktemp("llava-data"), 3)


def tune(ckpt: Path, data: Path, out: Path, **kw) -> dict:
    defaults = dict(model=f"hf:{ckpt}", data=str(data / "data.json"), image_folder=str(data / "images"),
                    output=str(out), batch_size=4, max_steps=6, lr=3e-3, warmup_ratio=0.0, save_every=0)
    return train(TuneConfig(**{**defaults, **kw}), log=lambda _: None)


def read_log(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines() if "event" not in line]


# ----------------------------------------------------------------------------- data
def test_labels_supervise_exactly_the_assistant_turns(tiny_random_checkpoint, llava_data):
    """Generic template-driven labels equal the built-in recipe's hand-written encoder on its template."""
    from transformers import AutoProcessor

    from vittle_bench.builtin.stage2 import ConversationEncoder

    processor = AutoProcessor.from_pretrained(tiny_random_checkpoint)
    dataset = LlavaInstructionDataset(llava_data / "data.json", llava_data / "images")
    items = [dataset[i] for i in range(len(dataset))]
    assert [len(it["images"]) for it in items] == [1, 1, 1, 0]
    assert items[0]["messages"][0]["content"][0] == {"type": "image"}  # trailing <image> moved to the front
    batch = ConversationCollator(processor, max_length=None)(items)
    encoder = ConversationEncoder(processor)
    for r, row in enumerate(load_rows(llava_data / "data.json")):
        turns = [(row["conversations"][i]["value"].replace("<image>", "").strip(), row["conversations"][i + 1]["value"])
                 for i in range(0, len(row["conversations"]), 2)]
        ids, labels = encoder.encode(turns)
        n = int(batch["attention_mask"][r].sum())
        if "image" in row:
            assert batch["input_ids"][r, :n].tolist() == ids
            assert batch["labels"][r, :n].tolist() == labels
        supervised = [t for t in batch["labels"][r].tolist() if t != -100]
        answers = " ".join(f"{a} </s>" for _, a in turns)
        assert processor.tokenizer.convert_ids_to_tokens(supervised) == answers.split()
    assert (batch["labels"][batch["attention_mask"] == 0] == -100).all()


def test_image_after_an_answer_and_truncation(tiny_random_checkpoint):
    """The per-prefix fallback (image after an assistant turn) and truncation that never cuts image tokens."""
    from transformers import AutoProcessor

    processor = AutoProcessor.from_pretrained(tiny_random_checkpoint)
    image = draw_scene(scene_rng(0, 0)).image
    conv = [{"from": "human", "value": "How many objects are in the image?"}, {"from": "gpt", "value": "2"},
            {"from": "human", "value": "<image>\nDescribe the objects in the image."},
            {"from": "gpt", "value": "red circle"}]
    batch = ConversationCollator(processor, max_length=None)([{"messages": to_messages(conv, 1), "images": [image]}])
    labels = batch["labels"][0].tolist()
    supervised = [t for t in labels if t != -100]
    assert processor.tokenizer.convert_ids_to_tokens(supervised) == "2 </s> red circle </s>".split()
    image_id = processor.tokenizer.convert_tokens_to_ids("<image>")
    short = ConversationCollator(processor, max_length=5)([{"messages": to_messages(conv, 1), "images": [image]}])
    assert (short["input_ids"] == image_id).sum() == (batch["input_ids"] == image_id).sum()  # images kept whole
    assert short["input_ids"].shape[1] < batch["input_ids"].shape[1]


def test_to_messages_rejects_malformed_rows():
    ok = to_messages([{"from": "gpt", "value": "hi"}, {"from": "human", "value": "q"}, {"from": "gpt", "value": "a"}],
                     1)
    assert [m["role"] for m in ok] == ["user", "assistant"] and ok[0]["content"][0] == {"type": "image"}
    for conv, n in [([{"from": "robot", "value": "x"}], 0),
                    ([{"from": "human", "value": "q"}, {"from": "gpt", "value": "<image>"}], 1),
                    ([{"from": "human", "value": "<image> <image> q"}, {"from": "gpt", "value": "a"}], 1),
                    ([{"from": "human", "value": "q"}], 0)]:
        with pytest.raises(ValueError):
            to_messages(conv, n)


# ----------------------------------------------------------------------------- training
def fixed_batch_ce(model: torch.nn.Module, processor, data: Path) -> float:
    """Deterministic (eval-mode) CE on the whole 4-row data set: what evaluation sees."""
    dataset = LlavaInstructionDataset(data / "data.json", data / "images")
    batch = ConversationCollator(processor)([dataset[i] for i in range(len(dataset))])
    model.eval()
    with torch.no_grad():
        return model(**batch).loss.item()


@pytest.mark.parametrize("variant", ["fixed", "learnable", "baseline"])
def test_tune_trains_saves_and_loads(tiny_random_checkpoint, llava_data, tmp_path, variant):
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from vittle_bench.models import load_model
    from vittle_bench.schema import Request
    from vittle_bench.vittle import VittleConfig, attach_bottleneck

    processor = AutoProcessor.from_pretrained(tiny_random_checkpoint)
    start = AutoModelForImageTextToText.from_pretrained(tiny_random_checkpoint)
    if variant != "baseline":
        attach_bottleneck(start, VittleConfig(prior=variant))
    ce_before = fixed_batch_ce(start, processor, llava_data)

    out = tmp_path / variant
    # 4 rows, batch 4: every step sees the same fixed batch
    summary = tune(tiny_random_checkpoint, llava_data, out, prior="fixed" if variant == "baseline" else variant,
                   baseline=variant == "baseline")
    log = read_log(out)
    assert [r["step"] for r in log] == list(range(1, 7)) and summary["step"] == 6
    ces = [r["ce"] for r in log]
    assert all(torch.isfinite(torch.tensor(ces))) and ces[1] < ces[0], ces
    if variant == "baseline":
        assert "kl_visual" not in log[0] and not (out / "vittle_config.json").exists()
        assert all(b < a for a, b in zip(ces, ces[1:])) and ces[-1] < ces[0] - 0.3, ces
    else:
        # The training CE is not monotone here: the alpha ramp mixes ever more N(mu, sigma^2) noise into a random
        # model's tiny hidden states. The KL terms are logged and shrink; the deterministic path improves.
        assert all(r["kl_visual"] > 0 and r["kl_text"] > 0 and torch.isfinite(torch.tensor(r["loss"])) for r in log)
        assert log[-1]["kl_visual"] < log[0]["kl_visual"] and log[0]["alpha"] < log[-1]["alpha"] <= 0.5
    assert not (out / "checkpoints").exists()

    base, tuned = load_file(tiny_random_checkpoint / "model.safetensors"), load_file(out / "model.safetensors")
    assert base.keys() == tuned.keys()  # no bottleneck keys in model.safetensors
    for name, value in base.items():
        frozen = ".vision_tower." in f".{name}"
        assert torch.equal(value, tuned[name]) == frozen, name  # tower frozen, everything else trained

    model = load_model(f"hf:{out}")
    assert model.profile.name == "chat_template"  # asked the way it was tuned (recorded next to the checkpoint)
    handle = get_vittle_handle(model.model)
    if variant == "baseline":
        assert handle is None
    else:
        assert handle is not None and handle.config.prior == variant and not handle.bottleneck.training
        if variant == "learnable":
            prior = handle.bottleneck.text_prior
            assert isinstance(prior, LearnableGaussianPrior) and prior.mu_p.abs().sum() > 0  # the prior was trained
    assert fixed_batch_ce(model.model, processor, llava_data) < ce_before - 0.2
    image = draw_scene(scene_rng(0, 1)).image
    answers = model.generate([Request("How many objects are in the image?", (image,), max_new_tokens=4)])
    assert len(answers) == 1 and isinstance(answers[0], str)


def test_resume_continues_the_step_count_and_matches_an_uninterrupted_run(tiny_random_checkpoint, llava_data, tmp_path):
    out = tmp_path / "run"
    # 4 rows, 1 per micro-batch, 2 per step: step 3 ends mid-epoch, so resuming skips into the epoch
    kw = dict(max_steps=5, save_every=3, keep_checkpoints=True, batch_size=1, grad_accum=2, prior="learnable")
    tune(tiny_random_checkpoint, llava_data, out, **kw)
    straight = load_file(out / "model.safetensors")
    straight_vittle = load_file(out / "vittle_bottleneck.safetensors")
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["step-00000003", "step-00000005"]
    shutil.rmtree(out / "checkpoints" / "step-00000005")  # as if the run had died after step 4

    from vittle_bench.config import ConfigError

    with pytest.raises(ConfigError, match="not empty"):
        tune(tiny_random_checkpoint, llava_data, out, **kw)
    with pytest.raises(ConfigError, match="different recipe"):
        tune(tiny_random_checkpoint, llava_data, out, resume=True, **{**kw, "lr": 1e-4})

    messages: list[str] = []
    train(TuneConfig(model=f"hf:{tiny_random_checkpoint}", data=str(llava_data / "data.json"),
                     image_folder=str(llava_data / "images"), output=str(out), lr=3e-3, warmup_ratio=0.0, resume=True,
                     **kw), log=messages.append)
    assert any("resuming" in m and "step 3" in m for m in messages)
    assert [r["step"] for r in read_log(out)] == [1, 2, 3, 4, 5]
    resumed = load_file(out / "model.safetensors")
    for name, value in straight.items():
        torch.testing.assert_close(resumed[name], value, rtol=0, atol=0, msg=name)
    for name, value in straight_vittle.items():
        torch.testing.assert_close(load_file(out / "vittle_bottleneck.safetensors")[name], value, rtol=0, atol=0)


def test_cli_tune_and_its_errors(tiny_random_checkpoint, llava_data, tmp_path, capsys):
    from vittle_bench.builtin.model import weights_dir
    from vittle_bench.cli import main

    out = tmp_path / "cli"
    args = ["tune", "--model", f"hf:{tiny_random_checkpoint}", "--data", str(llava_data / "data.json"),
            "--image-folder", str(llava_data / "images"), "--output", str(out), "--max-steps", "1",
            "--batch-size", "2", "--prior", "learnable", "--visual-layer", "0", "--text-layer", "1.0", "--beta", "0.2"]
    assert main(args) == 0
    saved = json.loads((out / "vittle_config.json").read_text())
    assert saved["config"]["prior"] == "learnable" and saved["config"]["beta_text"] == 0.2
    assert (saved["visual_layer_index"], saved["text_layer_index"]) == (0, 0)
    capsys.readouterr()

    def error(argv: list[str]) -> str:
        assert main(argv) == 2
        return capsys.readouterr().err

    def swap(old: str, new: str) -> list[str]:
        return [new if a == old else a for a in args]

    assert "not empty" in error(args)
    assert "already carries a Vittle bottleneck" in error(swap(f"hf:{tiny_random_checkpoint}", f"hf:{out}"))
    assert "hf:ID_OR_PATH or builtin:NAME" in error(swap(f"hf:{tiny_random_checkpoint}", "nope:x"))
    assert "does not exist" in error(swap(str(llava_data / "data.json"), str(tmp_path / "missing.json")))
    missing = error(swap(str(llava_data / "images"), str(tmp_path)))  # the wrong --image-folder: said at start-up
    assert "3 image(s)" in missing and "--image-folder" in missing and len(missing.strip().splitlines()) == 1
    assert resolve_model_source("builtin:tiny-llava") == str(weights_dir("tiny-llava"))


@pytest.fixture
def fresh_accelerate_state():
    """A run whose mixed precision differs from earlier runs in this process needs Accelerate's state anew."""
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state(reset_partial_state=True)
    yield
    AcceleratorState._reset_state(reset_partial_state=True)


def test_recipe_defaults_match_tune_config():
    from dataclasses import fields

    from vittle_bench.tuning.recipes import DEFAULTS, resolve

    defaults = {f.name: f.default for f in fields(TuneConfig)}
    assert DEFAULTS == {name: defaults[name] for name in DEFAULTS}
    plain = resolve(None, {})
    assert plain.values == DEFAULTS and set(plain.sources.values()) == {"default"}


def test_recipe_global_batch_is_split_over_processes():
    from vittle_bench.config import ConfigError
    from vittle_bench.tuning.recipes import resolve

    assert resolve("paper", {}, num_processes=8).values["grad_accum"] == 1  # the authors' 8 GPUs x 16
    assert resolve("paper", {"batch_size": 4}, num_processes=2).values["grad_accum"] == 16
    with pytest.raises(ConfigError, match="not a multiple of 16 x 3 process"):
        resolve("paper", {}, num_processes=3)
    explicit = resolve("paper", {"grad_accum": 3}, num_processes=3)  # flags win, whatever global batch they make
    assert explicit.global_batch == 144 and explicit.sources["grad_accum"] == "flag"


def test_cli_recipe_paper(tiny_random_checkpoint, llava_data, tmp_path, capsys, fresh_accelerate_state):
    """--recipe paper fills the options not given, prints them with their sources and records them in the
    checkpoint (tune_config.json, and vittle_config.json beside the bottleneck); a flag overrides the preset; a
    global batch that does not divide is refused."""
    from vittle_bench.cli import main
    from vittle_bench.tuning.recipes import PAPER

    data = tmp_path / "data.json"  # one global batch of 128: the 4 rows 32 times
    data.write_text(json.dumps(json.loads((llava_data / "data.json").read_text()) * 32))

    def argv(out: Path, *extra: str) -> list[str]:
        return ["tune", "--model", f"hf:{tiny_random_checkpoint}", "--data", str(data),
                "--image-folder", str(llava_data / "images"), "--output", str(out), "--max-steps", "1",
                "--recipe", "paper", *extra]

    out = tmp_path / "paper"
    assert main(argv(out)) == 0
    printed = capsys.readouterr().out
    table = printed.splitlines()
    assert table[0].startswith("recipe paper")
    assert table[17].split() == "global batch 128 = 16 x 8 x 1 process(es)".split()
    assert all(line.split()[-1] == "preset" for line in table[1:14]), printed
    saved = json.loads((out / "tune_config.json").read_text())
    assert {k: saved[k] for k in PAPER.values} == PAPER.values and saved["grad_accum"] == 8
    assert saved["recipe_name"] == "paper" and set(saved["sources"].values()) == {"preset"}
    assert (saved["global_batch"], saved["num_processes"], saved["mixed_precision"]) == (128, 1, "bf16")
    vittle_config = json.loads((out / "vittle_config.json").read_text())
    assert vittle_config["config"]["beta_text"] == 0.1 and vittle_config["training"]["recipe"] == "paper"
    assert {k: vittle_config["training"][k] for k in PAPER.values} == PAPER.values
    assert vittle_config["training"]["grad_accum"] == 8 and vittle_config["training"]["sources"]["lr"] == "preset"

    base = tmp_path / "baseline"  # explicit flags win; the baseline records its recipe too
    assert main(argv(base, "--baseline", "--lr", "1e-3", "--batch-size", "2", "--layer", "0")) == 0
    printed = capsys.readouterr().out
    rows = {line.split()[0]: line.split()[1:] for line in printed.splitlines()[1:14]}
    assert rows["lr"] == ["0.001", "flag"] and rows["grad_accum"] == ["64", "preset"] and rows["beta"][1] == "preset"
    saved = json.loads((base / "tune_config.json").read_text())
    assert (saved["lr"], saved["batch_size"], saved["grad_accum"], saved["visual_layer"]) == (1e-3, 2, 64, 0)
    assert saved["sources"]["lr"] == "flag" and saved["sources"]["beta"] == "preset"
    assert saved["recipe_name"] == "paper" and not (base / "vittle_config.json").exists()

    assert main(argv(tmp_path / "odd", "--batch-size", "3")) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "global batch of 128" in err
    assert not (tmp_path / "odd").exists()
