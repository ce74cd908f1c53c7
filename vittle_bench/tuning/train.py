"""The `vittle-bench tune` loop: add the instruction bottleneck to any HF image-text-to-text model and
fine-tune it on LLaVA-format data (the paper's stage-2 recipe, docs/protocol.md), or, with ``baseline=True``,
run the identical recipe without the bottleneck so the two are compared fairly.

Device placement, bf16 mixed precision, gradient accumulation and multi-GPU (``accelerate launch``) are
Hugging Face Accelerate's; nothing here is home-made distributed code. Recipe: vision tower frozen, the
projector and language model fully trained (with ``--lora`` the language model through adapters), AdamW, cosine
schedule with linear warmup, loss = cross-entropy + beta_v KL_v + beta_t KL_t with the alpha ramp driven by the
share of optimiser steps done.

Output directory: ``save_pretrained`` model (with ``--lora`` merged, the adapter in ``adapter/``) + processor, the
prompt layout it was tuned in, the bottleneck files of ``save_vittle`` (so ``--model hf:DIR`` restores it),
``tune_config.json`` (every TuneConfig value, the ``--recipe`` name and
each option's source, the process count and global batch) and ``train_log.jsonl`` (one record per optimiser
step: CE, each KL, alpha, lr; last, the ``done`` record with the trainable-parameter count). Checkpoints for
``--resume`` live in ``DIR/checkpoints`` while training and are removed after the final save unless
``keep_checkpoints``.

Families: ``families.py`` picks how the family's conversations are labelled (its chat template, or a prefix-LM
processor's ``suffix``) and tries it on the data before the model loads. ``--lora``: ``lora.py``. The step loop
and its global-batch loss: ``steps.py``.

Saving goes through ``accelerator.get_state_dict``, which gathers parameters that DeepSpeed ZeRO-3 or FSDP shard;
the bottleneck's weights are written from that gathered state too. Tested on one process and on two CPU processes
(DDP over gloo); the sharded back-ends need GPUs (docs/tuning.md).
"""

from __future__ import annotations

import json
import math
import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch.utils.data import DataLoader

from vittle_bench.builtin.model import BuiltinModel, weights_dir
from vittle_bench.errors import ConfigError
from vittle_bench.models.base import split_spec
from vittle_bench.models.prompt_profiles import TRAINED_PROFILE_FILE
from vittle_bench.tuning.data import LlavaInstructionDataset
from vittle_bench.tuning.families import PREFIX_LM, check_family, layout_of, make_collator
from vittle_bench.tuning.lora import (
    ADAPTER_DIR,
    LoraSpec,
    apply_lora,
    connector_linears,
    load_peft,
    merged_for_saving,
    parse_lora,
    quantization_config,
    target_modules,
)
from vittle_bench.tuning.steps import (
    CHECKPOINTS,
    LOG_FILE,
    STATE_FILE,
    Tuning,
    latest_checkpoint,
    run_steps,
    save_checkpoint,
    trim_log,
)
from vittle_bench.vittle.bottleneck import CONFIG_FILE, VittleConfig, attach_bottleneck, save_vittle

if TYPE_CHECKING:
    from transformers import PreTrainedModel

TUNE_CONFIG_FILE = "tune_config.json"


@dataclass
class TuneConfig:
    """One tuning run. ``batch_size`` is per device: the global batch is batch_size x grad_accum x processes.
    ``max_steps`` (optimiser steps) overrides ``epochs``. Layers: int index or float depth fraction."""

    model: str
    data: str
    output: str
    image_folder: str | None = None
    prior: str = "fixed"
    baseline: bool = False
    visual_layer: float | int = 0.75
    text_layer: float | int = 0.75
    beta: float = 0.1
    alpha_max: float = 0.5
    epochs: int = 1
    lr: float = 2e-5
    batch_size: int = 4
    grad_accum: int = 1
    max_steps: int | None = None
    warmup_ratio: float = 0.03
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    max_length: int = 2048
    seed: int = 0
    mixed_precision: str = "auto"
    dtype: str = "float32"
    gradient_checkpointing: bool = False
    lora: str | None = None  # the --lora spec (lora.parse_lora); None: full fine-tuning
    num_workers: int = 0
    save_every: int = 500
    keep_checkpoints: bool = False
    resume: bool = False
    recipe_name: str | None = None  # the `--recipe` preset the values were resolved from, if any
    sources: dict[str, str] = field(default_factory=dict)  # option -> "flag", "preset" or "default"

    # may differ between a run and its resumption (the values must match, not where they came from)
    OPERATIONAL = ("output", "resume", "num_workers", "save_every", "keep_checkpoints", "recipe_name", "sources")

    def vittle_config(self) -> VittleConfig | None:
        if self.baseline:
            return None
        return VittleConfig(visual_layer=self.visual_layer, text_layer=self.text_layer, prior=self.prior,
                            beta_visual=self.beta, beta_text=self.beta, alpha_max=self.alpha_max)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def recipe(self) -> dict[str, Any]:
        return {k: v for k, v in self.to_dict().items() if k not in self.OPERATIONAL}


def resolve_model_source(spec: str) -> str:
    """``hf:ID_OR_PATH`` -> ID_OR_PATH; ``builtin:NAME`` -> its packaged checkpoint directory."""
    scheme, name = split_spec(spec)
    if scheme == "hf":
        source = name
    elif scheme == "builtin":
        BuiltinModel.validate_name(name)
        source = str(weights_dir(name))
    else:
        raise ConfigError(f"tune takes hf:ID_OR_PATH or builtin:NAME models, not {spec!r}")
    if (Path(source) / CONFIG_FILE).is_file():
        raise ConfigError(f"{spec} already carries a Vittle bottleneck; tune its base model instead "
                          "(or continue an interrupted run with --resume)")
    return source


def load_for_tuning(source: str, dtype: str = "float32", quantization: Any = None) -> PreTrainedModel:
    from transformers import AutoModelForImageTextToText

    # a quantized base loads onto this process's GPU (Accelerate has made it the current device)
    extra = ({"quantization_config": quantization, "device_map": {"": torch.cuda.current_device()}}
             if quantization is not None else {})
    return AutoModelForImageTextToText.from_pretrained(source, dtype=getattr(torch, dtype), **extra)


def freeze_vision_tower(model: torch.nn.Module) -> int:
    """Freeze the image encoder (found by transformers' own ``get_encoder(modality="image")``); returns the
    number of frozen parameters. The projector stays trainable, as in LLaVA's stage 2."""
    get_encoder = getattr(model, "get_encoder", None)
    tower = get_encoder(modality="image") if get_encoder is not None else None
    if tower is None or tower is model or tower is getattr(model, "base_model", None):
        raise ConfigError(f"cannot find the vision tower of {type(model).__name__} to freeze")
    for p in tower.parameters():
        p.requires_grad_(False)
    return sum(p.numel() for p in tower.parameters())


def _mixed_precision(choice: str) -> str:
    if choice != "auto":
        return choice
    return "bf16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "no"


def _prepare_output(cfg: TuneConfig, output: Path, accelerator: Any) -> Path | None:
    """Refuse to clobber a directory; on resume check the recipe matches and return the last checkpoint."""
    checkpoint = None
    saved = output / TUNE_CONFIG_FILE
    if cfg.resume and saved.is_file():
        before = {k: v for k, v in json.loads(saved.read_text()).items() if k not in TuneConfig.OPERATIONAL}
        changed = {k: (before.get(k), v) for k, v in cfg.recipe().items() if before.get(k) != v}
        if changed:
            raise ConfigError(f"--resume with a different recipe than {saved}: {changed}")
        checkpoint = latest_checkpoint(output)
    elif output.exists() and any(output.iterdir()):
        raise ConfigError(f"output directory {output} is not empty; pass --resume or choose a new directory")
    accelerator.wait_for_everyone()  # every process has checked before the main one writes
    if accelerator.is_main_process:
        output.mkdir(parents=True, exist_ok=True)
        saved.write_text(json.dumps({**cfg.to_dict(), "num_processes": accelerator.num_processes,
                                     "global_batch": cfg.batch_size * cfg.grad_accum * accelerator.num_processes},
                                    indent=1))
    accelerator.wait_for_everyone()
    return checkpoint


@dataclass
class _Data:
    """The family's processor, its layout (families.py) and the data set in that layout."""

    processor: Any
    layout: str
    dataset: LlavaInstructionDataset


def _load_data(cfg: TuneConfig, source: str, log: Callable[[str], None]) -> _Data:
    """Processor and data, checked against each other before any weight loads (families.check_family)."""
    from transformers import AutoConfig, AutoProcessor

    if not Path(cfg.data).is_file():
        raise ConfigError(f"instruction data file {cfg.data} does not exist")
    model_type = AutoConfig.from_pretrained(source).model_type
    processor = AutoProcessor.from_pretrained(source)
    layout = layout_of(model_type)
    try:
        dataset = LlavaInstructionDataset(cfg.data, cfg.image_folder, one_answer_per_item=layout == PREFIX_LM)
    except ValueError as exc:
        raise ConfigError(f"{cfg.data}: {exc}") from None
    missing = dataset.missing_images()
    if missing:
        raise ConfigError(f"{len(missing)} image(s) of {cfg.data} are not under {dataset.image_folder}, e.g. "
                          f"{missing[0]} (--image-folder is the root of the rows' relative image paths)")
    check_family(model_type, layout, processor, dataset)
    if dataset.skipped:
        log(f"{model_type} is a prefix-LM family that needs an image per example: {dataset.skipped} of "
            f"{len(dataset.rows)} rows have none and are left out")
    return _Data(processor, layout, dataset)


def _shards_parameters(accelerator: Any) -> bool:
    from accelerate.utils import DistributedType

    if accelerator.distributed_type == DistributedType.FSDP:
        return True
    plugin = accelerator.state.deepspeed_plugin
    return accelerator.distributed_type == DistributedType.DEEPSPEED and plugin is not None and plugin.zero_stage == 3


def train(cfg: TuneConfig, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Run (or resume) one tuning run and write the output directory; returns the final summary record."""
    from accelerate.utils import set_seed

    source = resolve_model_source(cfg.model)
    lora = parse_lora(cfg.lora) if cfg.lora else None
    if lora is not None:
        load_peft()
    quantization = _check_lora(source, lora)
    data = _load_data(cfg, source, log)
    output = Path(cfg.output)
    accelerator = _make_accelerator(cfg)
    if lora is not None and _shards_parameters(accelerator):
        raise ConfigError("--lora with DeepSpeed ZeRO-3 or FSDP is not supported (the merged model is written "
                          "from unsharded weights); use one GPU, DDP or ZeRO-2 (docs/tuning.md)")
    checkpoint = _prepare_output(cfg, output, accelerator)
    set_seed(cfg.seed)
    tuning, frozen = _set_up(cfg, source, data, lora, quantization, accelerator)
    state = _start_state(tuning, checkpoint, log)
    if accelerator.is_main_process:
        trim_log(output / LOG_FILE, state["step"])
    n_trainable = sum(p.numel() for p in tuning.params)
    log(f"tune {cfg.model} ({'baseline' if cfg.baseline else 'Vittle-' + cfg.prior}"
        f"{', LoRA ' + cfg.lora if cfg.lora else ''}): {tuning.total} steps, global batch "
        f"{cfg.batch_size * cfg.grad_accum * accelerator.num_processes}, {n_trainable:,} trainable / {frozen:,} "
        f"frozen parameters, mixed precision {accelerator.mixed_precision}, {accelerator.num_processes} process(es)")
    record = run_steps(tuning, state, output, cfg.save_every)
    if cfg.keep_checkpoints:
        save_checkpoint(accelerator, output, state)
    return _save_final(tuning, output, cfg, data.layout, lora, source,
                       {**record, "event": "done", "trainable_parameters": n_trainable})


def _make_accelerator(cfg: TuneConfig) -> Any:
    from accelerate import Accelerator, DataLoaderConfiguration, DistributedDataParallelKwargs
    from accelerate.utils import GradientAccumulationPlugin

    return Accelerator(
        # steps.run_steps hands over whole global batches: the boundary never follows the end of the data
        gradient_accumulation_plugin=GradientAccumulationPlugin(num_steps=cfg.grad_accum, sync_with_dataloader=False),
        mixed_precision=_mixed_precision(cfg.mixed_precision),
        dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True, data_seed=cfg.seed),
        # a text-only batch leaves the projector out of the graph; DDP must tolerate that
        kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=True)])


def _check_lora(source: str, lora: LoraSpec | None) -> Any:
    """Check the --lora targets on a meta-device copy of the model (no weights load), and return the quantized
    base's config (lora.quantization_config, the connector kept in full precision), or None."""
    if lora is None:
        return None
    from transformers import AutoConfig, AutoModelForImageTextToText

    with torch.device("meta"):
        meta = AutoModelForImageTextToText.from_config(AutoConfig.from_pretrained(source))
    target_modules(meta, lora.targets)
    freeze_vision_tower(meta)
    frozen = {id(p) for p in meta.parameters() if not p.requires_grad}
    return quantization_config(lora, connector_linears(meta, frozen)) if lora.bits is not None else None


def _set_up(cfg: TuneConfig, source: str, data: _Data, lora: LoraSpec | None, quantization: Any,
            accelerator: Any) -> tuple[Tuning, int]:
    """The model (vision tower frozen, bottleneck attached unless baseline, LoRA-wrapped with --lora), optimiser,
    loader and schedule, prepared and registered for checkpointing; also the number of frozen parameters."""
    from transformers import get_cosine_schedule_with_warmup

    model: torch.nn.Module = load_for_tuning(source, cfg.dtype, quantization)
    frozen = freeze_vision_tower(model)
    handle = attach_bottleneck(model, cfg.vittle_config()) if not cfg.baseline else None
    if handle is not None:  # float32 under any --dtype: AdamW would round a fresh head's small updates away in
        handle.bottleneck.float()  # bf16; its forward casts the hidden states in and out
    hidden = handle.bottleneck.hidden_size if handle is not None else 1
    if lora is not None:
        model = apply_lora(model, lora)
    if cfg.gradient_checkpointing:  # transformers' method (a PeftModel passes it on)
        model.gradient_checkpointing_enable(  # type: ignore[operator]
            gradient_checkpointing_kwargs={"use_reentrant": False})
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    frozen = sum(p.numel() for p in model.parameters() if not p.requires_grad) if lora is not None else frozen
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    loader = DataLoader(data.dataset, batch_size=cfg.batch_size, shuffle=True, num_workers=cfg.num_workers,
                        collate_fn=make_collator(data.layout, data.processor, cfg.max_length),
                        generator=torch.Generator().manual_seed(cfg.seed))
    model, optimizer, loader = accelerator.prepare(model, optimizer, loader)
    if accelerator.gradient_accumulation_steps != cfg.grad_accum:  # a DeepSpeed config's own number wins
        raise ConfigError(f"the DeepSpeed config sets gradient_accumulation_steps to "
                          f"{accelerator.gradient_accumulation_steps}, not --grad-accum {cfg.grad_accum}: set it to "
                          '"auto" (as configs/accelerate/ds_zero3.json does)')
    steps_per_epoch = len(loader) // cfg.grad_accum
    if steps_per_epoch == 0:
        raise ConfigError(f"the data makes {len(loader)} micro-batch(es) per process, fewer than --grad-accum "
                          f"{cfg.grad_accum}: not one global batch; lower --batch-size or --grad-accum")
    total = cfg.max_steps or steps_per_epoch * cfg.epochs
    scheduler = get_cosine_schedule_with_warmup(optimizer.optimizer, math.ceil(cfg.warmup_ratio * total), total)
    accelerator.register_for_checkpointing(scheduler)  # stepped once per optimiser step, so not prepared
    return Tuning(accelerator, model, data.processor, handle, params, optimizer, loader, scheduler, total,
                  cfg.grad_accum, cfg.max_grad_norm, (cfg.beta, cfg.beta), hidden), frozen


def _start_state(tuning: Tuning, checkpoint: Path | None, log: Callable[[str], None]) -> dict[str, int]:
    """Where the loop starts: the beginning, or the checkpoint's step with every prepared object restored."""
    if checkpoint is None:
        return {"step": 0, "epoch": 0, "batches_in_epoch": 0}
    tuning.accelerator.load_state(str(checkpoint))
    state = json.loads((checkpoint / STATE_FILE).read_text())
    log(f"resuming from {checkpoint} at step {state['step']} of {tuning.total}")
    return state


def _save_final(tuning: Tuning, output: Path, cfg: TuneConfig, layout: str, lora: LoraSpec | None, source: str,
                summary: dict[str, Any]) -> dict[str, Any]:
    """Write the model (merged, with --lora), the processor, the prompt layout, the bottleneck and the summary."""
    accelerator = tuning.accelerator
    accelerator.wait_for_everyone()
    unwrapped = accelerator.unwrap_model(tuning.model)
    gathered = accelerator.get_state_dict(tuning.model)  # from every process under ZeRO-3 / FSDP
    if accelerator.is_main_process:
        state_dict = gathered
        if lora is not None:
            unwrapped.save_pretrained(output / ADAPTER_DIR)
            unwrapped = merged_for_saving(unwrapped, lora, output / ADAPTER_DIR,
                                          lambda: load_for_tuning(source, cfg.dtype))
            state_dict = unwrapped.state_dict()
        unwrapped.eval()
        # the bottleneck's keys are in _keys_to_ignore_on_save: model.safetensors stays the plain base model
        # (save_pretrained deletes them from the dict it is given, so it gets a copy)
        unwrapped.save_pretrained(output, state_dict=dict(state_dict))
        tuning.processor.save_pretrained(output)
        # evaluation asks in the layout the model was tuned in (its chat template, or the prefix-LM layout)
        (output / TRAINED_PROFILE_FILE).write_text(json.dumps({"prompt_profile": layout}))
        if tuning.handle is not None:
            save_vittle(tuning.handle, output, state_dict=gathered,
                        training={"recipe": cfg.recipe_name, **cfg.recipe(), "sources": cfg.sources})
        with open(output / LOG_FILE, "a") as f:
            f.write(json.dumps(summary) + "\n")
        if not cfg.keep_checkpoints:
            shutil.rmtree(output / CHECKPOINTS, ignore_errors=True)
    accelerator.wait_for_everyone()
    return summary
