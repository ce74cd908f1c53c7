"""Prompt-and-preprocessing profiles of the `hf:` adapter: how one request becomes the text and the images that
the checkpoint's processor is given. A profile is part of the model fingerprint (name and settings), so answers
made under one profile are never served from the cache to another.

- `chat_template`: the processor's own chat template, one user turn with an image placeholder per image before
  the text; the images go to the processor as they are.
- `image_tokens_then_prompt`: PaliGemma (1 and 2), which has no chat template; chosen by its exact
  `config.model_type`.
- `llava_v1` / `vicuna_v1`: LLaVA's own evaluation prompt and image preprocessing (below); `llava_v1` is chosen
  for LLaVA-1.5 checkpoints (`is_llava_15`).

`--model-args prompt_profile=NAME` picks one; `auto` (the default) picks `llava_v1` for a LLaVA-1.5 checkpoint,
the family's profile where its `config.model_type` has one, and `chat_template` otherwise.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from PIL import Image

from vittle_bench.schema import Request


class PromptProfile(Protocol):
    name: str

    def prompt(self, request: Request) -> str:
        """The full text given to the processor for one request."""
        ...

    def images(self, images: Sequence[Image.Image]) -> list[Image.Image]:
        """The request's images as given to the processor."""
        ...

    def settings(self) -> dict[str, Any]:
        """Everything that decides what the model is shown (the fingerprint records it)."""
        ...


class _ProcessorProfile:
    """A profile that hands the images to the processor as they are."""

    name = ""

    def __init__(self, processor: Any) -> None:
        self.processor = processor

    def images(self, images: Sequence[Image.Image]) -> list[Image.Image]:
        return list(images)

    def settings(self) -> dict[str, Any]:
        return {"name": self.name}


class ChatTemplateProfile(_ProcessorProfile):
    """One user turn rendered by the processor's chat template, which is what a checkpoint was tuned on."""

    name = "chat_template"

    def prompt(self, request: Request) -> str:
        content = [{"type": "image"} for _ in request.images] + [{"type": "text", "text": request.prompt}]
        return self.processor.apply_chat_template([{"role": "user", "content": content}], add_generation_prompt=True,
                                                  tokenize=False)


class ImageTokensThenPromptProfile(_ProcessorProfile):
    """PaliGemma: trained on `<image>…<bos>prompt\\n`, of which the processor adds the `<bos>` and the newline
    once the image placeholders are in front of the prompt."""

    name = "image_tokens_then_prompt"

    def prompt(self, request: Request) -> str:
        return self.processor.image_token * len(request.images) + request.prompt


@dataclass(frozen=True)
class Conversation:
    """A LLaVA conversation of separator style TWO (LLaVA `llava/conversation.py`: `Conversation`,
    `SeparatorStyle.TWO`). `get_prompt` writes the system prompt and `sep`, then each message as
    `role + ": " + message` followed by `sep` after a user turn and `sep2` (the model's EOS) after an assistant
    turn, and an open turn as `role + ":"`."""

    system: str
    roles: tuple[str, str] = ("USER", "ASSISTANT")
    sep: str = " "
    sep2: str = "</s>"

    def question_prompt(self, message: str) -> str:
        """`get_prompt` after `append_message(USER, message)` and `append_message(ASSISTANT, None)`: the prompt
        LLaVA's evaluation scripts generate from."""
        return f"{self.system}{self.sep}{self.roles[0]}: {message}{self.sep}{self.roles[1]}:"


# llava/conversation.py: conv_llava_v1 (the `--conv-mode` default of llava/eval/model_vqa*.py, and what Vittle's
# vittle/eval/model_vqa.py and scripts/_eval_pope.sh use) and conv_vicuna_v1 (LLaVA-1.5's training conversation,
# `--version v1`, and the `--conv-mode` of most of LLaVA's scripts/v1_5/eval/*.sh). They differ in the system prompt.
CONVERSATIONS = {
    "llava_v1": Conversation("A chat between a curious human and an artificial intelligence assistant. "
                             "The assistant gives helpful, detailed, and polite answers to the human's questions."),
    "vicuna_v1": Conversation("A chat between a curious user and an artificial intelligence assistant. "
                              "The assistant gives helpful, detailed, and polite answers to the user's questions."),
}


def expand2square(image: Image.Image, background: tuple[int, ...]) -> Image.Image:
    """Pad to a square, the image centred, as LLaVA's `llava/mm_utils.py::expand2square` does."""
    width, height = image.size
    if width == height:
        return image
    side = max(width, height)
    result = Image.new(image.mode, (side, side), background)
    result.paste(image, ((side - width) // 2, (side - height) // 2))
    return result


class LlavaConversationProfile:
    """LLaVA's evaluation (`llava/eval/model_vqa.py`, `model_vqa_loader.py`; the same in Vittle's
    `vittle/eval/`): the question becomes `"<image>\\n" + question` (LLaVA-1.5 is trained with
    `mm_use_im_start_end False`), rendered by the conversation; each image is converted to RGB and padded to a
    square filled with the image processor's mean colour (`process_images` under `image_aspect_ratio pad`, which
    Vittle trains with, `scripts/_finetune_vittle.sh`) before the processor resizes it, so nothing is cropped.

    LLaVA's token ids start with one BOS (`tokenizer_image_token` keeps the tokenizer's): a tokenizer that adds
    none itself gets it written in front of the prompt. Several images get one `<image>\\n` each, as llava-hf's
    template writes them (LLaVA-1.5 evaluates one)."""

    def __init__(self, name: str, processor: Any) -> None:
        self.name, self.processor = name, processor
        self.conversation = CONVERSATIONS[name]
        tokenizer = processor.tokenizer
        adds_bos = tokenizer("")["input_ids"][:1] == [tokenizer.bos_token_id]
        self.bos_prefix = "" if adds_bos or tokenizer.bos_token is None else tokenizer.bos_token
        self.background = tuple(int(x * 255) for x in processor.image_processor.image_mean)

    def prompt(self, request: Request) -> str:
        message = f"{self.processor.image_token}\n" * len(request.images) + request.prompt
        return self.bos_prefix + self.conversation.question_prompt(message)

    def images(self, images: Sequence[Image.Image]) -> list[Image.Image]:
        return [expand2square(image.convert("RGB"), self.background) for image in images]

    def settings(self) -> dict[str, Any]:
        c = self.conversation
        return {"name": self.name, "system": c.system, "roles": list(c.roles), "sep": c.sep, "sep2": c.sep2,
                "bos_prefix": self.bos_prefix, "image_aspect_ratio": "pad", "pad_colour": list(self.background)}


PROFILE_NAMES = ("auto", "chat_template", "image_tokens_then_prompt", *CONVERSATIONS)
# Families whose prompt layout differs from the chat template, by exact `config.model_type`.
FAMILY_PROFILES = {"paligemma": "image_tokens_then_prompt"}
# Written next to a checkpoint by `vittle-bench tune`: the profile the checkpoint was trained with, which `auto`
# then keeps (a LLaVA-1.5 checkpoint tuned on its chat template is asked in that template, not in llava_v1).
TRAINED_PROFILE_FILE = "vittle_bench_prompt.json"


def is_llava_15(config: Any, tokenizer: Any) -> bool:
    """A LLaVA-1.5 checkpoint in transformers' format (llava-hf/llava-1.5-7b-hf, -13b-hf, and fine-tunes that
    keep their architecture and tokenizer). Recognised by what LLaVA-1.5 is, never by its name: model type `llava` with
    architecture `LlavaForConditionalGeneration` (LLaVA-NeXT, OneVision and ViP-LLaVA have model types of their
    own); a Llama/Vicuna language model (not BakLLaVA's Mistral, llava-interleave's Qwen2, Phi-3 or Gemma
    variants); a CLIP vision tower read at its penultimate layer without the CLS token (LLaVA-1.5's
    `mm_vision_select_layer -2`, Pixtral and SigLIP towers excluded); and `</s>` as the EOS that ends the
    llava_v1 conversation's assistant turns (a Llama-3-based LLaVA has its own EOS and template)."""
    if config.model_type != "llava" or config.architectures != ["LlavaForConditionalGeneration"]:
        return False
    return (config.text_config.model_type == "llama" and config.vision_config.model_type == "clip_vision_model"
            and config.vision_feature_layer == -2 and config.vision_feature_select_strategy == "default"
            and tokenizer.eos_token == CONVERSATIONS["llava_v1"].sep2)


def select_profile(name: str, config: Any, processor: Any) -> PromptProfile:
    """The profile `name` names (one of PROFILE_NAMES; the caller has checked it), `auto` resolved for this
    checkpoint."""
    if name == "auto":
        name = ("llava_v1" if is_llava_15(config, processor.tokenizer)
                else FAMILY_PROFILES.get(config.model_type, "chat_template"))
    if name in CONVERSATIONS:
        return LlavaConversationProfile(name, processor)
    if name == "image_tokens_then_prompt":
        return ImageTokensThenPromptProfile(processor)
    return ChatTemplateProfile(processor)
