"""Visual Instruction Bottleneck (Vittle) as a hook-based add-on to any Hugging Face image-text-to-text model.

Why hooks: the public Vittle code forks LLaMA's forward loop, which ties it to one model family and one
transformers version. Here a forward hook on one decoder layer replaces that layer's output, so the same
code serves LLaVA, Qwen-VL, Idefics, ... (any model whose decoder layers we can find).

Two deliberate departures from the public code, following the paper: image positions come from the
image-token mask (``input_ids == image_token_id``), not a fixed position split, and the KL is the standard
Gaussian KL (see ``priors.py``). The posterior log-variance is clamped with ``torch.clamp`` (gradient 0 outside
the range) instead of editing ``.data``; the learnable prior's log-variance, a parameter that would stick
at a bound clamped in the graph, gets the reference's ``.data`` clamp (``priors.LearnableGaussianPrior``).
"""

from __future__ import annotations

import inspect
import json
import math
import os
import warnings
import weakref
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

import torch
from torch import nn

from .priors import build_prior

BOTTLENECK_ATTR = "vittle_bottleneck"
CONFIG_FILE = "vittle_config.json"
WEIGHTS_FILE = "vittle_bottleneck.safetensors"
IGNORE_INDEX = -100
_IGNORE_ON_SAVE = "_keys_to_ignore_on_save"  # transformers' per-instance set of state-dict keys left unsaved
_HANDLES: weakref.WeakKeyDictionary[nn.Module, VittleHandle] = weakref.WeakKeyDictionary()


@dataclass
class VittleConfig:
    """Hyper-parameters of the bottleneck (paper defaults).

    ``visual_layer`` / ``text_layer``: an ``int`` is a 0-based decoder-layer index (negative counts from
    the end); a ``float`` in (0, 1] is a fraction of depth, resolved as
    ``min(n_layers - 1, int(fraction * n_layers))`` so 0.75 gives layer 24 of a 32-layer LLaMA, the
    paper's placement. ``image_token_id=None`` means "read it from the model config".
    """

    visual_layer: float | int = 0.75
    text_layer: float | int = 0.75
    prior: str = "fixed"
    beta_visual: float = 0.1
    beta_text: float = 0.1
    alpha_max: float = 0.5
    logvar_clamp: float = 2.3
    ramp_steepness: float = 10.0
    image_token_id: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> VittleConfig:
        """Build from a dict; unknown keys are ignored so newer files still load."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


def resolve_layer_index(spec: float | int, n_layers: int) -> int:
    """Turn a layer index or depth fraction into a 0-based index (see ``VittleConfig``)."""
    if isinstance(spec, bool) or not isinstance(spec, (int, float)):
        raise TypeError(f"layer spec must be an int index or a float fraction, got {spec!r}")
    if isinstance(spec, float):
        if not 0.0 < spec <= 1.0:
            raise ValueError(f"layer fraction must lie in (0, 1], got {spec}")
        return min(n_layers - 1, int(spec * n_layers))
    index = spec + n_layers if spec < 0 else spec
    if not 0 <= index < n_layers:
        raise ValueError(f"layer index {spec} out of range for {n_layers} decoder layers")
    return index


def resolve_decoder_layers(model: nn.Module) -> nn.ModuleList:
    """Find the language model's decoder layers: ``get_decoder().layers`` first, then common paths."""
    candidates = []
    get_decoder = getattr(model, "get_decoder", None)
    if callable(get_decoder):
        try:
            candidates.append(get_decoder())
        except Exception:  # some wrappers raise instead of returning None
            pass
    paths = ["model.language_model", "language_model.model", "language_model", "model", "model.decoder"]
    for path in paths:
        obj: Any = model
        for part in path.split("."):
            obj = getattr(obj, part, None)
        candidates.append(obj)
    for obj in candidates:
        layers = getattr(obj, "layers", None)
        if isinstance(layers, nn.ModuleList) and len(layers) > 0:
            return layers
    raise ValueError(
        f"cannot find decoder layers on {type(model).__name__}: tried get_decoder().layers and "
        f"{', '.join(p + '.layers' for p in paths)}"
    )


class PosteriorHead(nn.Module):
    """q(z | h): ``Linear(d, d) -> GELU -> Linear(d, 2d)`` giving mu and a clamped log-variance."""

    def __init__(self, hidden_size: int, logvar_clamp: float = 2.3) -> None:
        super().__init__()
        self.logvar_clamp = float(logvar_clamp)
        d = hidden_size
        self.net = nn.Sequential(nn.Linear(d, d), nn.GELU(), nn.Linear(d, 2 * d))

    @property
    def input_weight(self) -> torch.Tensor:
        """The first linear layer's weight: the head's dtype and device."""
        layer = self.net[0]
        assert isinstance(layer, nn.Linear)
        return layer.weight

    def forward(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu, logvar = self.net(h).chunk(2, dim=-1)
        return mu, logvar.clamp(-self.logvar_clamp, self.logvar_clamp)


class InstructionBottleneck(nn.Module):
    """One posterior head and one prior per modality, plus the alpha ramp.

    Training: z = mu + sigma * eps and h' = (1 - alpha) h + alpha z with alpha following the sigmoid ramp.
    Eval: no sampling, h' = (1 - alpha_max) h + alpha_max mu, so inference is deterministic.
    """

    def __init__(self, hidden_size: int, config: VittleConfig, visual_index: int = -1, text_index: int = -1) -> None:
        super().__init__()
        self.config, self.hidden_size = config, hidden_size
        self.visual_layer_index, self.text_layer_index = visual_index, text_index
        self.progress = 0.0  # start of training; trainers call VittleHandle.set_progress each step
        self.visual_head = PosteriorHead(hidden_size, config.logvar_clamp)
        self.text_head = PosteriorHead(hidden_size, config.logvar_clamp)
        self.visual_prior = build_prior(config.prior, hidden_size, config.logvar_clamp)
        self.text_prior = build_prior(config.prior, hidden_size, config.logvar_clamp)

    def alpha(self, progress: float | None = None) -> float:
        """Training mix weight alpha(t) = alpha_max / (1 + exp(-k (t - 0.5))), t = share of training done."""
        t = self.progress if progress is None else progress
        return self.config.alpha_max / (1.0 + math.exp(-self.config.ramp_steepness * (t - 0.5)))

    def forward(self, h: torch.Tensor, modality: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Return (h', mu, logvar) for hidden states ``h`` of one modality ("visual" or "text")."""
        head = self.visual_head if modality == "visual" else self.text_head
        x = h.to(head.input_weight.dtype)
        mu, logvar = head(x)
        if self.training:
            a, z = self.alpha(), mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)
        else:
            a, z = self.config.alpha_max, mu
        return ((1.0 - a) * x + a * z).to(h.dtype), mu, logvar

    def kl(self, mu: torch.Tensor, logvar: torch.Tensor, modality: str) -> torch.Tensor:
        prior = self.visual_prior if modality == "visual" else self.text_prior
        return prior.kl(mu, logvar)


class VittleHandle:
    """Owns the hooks that attach an ``InstructionBottleneck`` to a model, and the KL of the last forward.

    A forward pre-hook on the top-level model records ``input_ids`` / ``attention_mask`` / ``labels`` of
    each call; the layer hooks build masks from that record. The record is kept after the forward so a
    gradient-checkpointing recompute in backward sees the same masks (and, with torch's RNG restore, the
    same noise). Calling an inner submodule directly bypasses the record: call the top-level model.
    """

    def __init__(self, model: nn.Module, bottleneck: InstructionBottleneck, layers: nn.ModuleList) -> None:
        self.model, self.bottleneck, self.config = model, bottleneck, bottleneck.config
        self.visual_layer_index, self.text_layer_index = bottleneck.visual_layer_index, bottleneck.text_layer_index
        params = list(inspect.signature(model.forward).parameters)
        self._arg_pos: dict[str, int] = {n: params.index(n) for n in ("input_ids", "attention_mask", "labels")
                                         if n in params}
        self._batch: dict[str, Any] = {}
        self._reset_kl()
        self._hooks = [model.register_forward_pre_hook(self._record, with_kwargs=True)]
        plan: dict[int, tuple[str, ...]]
        if self.visual_layer_index == self.text_layer_index:
            plan = {self.visual_layer_index: ("visual", "text")}
        else:
            plan = {self.visual_layer_index: ("visual",), self.text_layer_index: ("text",)}
        for index, modalities in plan.items():
            self._hooks.append(layers[index].register_forward_hook(self._make_layer_hook(modalities)))

    def _reset_kl(self) -> None:
        zero = torch.zeros((), device=self.bottleneck.visual_head.input_weight.device)
        self._kl: dict[str, torch.Tensor] = {"visual": zero, "text": zero}  # the last forward's KL, summed
        self._kl_count: dict[str, int] = {"visual": 0, "text": 0}  # how many terms each sum has

    def _record(self, module: nn.Module, args: tuple, kwargs: dict) -> None:
        def get(name: str) -> Any:
            if kwargs.get(name) is not None:
                return kwargs[name]
            pos = self._arg_pos.get(name)
            return args[pos] if pos is not None and pos < len(args) else None

        self._batch = {name: get(name) for name in ("input_ids", "attention_mask", "labels")}
        self._reset_kl()

    def _masks(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(image positions, visual-KL positions, text-KL positions), each a (B, L) bool tensor.

        With a KV cache the layer sees only the newest L tokens, so 2-D inputs are aligned on their last
        L columns (``attention_mask`` keeps growing during ``generate``).
        """
        batch, length = h.shape[:2]

        def tail(x: Any) -> torch.Tensor | None:
            if not isinstance(x, torch.Tensor) or x.dim() != 2:
                return None
            if x.shape[0] != batch or x.shape[1] < length:
                raise RuntimeError(
                    f"Vittle: recorded inputs {tuple(x.shape)} do not cover hidden states {tuple(h.shape[:2])}; "
                    "the model must expand image tokens in input_ids (as transformers' processors do)"
                )
            return x[:, -length:].to(h.device)

        ids, attn, labels = (tail(self._batch.get(k)) for k in ("input_ids", "attention_mask", "labels"))
        return kl_masks(ids, attn, labels, self.config.image_token_id, (batch, length), h.device)

    def _make_layer_hook(self, modalities: tuple[str, ...]):
        def hook(module: nn.Module, args: tuple, output: Any) -> Any:
            h = output[0] if isinstance(output, tuple) else output
            image, visual_kl_mask, text_kl_mask = self._masks(h)
            new = h.clone()
            for modality in modalities:
                select = image if modality == "visual" else ~image
                mixed, mu, logvar = self.bottleneck(h[select], modality)
                new[select] = mixed
                keep = (visual_kl_mask if modality == "visual" else text_kl_mask)[select]
                kl = self.bottleneck.kl(mu[keep], logvar[keep], modality)
                # summed here, averaged by the caller: an empty selection gives exactly 0 (kept in the graph)
                self._kl[modality], self._kl_count[modality] = kl.sum(), kl.numel()
                if self.bottleneck.training:  # DDP finds used parameters from the forward's outputs, which the KL
                    # joins only later: a zero-weight edge keeps the learnable prior in that graph
                    new = new + 0.0 * self._kl[modality].to(new.dtype)
            return (new,) + tuple(output[1:]) if isinstance(output, tuple) else new

        return hook

    def kl_terms(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(KL_visual, KL_text) of the last forward call, each the mean over positions and dims (float32)."""
        return (self._kl["visual"] / max(self._kl_count["visual"], 1),
                self._kl["text"] / max(self._kl_count["text"], 1))

    def kl_sums(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(KL_visual, KL_text) of the last forward call summed over positions and dims: a trainer that splits
        a batch over processes divides by the whole batch's count (``kl_position_counts`` x hidden size)."""
        return self._kl["visual"], self._kl["text"]

    def regularizer(self) -> torch.Tensor:
        """beta_v * KL_v + beta_t * KL_t: add this to the cross-entropy loss."""
        kl_v, kl_t = self.kl_terms()
        return self.config.beta_visual * kl_v + self.config.beta_text * kl_t

    def set_progress(self, progress: float) -> None:
        """Set the fraction of training done (clamped to [0, 1]) that drives the alpha ramp."""
        self.bottleneck.progress = min(1.0, max(0.0, float(progress)))

    def remove(self) -> None:
        """Detach all hooks and remove the bottleneck submodule; the model is the base model again."""
        for hook in self._hooks:
            hook.remove()
        self._hooks = []
        if getattr(self.model, BOTTLENECK_ATTR, None) is self.bottleneck:
            delattr(self.model, BOTTLENECK_ATTR)
            _ignore_on_save(self.model, self.bottleneck, add=False)
        _HANDLES.pop(self.model, None)


def kl_masks(ids: torch.Tensor | None, attn: torch.Tensor | None, labels: torch.Tensor | None,
             image_token_id: int | None, shape: tuple[int, int],
             device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(image positions, visual-KL positions, text-KL positions) of a (B, L) batch: the visual KL covers attended
    image tokens, the text KL attended non-image tokens that are not supervised (the instruction)."""
    if ids is None or image_token_id is None:  # inputs_embeds only, or no image token: all text
        image = torch.zeros(shape, dtype=torch.bool, device=device)
    else:
        image = ids == image_token_id
    attended = attn.bool() if attn is not None else torch.ones_like(image)
    instruction = ~image & attended
    if labels is not None:
        instruction &= labels == IGNORE_INDEX
    return image, image & attended, instruction


def kl_position_counts(batch: dict[str, Any], image_token_id: int | None) -> tuple[int, int]:
    """How many positions of a model-input batch enter the visual and the text KL (as the hooks will select)."""
    ids = batch["input_ids"]
    _, visual, text = kl_masks(ids, batch.get("attention_mask"), batch.get("labels"), image_token_id,
                               tuple(ids.shape), ids.device)
    return int(visual.sum()), int(text.sum())


def _ignore_on_save(model: nn.Module, bottleneck: nn.Module, add: bool) -> None:
    """Keep bottleneck weights out of ``model.safetensors`` (they go to their own file via ``save_vittle``)
    so a plain ``from_pretrained`` of the checkpoint sees exactly the base model. Uses transformers'
    per-instance ``_keys_to_ignore_on_save`` set; on other modules this is a harmless attribute."""
    keys = {f"{BOTTLENECK_ATTR}.{k}" for k in bottleneck.state_dict()}
    current = set(getattr(model, _IGNORE_ON_SAVE, None) or ())
    setattr(model, _IGNORE_ON_SAVE, current | keys if add else current - keys)


def _image_token_id(model: nn.Module, config: VittleConfig) -> int | None:
    if config.image_token_id is not None:
        return int(config.image_token_id)
    for name in ("image_token_id", "image_token_index"):
        value = getattr(getattr(model, "config", None), name, None)
        if value is not None:
            return int(value)
    return None


def attach_bottleneck(model: nn.Module, config: VittleConfig | None = None) -> VittleHandle:
    """Attach a fresh bottleneck (registered as ``model.vittle_bottleneck``) and return its handle."""
    config = config or VittleConfig()
    if hasattr(model, BOTTLENECK_ATTR):
        raise ValueError("a Vittle bottleneck is already attached; call handle.remove() first")
    layers = resolve_decoder_layers(model)
    token_id = _image_token_id(model, config)
    if token_id is None:
        warnings.warn("Vittle: no image_token_id in config or model config; every position is treated as text",
                      stacklevel=2)
    config = replace(config, image_token_id=token_id)
    model_config = getattr(model, "config", None)
    text_config = (model_config.get_text_config()
                   if model_config is not None and hasattr(model_config, "get_text_config") else model_config)
    hidden = getattr(text_config, "hidden_size", None)
    if not hidden:
        # The Hugging Face model's method: nn.Module types attributes it does not declare as Tensor | Module.
        hidden = model.get_input_embeddings().embedding_dim  # type: ignore[operator]
    vi, ti = (resolve_layer_index(s, len(layers)) for s in (config.visual_layer, config.text_layer))
    ref = next(layers[ti].parameters())
    bottleneck = InstructionBottleneck(hidden, config, vi, ti).to(device=ref.device, dtype=ref.dtype)
    bottleneck.train(model.training)
    model.add_module(BOTTLENECK_ATTR, bottleneck)
    _ignore_on_save(model, bottleneck, add=True)
    handle = VittleHandle(model, bottleneck, layers)
    _HANDLES[model] = handle
    return handle


def get_vittle_handle(model: nn.Module) -> VittleHandle | None:
    """The live handle of a model's attached bottleneck, or None."""
    return _HANDLES.get(model)


def save_vittle(model_or_handle: nn.Module | VittleHandle, directory: str | os.PathLike,
                state_dict: dict[str, torch.Tensor] | None = None, training: dict[str, Any] | None = None) -> None:
    """Write ``vittle_config.json`` and ``vittle_bottleneck.safetensors`` (beside a ``save_pretrained`` dir).

    ``state_dict``: the full state dict gathered for saving, possibly a wrapper's (DeepSpeed ZeRO-3 and FSDP
    shard the bottleneck's own parameters); ``training``: the recipe that trained it, for whoever evaluates it."""
    from safetensors.torch import save_file

    model = model_or_handle.model if isinstance(model_or_handle, VittleHandle) else model_or_handle
    bottleneck = getattr(model, BOTTLENECK_ATTR, None)
    if not isinstance(bottleneck, InstructionBottleneck):
        raise ValueError("no Vittle bottleneck attached to this model")
    os.makedirs(directory, exist_ok=True)
    meta = {"format": "vittle-bench/1", "config": bottleneck.config.to_dict(), "hidden_size": bottleneck.hidden_size,
            "visual_layer_index": bottleneck.visual_layer_index,
            "text_layer_index": bottleneck.text_layer_index}
    if training is not None:
        meta["training"] = training
    with open(os.path.join(directory, CONFIG_FILE), "w") as f:
        json.dump(meta, f, indent=2)
    prefix = BOTTLENECK_ATTR + "."
    source = ({k.split(prefix, 1)[1]: v for k, v in state_dict.items() if prefix in k} if state_dict is not None
              else bottleneck.state_dict())
    state = {k: v.detach().cpu().contiguous() for k, v in source.items()}
    save_file(state, os.path.join(directory, WEIGHTS_FILE), metadata={"format": "pt"})


def load_vittle_if_present(model: nn.Module, directory: str | os.PathLike) -> VittleHandle | None:
    """Reattach a saved bottleneck (eval mode) if ``directory`` holds one; otherwise return None."""
    from safetensors.torch import load_file

    config_path = os.path.join(directory, CONFIG_FILE)
    if not os.path.isfile(config_path):
        return None
    with open(config_path) as f:
        meta = json.load(f)
    handle = attach_bottleneck(model, VittleConfig.from_dict(meta["config"]))
    where = (handle.visual_layer_index, handle.text_layer_index)
    if where != (meta["visual_layer_index"], meta["text_layer_index"]):
        handle.remove()
        raise ValueError(f"this model resolves the layers to {where}, the saved bottleneck to: {meta}")
    device = str(next(handle.bottleneck.parameters()).device)
    state = load_file(os.path.join(directory, WEIGHTS_FILE), device=device)
    handle.bottleneck.load_state_dict(state)
    handle.bottleneck.eval()
    return handle
