"""The built-in tiny LLaVA: a real LlavaForConditionalGeneration (CLIP vision tower + Llama decoder),
with a word-level tokenizer trained in-process, a LLaVA-1.5-style chat template and a PIL image processor.

Everything here is ordinary transformers: the saved directory loads with AutoProcessor and
AutoModelForImageTextToText like any hub checkpoint, which is what lets the `hf:` adapter serve it.
"""

from __future__ import annotations

import random

from tokenizers import Tokenizer, models, pre_tokenizers, trainers
from transformers import (
    CLIPImageProcessorPil,
    CLIPVisionConfig,
    LlamaConfig,
    LlavaConfig,
    LlavaForConditionalGeneration,
    LlavaProcessor,
    PreTrainedTokenizerFast,
)

from vittle_bench.adapters.base import SHORT_ANSWER_SUFFIX
from vittle_bench.adapters.closed_form import MC_SUFFIX, format_options
from vittle_bench.builtin.questions import POSITION_WORDS, multiple_choice_question, open_question
from vittle_bench.builtin.scenes import CATEGORIES, IMAGE_SIZE, draw_scene, scene_rng

PATCH_SIZE = 8
IMAGE_TOKENS = (IMAGE_SIZE // PATCH_SIZE) ** 2
IMAGE_TOKEN = "<image>"
SPECIAL_TOKENS = ["<pad>", "<s>", "</s>", "<unk>"]
# LLaVA-1.5's conversation format. Literal text is written as expressions because templates render with
# trim_blocks, which would otherwise swallow the newline after the image.
CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{% if message['role'] == 'user' %}{{ 'USER: ' }}"
    "{% for item in message['content'] %}"
    "{% if item['type'] == 'image' %}{{ '<image>\n' }}{% elif item['type'] == 'text' %}{{ item['text'] }}{% endif %}"
    "{% endfor %}{{ ' ASSISTANT:' }}"
    "{% else %}"
    "{% for item in message['content'] %}"
    "{% if item['type'] == 'text' %}{{ ' ' + item['text'] + eos_token }}{% endif %}{% endfor %}"
    "{% endif %}"
    "{% endfor %}"
)


def _tokenizer_corpus() -> list[str]:
    """Every word the built-in tasks and training turns can use (from a fixed-seed sweep of scenes)."""
    lines = ["USER: ASSISTANT: Context:", SHORT_ANSWER_SUFFIX, MC_SUFFIX, "Yes No yes no A B C D 1 2 3 4 5 6 7",
             "Is there a an object in the image ? . , : There is are objects object and a small large",
             " ".join(CATEGORIES), "Describe the objects in the image.",
             "How many objects are in the image? What colour is the",
             " ".join(f"Which object is {w}?" for w in POSITION_WORDS.values())]
    for i in range(400):
        rng = random.Random(i)
        objects = draw_scene(scene_rng(10_000, i)).objects
        mc = multiple_choice_question(objects, rng)
        lines += [mc.question, format_options(mc.choices), open_question(objects).answer]
    return lines


def build_processor() -> LlavaProcessor:
    word_level = Tokenizer(models.WordLevel(unk_token="<unk>"))
    word_level.pre_tokenizer = pre_tokenizers.Whitespace()
    word_level.train_from_iterator(_tokenizer_corpus(), trainers.WordLevelTrainer(special_tokens=SPECIAL_TOKENS))
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=word_level, bos_token="<s>", eos_token="</s>",
                                        pad_token="<pad>", unk_token="<unk>", padding_side="left")
    tokenizer.add_special_tokens({"additional_special_tokens": [IMAGE_TOKEN]})
    image_processor = CLIPImageProcessorPil(
        size={"shortest_edge": IMAGE_SIZE}, crop_size={"height": IMAGE_SIZE, "width": IMAGE_SIZE},
        image_mean=[0.5, 0.5, 0.5], image_std=[0.5, 0.5, 0.5], do_convert_rgb=True)
    return LlavaProcessor(image_processor=image_processor, tokenizer=tokenizer, patch_size=PATCH_SIZE,
                          vision_feature_select_strategy="default", chat_template=CHAT_TEMPLATE,
                          num_additional_image_tokens=1, image_token=IMAGE_TOKEN)


def build_model(processor: LlavaProcessor, hidden: int = 128, vision_layers: int = 3, text_layers: int = 2,
                heads: int = 4) -> LlavaForConditionalGeneration:
    tok = processor.tokenizer
    vision = CLIPVisionConfig(hidden_size=hidden, intermediate_size=hidden * 2, num_hidden_layers=vision_layers,
                              num_attention_heads=heads, image_size=IMAGE_SIZE, patch_size=PATCH_SIZE,
                              projection_dim=hidden)
    text = LlamaConfig(vocab_size=len(tok), hidden_size=hidden, intermediate_size=hidden * 3,
                       num_hidden_layers=text_layers, num_attention_heads=heads, num_key_value_heads=heads,
                       max_position_embeddings=512, pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id,
                       eos_token_id=tok.eos_token_id, tie_word_embeddings=False)
    # LlavaConfig's signature leaves out the keyword arguments every config accepts (pad_token_id here).
    config = LlavaConfig(vision_config=vision, text_config=text,  # type: ignore[call-arg]
                         image_token_index=tok.convert_tokens_to_ids(IMAGE_TOKEN), image_seq_length=IMAGE_TOKENS,
                         vision_feature_select_strategy="default", vision_feature_layer=-1,
                         projector_hidden_act="gelu", pad_token_id=tok.pad_token_id)
    model = LlavaForConditionalGeneration(config)
    for key in ("pad_token_id", "eos_token_id", "bos_token_id"):
        setattr(model.generation_config, key, getattr(tok, key))
    return model
