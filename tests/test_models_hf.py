"""The `hf:` adapter on tiny random checkpoints of four families (LLaVA, also as LLaVA-1.5, Qwen2-VL,
SmolVLM/Idefics3, PaliGemma), each built in-process and saved with save_pretrained: the same adapter runs all of
them end to end, batched left-padded greedy generation gives exactly the answers of a batch-1 loop, and a
LLaVA-1.5 checkpoint is prompted and its images padded exactly as LLaVA's own evaluation does."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from PIL import Image

from vittle_bench.builtin.scenes import draw_scene, scene_rng
from vittle_bench.cli import main
from vittle_bench.config import ConfigError
from vittle_bench.models import load_model
from vittle_bench.models.hf import HFModel
from vittle_bench.models.prompt_profiles import is_llava_15
from vittle_bench.schema import Request

import tiny_vlms

FAMILIES = list(tiny_vlms.FAMILIES)


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("families")
    return {family: tiny_vlms.build(family, root / family) for family in FAMILIES}


def _run(path: Path, batch_size: int, out: Path, cache: Path) -> list[dict]:
    # POPE prompts all tokenize to one length; the multiple-choice ones do not, so the batches are really padded.
    code = main(["run", "--model", f"hf:{path}", "--tasks", "shapes_pope_random,shapes_mc", "--shifts", "clean",
                 "--limit", "8", "--batch-size", str(batch_size), "--no-cache", "--output", str(out),
                 "--cache-dir", str(cache)])
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
    assert paligemma.profile.name == "image_tokens_then_prompt"
    assert paligemma.prompt(request) == "<image>Is there a red circle ?"


# LLaVA's rules, transcribed from haotian-liu/LLaVA (the Vittle code has the same files under vittle/):
# llava/conversation.py: conv_llava_v1's system prompt, roles ("USER", "ASSISTANT"), SeparatorStyle.TWO with
# sep " " and sep2 "</s>", and Conversation.get_prompt's TWO branch; llava/eval/model_vqa.py: the question is
# DEFAULT_IMAGE_TOKEN + '\n' + qs (mm_use_im_start_end False), then USER qs and an open ASSISTANT turn.
LLAVA_V1_SYSTEM = ("A chat between a curious human and an artificial intelligence assistant. "
                   "The assistant gives helpful, detailed, and polite answers to the human's questions.")


def llava_get_prompt(system: str, messages: list[tuple[str, str | None]], sep: str = " ", sep2: str = "</s>") -> str:
    seps = [sep, sep2]
    ret = system + seps[0]
    for i, (role, message) in enumerate(messages):
        ret += role + ": " + message + seps[i % 2] if message else role + ":"
    return ret


def llava_expand2square(pil_img: Image.Image, background_color: tuple[int, ...]) -> Image.Image:
    """llava/mm_utils.py::expand2square, as process_images calls it under image_aspect_ratio pad."""
    width, height = pil_img.size
    if width == height:
        return pil_img
    if width > height:
        result = Image.new(pil_img.mode, (width, width), background_color)
        result.paste(pil_img, (0, (width - height) // 2))
        return result
    result = Image.new(pil_img.mode, (height, height), background_color)
    result.paste(pil_img, ((height - width) // 2, 0))
    return result


def test_llava_15_gets_llavas_llava_v1_prompt_character_for_character(checkpoints):
    question = "Is there a red circle ?"
    expected = llava_get_prompt(LLAVA_V1_SYSTEM, [("USER", "<image>" + "\n" + question), ("ASSISTANT", None)])
    request = Request(question, (draw_scene(scene_rng(0, 0)).image,), 4)

    model = load_model(f"hf:{checkpoints['llava_1_5']}")  # recognised as LLaVA-1.5: llava_v1 by default
    assert model.prompt(request) == expected
    ids = model.processor_inputs([request])["input_ids"][0].tolist()
    bos = model.tokenizer.bos_token_id
    assert ids[0] == bos and ids.count(bos) == 1  # the BOS LLaVA's tokenizer_image_token keeps, once
    assert model.fingerprint_info["profile"] == {
        "name": "llava_v1", "system": LLAVA_V1_SYSTEM, "roles": ["USER", "ASSISTANT"], "sep": " ", "sep2": "</s>",
        "bos_prefix": "", "image_aspect_ratio": "pad", "pad_colour": [122, 116, 104]}

    own = load_model(f"hf:{checkpoints['llava_1_5']}", prompt_profile="chat_template")
    assert own.prompt(request) == f"USER: <image>\n{question} ASSISTANT:"  # llava-hf's template
    vicuna = load_model(f"hf:{checkpoints['llava_1_5']}", prompt_profile="vicuna_v1")  # LLaVA's conv_vicuna_v1
    assert vicuna.prompt(request) == expected.replace("curious human", "curious user").replace("human's", "user's")
    assert len({model.fingerprint, own.fingerprint, vicuna.fingerprint}) == 3

    # The built-in architecture (CLIP's last layer, its own template) is not LLaVA-1.5; asked for llava_v1, its
    # tokenizer adds no BOS, so the profile writes it.
    builtin_arch = load_model(f"hf:{checkpoints['llava']}")
    assert builtin_arch.profile.name == "chat_template"
    forced = load_model(f"hf:{checkpoints['llava']}", prompt_profile="llava_v1")
    assert forced.prompt(request) == "<s>" + expected
    ids = forced.processor_inputs([request])["input_ids"][0].tolist()
    assert ids[0] == forced.tokenizer.bos_token_id and ids.count(forced.tokenizer.bos_token_id) == 1


@pytest.mark.parametrize(("change", "is_15"), [
    ({}, True), ({"vision_feature_layer": -1}, False), ({"text_config": {"model_type": "mistral"}}, False),
    ({"vision_config": {"model_type": "siglip_vision_model"}}, False), ({"eos": "<|eot_id|>"}, False),
    ({"architectures": None}, False), ({"next": True}, False)])
def test_llava_15_is_recognised_by_config_and_tokenizer(change, is_15):
    """llava-hf/llava-1.5-7b-hf's config (LlavaConfig's defaults) and Vicuna's `</s>`; each change is a LLaVA of
    another kind: the built-in one, BakLLaVA (Mistral), a SigLIP tower, a Llama-3 LLaVA, LLaVA-NeXT."""
    from types import SimpleNamespace

    from transformers import LlavaConfig, LlavaNextConfig

    kwargs = {k: v for k, v in change.items() if k not in ("eos", "architectures", "next")}
    config = (LlavaNextConfig if change.get("next") else LlavaConfig)(**kwargs)
    architecture = type(config).__name__.replace("Config", "ForConditionalGeneration")
    config.architectures = change.get("architectures", [architecture])
    assert is_llava_15(config, SimpleNamespace(eos_token=change.get("eos", "</s>"))) is is_15


def test_manifest_records_the_prompt_profile(checkpoints, world_cache, tmp_path):
    code = main(["run", "--model", f"hf:{checkpoints['llava_1_5']}", "--tasks", "shapes_pope_random",
                 "--shifts", "clean", "--limit", "2", "--no-cache", "--output", str(tmp_path / "run"),
                 "--cache-dir", str(world_cache)])
    assert code == 0
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest["models"][0]["fingerprint_info"]["profile"]["name"] == "llava_v1"
    assert manifest["models"][0]["fingerprint_info"]["profile"]["image_aspect_ratio"] == "pad"


def test_builtin_models_keep_their_own_template():
    model = load_model("builtin:tiny-llava")
    assert model.fingerprint_info["profile"] == {"name": "chat_template"}
    assert model.prompt(Request("Is there a ring ?", ())) == "<s>USER: Is there a ring ? ASSISTANT:"


def test_llava_v1_pads_images_to_a_square_as_expand2square(checkpoints):
    model = load_model(f"hf:{checkpoints['llava_1_5']}")
    scene = draw_scene(scene_rng(0, 1)).image
    mean = model.processor.image_processor.image_mean
    background = tuple(int(x * 255) for x in mean)  # llava/mm_utils.py::process_images
    assert background == (122, 116, 104)  # the colour LLaVA's conversation.py pads with by default
    for image in (scene.crop((0, 0, 56, 31)), scene.crop((0, 0, 23, 56)), scene):  # wide, tall, square
        padded = model.profile.images([image])[0]
        reference = llava_expand2square(image.convert("RGB"), background)
        assert padded.size == reference.size and padded.tobytes() == reference.tobytes()
        pixels = model.processor_inputs([Request("Describe the image .", (image,))])["pixel_values"]
        expected = model.processor.image_processor([reference], return_tensors="pt")["pixel_values"]
        torch.testing.assert_close(pixels, expected, rtol=0, atol=0)
    wide = scene.crop((0, 0, 56, 31))
    cropped = load_model(f"hf:{checkpoints['llava_1_5']}", prompt_profile="chat_template")
    assert not torch.equal(cropped.processor_inputs([Request("Describe the image .", (wide,))])["pixel_values"],
                           model.processor_inputs([Request("Describe the image .", (wide,))])["pixel_values"])


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
    for args, expected in (
            ("dtype=float8", "dtype must be one of"), ("dtpye=bfloat16", "unknown --model-args"),
            ("prompt_profile=llava_v2", "prompt_profile must be one of auto, chat_template"),
            ("prompt_profile=llava_v1,chat_template=t.jinja", "applies to prompt_profile=chat_template")):
        code = main(["run", "--model", f"hf:{checkpoints['llava']}", "--model-args", args,
                     "--tasks", "shapes_pope_random", "--shifts", "clean", "--limit", "1",
                     "--output", str(tmp_path / "o"), "--cache-dir", str(world_cache)])
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


def test_a_checkpoint_tuned_on_its_chat_template_is_asked_in_it(checkpoints, tmp_path):
    """`vittle-bench tune` renders conversations with the processor's chat template and records that next to the
    checkpoint, so `auto` keeps it for a LLaVA-1.5 checkpoint instead of switching to llava_v1."""
    from vittle_bench.models.prompt_profiles import TRAINED_PROFILE_FILE

    tuned = Path(shutil.copytree(checkpoints["llava_1_5"], tmp_path / "tuned"))
    (tuned / TRAINED_PROFILE_FILE).write_text(json.dumps({"prompt_profile": "chat_template"}))
    assert load_model(f"hf:{tuned}").profile.name == "chat_template"
    assert load_model(f"hf:{tuned}", prompt_profile="llava_v1").profile.name == "llava_v1"  # an explicit choice wins
    assert load_model(f"hf:{checkpoints['llava_1_5']}").profile.name == "llava_v1"
