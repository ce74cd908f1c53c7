"""The paper's encoders, loaded from the hub (or a local copy): CLIP ViT-B/32 for images, XLM-R for text.

Pooling follows the reference code (deeplearning-wisc/mllmshift-emi): image = mean of the vision tower's
last-layer patch tokens (CLS dropped); text = XLM-R's *input-embedding layer* output (hidden_states[0]) averaged
over the non-padding tokens after the first. Both 768-d, so the EMI input x is their mean.
`model_id` may point at any checkpoint of the same architecture (a local directory works offline).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image

from vittle_bench.encoders import ENCODERS, encode_in_batches

CLIP_ID = "openai/clip-vit-base-patch32"
XLMR_ID = "xlm-roberta-base"


def _display_name(base: str, model_id: str, default_id: str) -> str:
    return base if model_id == default_id else f"{base}:{model_id}"


class ClipPatchEncoder:
    modality = "image"

    def __init__(self, model_id: str = CLIP_ID, device: str = "cpu", batch_size: int = 32) -> None:
        from transformers import CLIPImageProcessor, CLIPVisionModel

        self.processor = CLIPImageProcessor.from_pretrained(model_id)
        # PreTrainedModel.to is declared through functools.wraps(nn.Module.to), whose type does not bind self.
        self.model = CLIPVisionModel.from_pretrained(model_id).to(device).eval()  # type: ignore[arg-type]
        self.name = _display_name("clip-vit-b32", model_id, CLIP_ID)
        self.dim = self.model.config.hidden_size
        self.device, self.batch_size = device, batch_size

    @torch.inference_mode()
    def _encode_batch(self, images: Sequence[Image.Image]) -> np.ndarray:
        pixels = self.processor(images=[im.convert("RGB") for im in images], return_tensors="pt")["pixel_values"]
        hidden = self.model(pixel_values=pixels.to(self.device), output_hidden_states=True).hidden_states[-1]
        return hidden[:, 1:, :].mean(dim=1).float().cpu().numpy()

    def encode(self, items: Sequence[Image.Image]) -> np.ndarray:
        return encode_in_batches(items, self.batch_size, self.dim, self._encode_batch)


class XlmrInputEmbeddingEncoder:
    modality = "text"

    def __init__(self, model_id: str = XLMR_ID, device: str = "cpu", batch_size: int = 64,
                 max_length: int = 512) -> None:
        from transformers import AutoModel, AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(model_id)
        self.model = AutoModel.from_pretrained(model_id).to(device).eval()
        self.name = _display_name("xlm-r-base", model_id, XLMR_ID)
        self.dim = self.model.config.hidden_size
        self.device, self.batch_size, self.max_length = device, batch_size, max_length

    @torch.inference_mode()
    def _encode_batch(self, texts: Sequence[str]) -> np.ndarray:
        batch = self.tokenizer(list(texts), return_tensors="pt", padding=True, truncation=True,
                               max_length=self.max_length).to(self.device)
        # hidden_states[0] is the embedding module's output; calling it alone skips the 12 layers
        # (tests check it equals the full model's hidden_states[0]).
        hidden = self.model.embeddings(input_ids=batch["input_ids"])
        mask = batch["attention_mask"][:, 1:, None].to(hidden.dtype)
        return ((hidden[:, 1:, :] * mask).sum(1) / mask.sum(1).clamp(min=1)).float().cpu().numpy()

    def encode(self, items: Sequence[str]) -> np.ndarray:
        return encode_in_batches(items, self.batch_size, self.dim, self._encode_batch)


ENCODERS.register("clip-vit-b32")(ClipPatchEncoder)
ENCODERS.register("xlm-r-base")(XlmrInputEmbeddingEncoder)
