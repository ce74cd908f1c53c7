"""Tiny random-weight VLMs of six families (LLaVA in two forms), built in-process and saved with
`save_pretrained`, so tests run the same `from_pretrained` path users hit with hub checkpoints. Image
processors are the PIL-backed classes (the default fast ones need torchvision, which the suite does not
depend on); what else a family needs to build and reload offline is in its builder's docstring.

Each builder writes a checkpoint directory (model + processor + chat template) and returns it. Weights are
random; the tokenizer is a word-level one trained on the built-in world's vocabulary.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
from tokenizers import Tokenizer, models, pre_tokenizers, processors, trainers
from transformers import PreTrainedTokenizerFast

from vittle_bench.adapters.base import SHORT_ANSWER_SUFFIX
from vittle_bench.adapters.closed_form import MC_SUFFIX
from vittle_bench.builtin.scenes import CATEGORIES

CORPUS = [SHORT_ANSWER_SUFFIX, MC_SUFFIX, "Is there a an object in the image ? Yes No yes no A B C D 1 2 3 4",
          " ".join(CATEGORIES), "Describe the objects in the image . How many objects are there ?"]
HIDDEN = 32


def word_tokenizer(specials: list[str], corpus: list[str] = CORPUS, bos_first: str | None = None,
                   **kwargs) -> PreTrainedTokenizerFast:
    """A left-padding word-level tokenizer; specials come first so their ids are small and stable. With
    `bos_first`, encoding puts that token in front of every text, as Llama's tokenizer does with `<s>`."""
    tok = Tokenizer(models.WordLevel(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.train_from_iterator(corpus, trainers.WordLevelTrainer(special_tokens=["<pad>", "<unk>", *specials]))
    if bos_first:
        tok.post_processor = processors.TemplateProcessing(single=f"{bos_first} $A", pair=f"{bos_first} $A $B",
                                                           special_tokens=[(bos_first, tok.token_to_id(bos_first))])
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", unk_token="<unk>", padding_side="left",
                                   **kwargs)


def _text_config(vocab: int, tok: PreTrainedTokenizerFast, **extra) -> dict:
    return dict(vocab_size=vocab, hidden_size=HIDDEN, intermediate_size=2 * HIDDEN, num_hidden_layers=2,
                num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=1024,
                pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id,
                bos_token_id=tok.bos_token_id, initializer_range=0.2, **extra)


def _save(model, processor, path: Path) -> Path:
    tok = processor.tokenizer
    for key in ("pad_token_id", "eos_token_id", "bos_token_id"):
        setattr(model.generation_config, key, getattr(tok, key))
    model.save_pretrained(path)
    processor.save_pretrained(path)
    return path


def build_llava(path: Path) -> Path:
    """The built-in tiny LLaVA architecture (CLIP vision tower + Llama), random weights."""
    from vittle_bench.builtin.tiny_llava import build_model, build_processor

    processor = build_processor()
    return _save(build_model(processor, hidden=HIDDEN, vision_layers=1, text_layers=2, heads=2), processor, path)


# What llava-hf's LLaVA-1.5 template renders for one user turn: `USER: <image>\n{text} ASSISTANT:`.
LLAVA_HF_TEMPLATE = (
    "{% for message in messages %}{{ message['role'].upper() + ': ' }}"
    "{% for item in message['content'] %}{% if item['type'] == 'image' %}{{ '<image>\n' }}{% endif %}{% endfor %}"
    "{% for item in message['content'] %}{% if item['type'] == 'text' %}{{ item['text'] + ' ' }}{% endif %}{% endfor %}"
    "{% endfor %}{% if add_generation_prompt %}{{ 'ASSISTANT:' }}{% endif %}")


def build_llava_1_5(path: Path) -> Path:
    """LLaVA-1.5 as llava-hf converts it (llava-hf/llava-1.5-7b-hf's config, shrunk): a CLIP tower read at its
    penultimate layer without CLS, a Llama decoder, `</s>` as EOS, a tokenizer that puts `<s>` in front like
    Llama's, CLIP's mean and std with resize + centre crop, and llava-hf's chat template. Random weights."""
    from transformers import (
        CLIPImageProcessorPil,
        CLIPVisionConfig,
        LlamaConfig,
        LlavaConfig,
        LlavaForConditionalGeneration,
        LlavaProcessor,
    )

    system = ("A chat between a curious human and an artificial intelligence assistant. The assistant gives helpful, "
              "detailed, and polite answers to the human's questions. USER: ASSISTANT: user")
    tok = word_tokenizer(["<s>", "</s>", "<image>"], corpus=[*CORPUS, system], bos_first="<s>", bos_token="<s>",
                         eos_token="</s>")
    image_size, patch = 16, 8
    image_processor = CLIPImageProcessorPil(size={"shortest_edge": image_size},
                                            crop_size={"height": image_size, "width": image_size})
    processor = LlavaProcessor(image_processor=image_processor, tokenizer=tok, patch_size=patch,
                               vision_feature_select_strategy="default", num_additional_image_tokens=1,
                               image_token="<image>", chat_template=LLAVA_HF_TEMPLATE)
    config = LlavaConfig(
        vision_config=CLIPVisionConfig(hidden_size=HIDDEN, intermediate_size=2 * HIDDEN, num_hidden_layers=2,
                                       num_attention_heads=2, image_size=image_size, patch_size=patch),
        text_config=LlamaConfig(**_text_config(len(tok), tok)), image_token_index=tok.convert_tokens_to_ids("<image>"),
        image_seq_length=(image_size // patch) ** 2, vision_feature_layer=-2, vision_feature_select_strategy="default",
        pad_token_id=tok.pad_token_id)
    return _save(LlavaForConditionalGeneration(config), processor, path)


def build_llava_next(path: Path) -> Path:
    """LLaVA-NeXT (any-resolution tiling: a base view plus grid tiles, and an image newline per row of features),
    with llava-hf's LLaVA-1.5 template. Random weights."""
    from transformers import (
        CLIPVisionConfig,
        LlamaConfig,
        LlavaNextConfig,
        LlavaNextForConditionalGeneration,
        LlavaNextImageProcessorPil,
        LlavaNextProcessor,
    )

    tok = word_tokenizer(["<s>", "</s>", "<image>"], bos_first="<s>", bos_token="<s>", eos_token="</s>")
    image_size, patch, pinpoints = 16, 8, [[16, 16], [16, 32], [32, 16], [32, 32]]
    image_processor = LlavaNextImageProcessorPil(size={"shortest_edge": image_size}, image_grid_pinpoints=pinpoints,
                                                 crop_size={"height": image_size, "width": image_size})
    processor = LlavaNextProcessor(image_processor=image_processor, tokenizer=tok, patch_size=patch,
                                   vision_feature_select_strategy="default", num_additional_image_tokens=1,
                                   image_token="<image>", chat_template=LLAVA_HF_TEMPLATE)
    config = LlavaNextConfig(
        vision_config=CLIPVisionConfig(hidden_size=HIDDEN, intermediate_size=2 * HIDDEN, num_hidden_layers=2,
                                       num_attention_heads=2, image_size=image_size, patch_size=patch),
        text_config=LlamaConfig(**_text_config(len(tok), tok)), image_token_index=tok.convert_tokens_to_ids("<image>"),
        image_grid_pinpoints=pinpoints, vision_feature_layer=-2, vision_feature_select_strategy="default",
        image_seq_length=(image_size // patch) ** 2, pad_token_id=tok.pad_token_id)
    return _save(LlavaNextForConditionalGeneration(config), processor, path)


QWEN_TEMPLATE = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' }}"
    "{% for item in message['content'] %}{% if item['type'] == 'image' %}"
    "{{ '<|vision_start|><|image_pad|><|vision_end|>' }}{% elif item['type'] == 'text' %}{{ item['text'] }}{% endif %}"
    "{% endfor %}{{ '<|im_end|>\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")


def _qwen_parts(config_class, vision_config: dict):
    """A Qwen2-VL-style config and processor: the `<|image_pad|>` tokenizer, and in place of Qwen's own processor
    (which wants a torchvision video processor) transformers' video-less PaddleOCRVLProcessor, which does the same
    `<|image_pad|>` expansion and reloads through AutoProcessor."""
    from transformers import PaddleOCRVLProcessor, Qwen2VLImageProcessorPil

    tok = word_tokenizer(["<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>", "<|image_pad|>",
                          "<|video_pad|>"], eos_token="<|im_end|>",
                         extra_special_tokens={"image_token": "<|image_pad|>"})
    image_processor = Qwen2VLImageProcessorPil(min_pixels=28 * 28 * 4, max_pixels=56 * 56, patch_size=14,
                                               merge_size=2, temporal_patch_size=2)
    processor = PaddleOCRVLProcessor(image_processor=image_processor, tokenizer=tok, chat_template=QWEN_TEMPLATE)
    ids = tok.convert_tokens_to_ids
    config = config_class(
        text_config=_text_config(len(tok), tok, rope_scaling={"type": "mrope", "mrope_section": [2, 3, 3]}),
        vision_config=vision_config, image_token_id=tok.image_token_id, video_token_id=ids("<|video_pad|>"),
        vision_start_token_id=ids("<|vision_start|>"), vision_end_token_id=ids("<|vision_end|>"))
    return config, processor


def build_qwen2_vl(path: Path) -> Path:
    """Qwen2-VL."""
    from transformers import Qwen2VLConfig, Qwen2VLForConditionalGeneration

    config, processor = _qwen_parts(Qwen2VLConfig, dict(
        depth=1, embed_dim=HIDDEN, hidden_size=HIDDEN, num_heads=2, patch_size=14, spatial_merge_size=2,
        temporal_patch_size=2, in_channels=3, mlp_ratio=2))
    return _save(Qwen2VLForConditionalGeneration(config), processor, path)


def build_qwen2_5_vl(path: Path) -> Path:
    """Qwen2.5-VL (windowed-attention vision tower with an RMSNorm / SwiGLU merger), with Qwen2-VL's tokenizer and
    processor."""
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    config, processor = _qwen_parts(Qwen2_5_VLConfig, dict(
        depth=2, hidden_size=HIDDEN, intermediate_size=2 * HIDDEN, num_heads=2, patch_size=14, spatial_merge_size=2,
        temporal_patch_size=2, in_channels=3, out_hidden_size=HIDDEN, window_size=56, fullatt_block_indexes=[1]))
    return _save(Qwen2_5_VLForConditionalGeneration(config), processor, path)


IDEFICS3_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}{{ message['role'] | capitalize }}{{ ':' }}"
    "{% for item in message['content'] %}{% if item['type'] == 'image' %}{{ '<image>' }}"
    "{% elif item['type'] == 'text' %}{{ ' ' + item['text'] }}{% endif %}{% endfor %}{{ '<end_of_utterance>\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ 'Assistant:' }}{% endif %}")


def build_idefics3(path: Path) -> Path:
    """SmolVLM's model with Idefics3's processor (SmolVLM's own processor needs num2words and a video processor)."""
    from transformers import (
        Idefics3ImageProcessorPil,
        Idefics3Processor,
        SmolVLMConfig,
        SmolVLMForConditionalGeneration,
    )

    grid = [f"<row_{i + 1}_col_{j + 1}>" for i in range(6) for j in range(6)]
    tok = word_tokenizer(["<s>", "</s>", "<image>", "<fake_token_around_image>", "<global-img>",
                          "<end_of_utterance>", *grid], bos_token="<s>", eos_token="<end_of_utterance>")
    image_size, patch = 32, 8
    image_processor = Idefics3ImageProcessorPil(do_image_splitting=False, size={"longest_edge": image_size},
                                                max_image_size={"longest_edge": image_size})
    processor = Idefics3Processor(image_processor=image_processor, tokenizer=tok,
                                  image_seq_len=(image_size // patch) ** 2 // 4, chat_template=IDEFICS3_TEMPLATE)
    config = SmolVLMConfig(
        vision_config=dict(hidden_size=HIDDEN, intermediate_size=2 * HIDDEN, num_hidden_layers=1, num_attention_heads=2,
                           image_size=image_size, patch_size=patch),
        text_config=_text_config(len(tok), tok), scale_factor=2, image_token_id=tok.convert_tokens_to_ids("<image>"),
        pad_token_id=tok.pad_token_id)
    return _save(SmolVLMForConditionalGeneration(config), processor, path)


def build_paligemma(path: Path) -> Path:
    """PaliGemma: SigLIP + Gemma; no chat template (the processor lays out image tokens, BOS and the newline).
    Its processor adds ~1,150 <loc>/<seg> tokens, so the vocabulary is sized after building it."""
    from transformers import (
        PaliGemmaConfig,
        PaliGemmaForConditionalGeneration,
        PaliGemmaProcessor,
        SiglipImageProcessorPil,
    )

    tok = word_tokenizer(["<bos>", "<eos>", "<image>"], bos_token="<bos>", eos_token="<eos>",
                         extra_special_tokens={"image_token": "<image>"})
    image_size, patch = 32, 8
    image_processor = SiglipImageProcessorPil(size={"height": image_size, "width": image_size})
    image_processor.image_seq_length = (image_size // patch) ** 2
    processor = PaliGemmaProcessor(image_processor=image_processor, tokenizer=tok)
    config = PaliGemmaConfig(
        vision_config=dict(hidden_size=HIDDEN, intermediate_size=2 * HIDDEN, num_hidden_layers=1, num_attention_heads=2,
                           image_size=image_size, patch_size=patch, projection_dim=HIDDEN),
        text_config=dict(model_type="gemma", head_dim=16, **_text_config(len(tok), tok)),
        projection_dim=HIDDEN, image_token_index=tok.image_token_id, pad_token_id=tok.pad_token_id)
    return _save(PaliGemmaForConditionalGeneration(config), processor, path)


FAMILIES: dict[str, Callable[[Path], Path]] = {
    "llava": build_llava, "llava_1_5": build_llava_1_5, "llava_next": build_llava_next, "qwen2_vl": build_qwen2_vl,
    "qwen2_5_vl": build_qwen2_5_vl, "idefics3": build_idefics3, "paligemma": build_paligemma}


def build(family: str, path: Path, seed: int = 0) -> Path:
    torch.manual_seed(seed)
    return FAMILIES[family](path)
