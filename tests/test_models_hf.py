"""The `hf:` adapter on tiny random checkpoints of four families (LLaVA, Qwen2-VL, SmolVLM/Idefics3,
PaliGemma), each built in-process and saved with save_pretrained: the same adapter runs all of them end to
end, and batched left-padded greedy generation gives exactly the answers of a batch-1 loop."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

import tiny_vlms
from vittle_bench.cli import main
from vittle_bench.config import ConfigError
from vittle_bench.data.builtin.scenes import draw_scene, scene_rng
from vittle_bench.models import load_model
from vittle_bench.models.hf import HFModel
from vittle_bench.schema import Request

FAMILIES = list(tiny_vlms.FAMILIES)


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("families")
    return {family: tiny_vlms.build(family, root / family) for family in FAMILIES}


def _run(path: Path, batch_size: int, out: Path, cache: Path) -> list[dict]:
    # POPE prompts all tokenize to one length; the multiple-choice ones do not, so the batches are really padded.
    code = main(["run", "--model", f"hf:{path}", "--tasks", "shapes_pope_random,shapes_mc", "--shifts", "clean", "--limit", "8",
                 "--batch-size", str(batch_size), "--no-cache", "--output", str(out), "--cache-dir", str(cache)])
    assert code == 0
    return [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]


# LLaVA runs by default; the other families' end-to-end runs are slow-marked (~2 s each on an idle core) since
# test_multiple_images_per_sample_and_mixed_lengths already checks their batched == batch-1 answers by default.
@pytest.mark.parametrize("family", [f if f == "llava" else pytest.param(f, marks=pytest.mark.slow) for f in FAMILIES])
def test_same_adapter_end_to_end_batch_1_equals_batch_4(family, checkpoints, world_cache, tmp_path):
    one = _run(checkpoints[family], 1, tmp_path / "b1", world_cache)
    four = _run(checkpoints[family], 4, tmp_path / "b4", world_cache)
    assert len(one) == len(four) == 16
    assert all(r["error"] is None and r["raw_output"] is not None for r in one + four)
    assert [r["sample_id"] for r in one] == [r["sample_id"] for r in four]
    assert [r["raw_output"] for r in one] == [r["raw_output"] for r in four]
    # A comparison of constant outputs would prove nothing: the random model must answer input-dependently.
    assert len({r["raw_output"] for r in one}) > 1
    manifest = json.loads((tmp_path / "b4" / "manifest.json").read_text())
    assert manifest["models"][0]["fingerprint"] == HFModel.load(str(checkpoints[family])).fingerprint


@pytest.mark.parametrize("family", FAMILIES)
def test_multiple_images_per_sample_and_mixed_lengths(family, checkpoints):
    model = load_model(f"hf:{checkpoints[family]}")
    images = [draw_scene(scene_rng(0, i)).image for i in range(4)]
    requests = [Request("Is there a red circle in the image ?", (images[0],), 4),
                Request("How many objects are there ?", (images[1], images[2]), 6),
                Request("Describe the objects in the image .", (images[3],), 4),
                Request("Is there a blue square ?", (images[2], images[0]), 6)]
    batched = model.generate(requests)
    assert batched == [model.generate([r])[0] for r in requests]
    assert model.prompt(requests[1]).count(model.processor.image_token) == 2  # one placeholder per image


def test_prompt_layouts_come_from_the_checkpoint(checkpoints):
    request = Request("Is there a red circle ?", (draw_scene(scene_rng(0, 0)).image,))
    llava = load_model(f"hf:{checkpoints['llava']}")
    assert llava.prompt(request) == "<s>USER: <image>\nIs there a red circle ? ASSISTANT:"
    qwen = load_model(f"hf:{checkpoints['qwen2_vl']}")
    assert qwen.prompt(request).endswith("<|im_end|>\n<|im_start|>assistant\n")
    paligemma = load_model(f"hf:{checkpoints['paligemma']}")  # registered hook: no chat template in PaliGemma
    assert paligemma.layout.name == "image_tokens_then_prompt"
    assert paligemma.prompt(request) == "<image>Is there a red circle ?"


def test_fingerprint_tracks_weights_dtype_and_generation(checkpoints, tmp_path):
    copy = tmp_path / "llava"
    shutil.copytree(checkpoints["llava"], copy)
    base = HFModel.load(str(copy))
    info = base.fingerprint_info
    assert info["weights"] and info["dtype"] == "float32" and info["generation"]["do_sample"] is False
    assert HFModel.load(str(copy)).fingerprint == base.fingerprint
    assert HFModel.load(str(copy), dtype="bfloat16").fingerprint != base.fingerprint
    config = json.loads((copy / "generation_config.json").read_text())
    (copy / "generation_config.json").write_text(json.dumps({**config, "repetition_penalty": 1.3}))
    changed = HFModel.load(str(copy))
    assert changed.fingerprint_info["generation"]["repetition_penalty"] == 1.3
    assert changed.fingerprint != base.fingerprint
    model = changed.model
    with torch.no_grad():
        next(model.parameters()).add_(1.0)
    model.save_pretrained(copy)
    assert HFModel.load(str(copy)).fingerprint_info["weights"] != changed.fingerprint_info["weights"]


def test_hub_id_loads_from_the_hub_cache_and_pins_the_commit(checkpoints, tmp_path):
    """A hub id goes through the same path; the fingerprint records the resolved commit, not `main`."""
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "hub" / "models--tiny--llava"
    shutil.copytree(checkpoints["llava"], repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    model = load_model("hf:tiny/llava", cache_dir=str(tmp_path / "hub"))
    assert model.name == "hf:tiny/llava"
    assert model.fingerprint_info["revision"] == commit and model.fingerprint_info["weights"] is None
    request = Request("Is there a red circle ?", (draw_scene(scene_rng(0, 0)).image,), 4)
    assert model.generate([request]) == load_model(f"hf:{checkpoints['llava']}").generate([request])


def test_vittle_checkpoint_loads_through_hf(checkpoints, tmp_path):
    from vittle_bench.vittle import VittleConfig, attach_bottleneck, save_vittle

    directory = tmp_path / "vittle"
    shutil.copytree(checkpoints["llava"], directory)
    base = HFModel.load(str(directory))
    attach_bottleneck(base.model, VittleConfig())
    save_vittle(base.model, directory)
    loaded = HFModel.load(str(directory))
    assert loaded.vittle is not None and loaded.fingerprint_info["vittle"] is True
    assert loaded.fingerprint != base.fingerprint


def test_missing_chat_template_is_a_user_error_with_a_remedy(checkpoints, tmp_path):
    directory = tmp_path / "no-template"
    shutil.copytree(checkpoints["llava"], directory)
    template = directory / "chat_template.jinja"
    kept = tmp_path / "template.jinja"
    template.rename(kept)
    with pytest.raises(ConfigError, match="chat_template="):
        HFModel.load(str(directory))
    model = HFModel.load(str(directory), chat_template=str(kept))
    assert model.prompt(Request("Hi", ())) == "<s>USER: Hi ASSISTANT:"


def test_bad_model_args_exit_2(checkpoints, tmp_path, world_cache, capsys):
    for args, expected in (("dtype=float8", "dtype must be one of"), ("dtpye=bfloat16", "unknown --model-args")):
        code = main(["run", "--model", f"hf:{checkpoints['llava']}", "--model-args", args, "--tasks", "shapes_pope_random",
                     "--shifts", "clean", "--limit", "1", "--output", str(tmp_path / "o"), "--cache-dir", str(world_cache)])
        assert code == 2 and expected in capsys.readouterr().err


def test_trust_remote_code_only_when_passed(checkpoints, monkeypatch):
    import transformers

    seen = []
    original = transformers.AutoProcessor.from_pretrained

    def spy(*args, **kwargs):
        seen.append(kwargs["trust_remote_code"])
        return original(*args, **kwargs)

    monkeypatch.setattr(transformers.AutoProcessor, "from_pretrained", spy)
    HFModel.load(str(checkpoints["llava"]))
    HFModel.load(str(checkpoints["llava"]), trust_remote_code="yes")  # only a parsed `true` counts
    HFModel.load(str(checkpoints["llava"]), trust_remote_code=True)
    assert seen == [False, False, True]
