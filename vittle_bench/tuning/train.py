"""The `vittle-bench tune` loop: add the instruction bottleneck to any HF image-text-to-text model and
fine-tune it on LLaVA-format data (the paper's stage-2 recipe, docs/protocol.md), or, with ``baseline=True``,
run the identical recipe without the bottleneck so the two are compared fairly.

Device placement, bf16 mixed precision, gradient accumulation and multi-GPU (``accelerate launch``) are
Hugging Face Accelerate's; nothing here is home-made distributed code. Recipe: vision tower frozen, the
projector and language model fully trained, AdamW, cosine schedule with linear warmup, loss =
cross-entropy + beta_v KL_v + beta_t KL_t with the alpha ramp driven by the share of optimiser steps done.

Output directory: ``save_pretrained`` model + processor, the bottleneck files of ``save_vittle`` (so
``--model hf:DIR`` restores it), ``tune_config.json`` (every TuneConfig value, the ``--recipe`` name and
each option's source, the process count and global batch) and ``train_log.jsonl`` (one record per optimiser
step: CE, each KL, alpha, lr). Checkpoints for ``--resume`` live in ``DIR/checkpoints`` while training and
are removed after the final save unless ``keep_checkpoints``.

Tested on one process and on two CPU processes (DDP over gloo). With parameter sharding (DeepSpeed ZeRO-3,
FSDP) the model weights are gathered by ``accelerator.get_state_dict``, but ``save_vittle`` reads the
bottleneck's own (sharded) parameters: untested, expect to gather them first.
"""

from __future__ import annotations

import inspect
import json
import math
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from vittle_bench.builtin.model import BuiltinModel, weights_dir
from vittle_bench.errors import ConfigError
from vittle_bench.models.base import split_spec
from vittle_bench.models.prompt_profiles import TRAINED_PROFILE_FILE
from vittle_bench.tuning.data import IGNORE_INDEX, ConversationCollator, LlavaInstructionDataset
from vittle_bench.vittle.bottleneck import CONFIG_FILE, VittleConfig, VittleHandle, attach_bottleneck, save_vittle

if TYPE_CHECKING:
    from transformers import PreTrainedModel

TUNE_CONFIG_FILE = "tune_config.json"
LOG_FILE = "train_log.jsonl"
STATE_FILE = "trainer_state.json"
CHECKPOINTS = "checkpoints"
KEEP_LAST_CHECKPOINTS = 2


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


def load_for_tuning(source: str, dtype: str = "float32") -> tuple[PreTrainedModel, Any]:
    from transformers import AutoModelForImageTextToText, AutoProcessor

    processor = AutoProcessor.from_pretrained(source)
    model = AutoModelForImageTextToText.from_pretrained(source, dtype=getattr(torch, dtype))
    return model, processor


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


def _latest_checkpoint(output: Path) -> Path | None:
    done = sorted(p for p in (output / CHECKPOINTS).glob("step-*") if (p / STATE_FILE).is_file())
    return done[-1] if done else None


def _prepare_output(cfg: TuneConfig, output: Path, accelerator: Any) -> Path | None:
    """Refuse to clobber a directory; on resume check the recipe matches and return the last checkpoint."""
    checkpoint = None
    saved = output / TUNE_CONFIG_FILE
    if cfg.resume and saved.is_file():
        before = {k: v for k, v in json.loads(saved.read_text()).items() if k not in TuneConfig.OPERATIONAL}
        changed = {k: (before.get(k), v) for k, v in cfg.recipe().items() if before.get(k) != v}
        if changed:
            raise ConfigError(f"--resume with a different recipe than {saved}: {changed}")
        checkpoint = _latest_checkpoint(output)
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


def _accepts_loss_kwargs(model: torch.nn.Module) -> bool:
    params = inspect.signature(model.forward).parameters.values()
    return any(p.kind is p.VAR_KEYWORD or p.name == "num_items_in_batch" for p in params)


def _save_checkpoint(accelerator: Any, output: Path, state: dict[str, int]) -> None:
    path = output / CHECKPOINTS / f"step-{state['step']:08d}"
    accelerator.save_state(str(path))
    if accelerator.is_main_process:
        (path / STATE_FILE).write_text(json.dumps(state))  # written last: marks the checkpoint complete
        done = sorted(p for p in (output / CHECKPOINTS).glob("step-*") if (p / STATE_FILE).is_file())
        for old in done[:-KEEP_LAST_CHECKPOINTS]:
            shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()


def _trim_log(log_path: Path, step: int) -> None:
    """Drop log records past the checkpoint we resume from (they will be written again)."""
    if log_path.is_file():
        kept = [line for line in log_path.read_text().splitlines()
                if line.strip() and json.loads(line).get("step", 0) <= step and "event" not in json.loads(line)]
        log_path.write_text("".join(line + "\n" for line in kept))


def train(cfg: TuneConfig, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Run (or resume) one tuning run and write the output directory; returns the final summary record."""
    from accelerate.utils import set_seed

    if not Path(cfg.data).is_file():
        raise ConfigError(f"instruction data file {cfg.data} does not exist")
    source = resolve_model_source(cfg.model)
    output = Path(cfg.output)
    accelerator = _make_accelerator(cfg)
    checkpoint = _prepare_output(cfg, output, accelerator)
    set_seed(cfg.seed)
    tuning, frozen = _set_up(cfg, source, accelerator)
    state = _start_state(tuning, checkpoint, log)
    if accelerator.is_main_process:
        _trim_log(output / LOG_FILE, state["step"])
    n_trainable = sum(p.numel() for p in tuning.params)
    log(f"tune {cfg.model} ({'baseline' if cfg.baseline else 'Vittle-' + cfg.prior}): {tuning.total} steps, global "
        f"batch {cfg.batch_size * cfg.grad_accum * accelerator.num_processes}, {n_trainable:,} trainable / "
        f"{frozen:,} frozen parameters, mixed precision {accelerator.mixed_precision}, "
        f"{accelerator.num_processes} process(es)")
    record = _run_steps(cfg, tuning, state, output)
    if cfg.keep_checkpoints:
        _save_checkpoint(accelerator, output, state)
    return _save_final(accelerator, tuning.model, tuning.processor, tuning.handle, output, cfg,
                       {**record, "event": "done"})


@dataclass
class _Tuning:
    """What the step loop works on: the model, optimiser and loader as Accelerate prepared them."""

    accelerator: Any
    model: torch.nn.Module
    processor: Any
    handle: VittleHandle | None  # None for the baseline recipe
    params: list[torch.nn.Parameter]  # the trainable ones
    optimizer: Any
    loader: Any
    scheduler: Any
    total: int  # optimiser steps of the whole run
    loss_kwargs: bool  # the model's forward takes num_items_in_batch


def _make_accelerator(cfg: TuneConfig) -> Any:
    from accelerate import Accelerator, DataLoaderConfiguration, DistributedDataParallelKwargs

    return Accelerator(
        gradient_accumulation_steps=cfg.grad_accum, mixed_precision=_mixed_precision(cfg.mixed_precision),
        dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True, data_seed=cfg.seed),
        # a text-only batch leaves the projector out of the graph; DDP must tolerate that
        kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=True)])


def _set_up(cfg: TuneConfig, source: str, accelerator: Any) -> tuple[_Tuning, int]:
    """The model (vision tower frozen, bottleneck attached unless baseline), optimiser, loader and schedule,
    prepared and registered for checkpointing; also the number of frozen parameters."""
    from transformers import get_cosine_schedule_with_warmup

    model, processor = load_for_tuning(source, cfg.dtype)
    frozen = freeze_vision_tower(model)
    handle = attach_bottleneck(model, cfg.vittle_config()) if not cfg.baseline else None
    if cfg.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.train()
    loss_kwargs = _accepts_loss_kwargs(model)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    loader = DataLoader(LlavaInstructionDataset(cfg.data, cfg.image_folder), batch_size=cfg.batch_size, shuffle=True,
                        collate_fn=ConversationCollator(processor, cfg.max_length), num_workers=cfg.num_workers,
                        generator=torch.Generator().manual_seed(cfg.seed))
    model, optimizer, loader = accelerator.prepare(model, optimizer, loader)
    steps_per_epoch = math.ceil(len(loader) / cfg.grad_accum)
    total = cfg.max_steps or steps_per_epoch * cfg.epochs
    scheduler = get_cosine_schedule_with_warmup(optimizer.optimizer, math.ceil(cfg.warmup_ratio * total), total)
    accelerator.register_for_checkpointing(scheduler)  # stepped once per optimiser step, so not prepared
    return _Tuning(accelerator, model, processor, handle, params, optimizer, loader, scheduler, total,
                   loss_kwargs), frozen


def _start_state(tuning: _Tuning, checkpoint: Path | None, log: Callable[[str], None]) -> dict[str, int]:
    """Where the loop starts: the beginning, or the checkpoint's step with every prepared object restored."""
    if checkpoint is None:
        return {"step": 0, "epoch": 0, "batches_in_epoch": 0}
    tuning.accelerator.load_state(str(checkpoint))
    state = json.loads((checkpoint / STATE_FILE).read_text())
    log(f"resuming from {checkpoint} at step {state['step']} of {tuning.total}")
    return state


def _run_steps(cfg: TuneConfig, tuning: _Tuning, state: dict[str, int], output: Path) -> dict[str, Any]:
    """Optimiser steps from `state` up to `tuning.total`, epoch after epoch, logging each step and saving a
    checkpoint every `cfg.save_every`; `state` is advanced in place. Returns the last step's log record."""
    accelerator = tuning.accelerator
    bar = tqdm(total=tuning.total, initial=state["step"], disable=not accelerator.is_local_main_process, desc="tune")
    window = torch.zeros(5, device=accelerator.device)  # sums: ce, kl_v, kl_t, micro-batches, supervised tokens
    start, record = time.time(), {}
    while state["step"] < tuning.total:
        tuning.loader.set_epoch(state["epoch"])
        skip = state["batches_in_epoch"]
        for batch in (accelerator.skip_first_batches(tuning.loader, skip) if skip else tuning.loader):
            lr = _micro_batch(cfg, tuning, batch, state["step"], window)
            state["batches_in_epoch"] += 1
            if not accelerator.sync_gradients:
                continue
            state["step"] += 1
            record = _step_record(cfg, tuning, state, window, lr, start)
            if accelerator.is_main_process:
                with open(output / LOG_FILE, "a") as f:
                    f.write(json.dumps(record) + "\n")
            bar.update(1)
            bar.set_postfix({k: f"{record[k]:.4g}" for k in ("ce", "kl_visual", "kl_text", "lr") if k in record})
            if state["step"] >= tuning.total:
                break
            if cfg.save_every and state["step"] % cfg.save_every == 0:
                _save_checkpoint(accelerator, output, state)
        else:  # the epoch ran out before the step budget
            state["epoch"], state["batches_in_epoch"] = state["epoch"] + 1, 0
            continue
        break
    bar.close()
    return record


def _micro_batch(cfg: TuneConfig, tuning: _Tuning, batch: dict[str, Any], step: int, window: torch.Tensor) -> float:
    """Forward and backward on one micro-batch, an optimiser step when it closes an accumulation window, and its
    CE, KL terms and token counts added to `window`. Returns the learning rate the step used."""
    accelerator, handle = tuning.accelerator, tuning.handle
    with accelerator.accumulate(tuning.model):
        if handle is not None:
            handle.set_progress(step / max(1, tuning.total - 1))
        n_sup = (batch["labels"][:, 1:] != IGNORE_INDEX).sum()
        extra = {"num_items_in_batch": n_sup.clamp(min=1)} if tuning.loss_kwargs else {}
        ce = tuning.model(**batch, use_cache=False, **extra).loss
        loss = ce + handle.regularizer() if handle is not None else ce
        accelerator.backward(loss)
        lr = tuning.scheduler.get_last_lr()[0]
        if accelerator.sync_gradients and cfg.max_grad_norm:
            accelerator.clip_grad_norm_(tuning.params, cfg.max_grad_norm)
        tuning.optimizer.step()
        if accelerator.sync_gradients and not accelerator.optimizer_step_was_skipped:
            tuning.scheduler.step()
        tuning.optimizer.zero_grad(set_to_none=True)
    kl = handle.kl_terms() if handle is not None else (torch.zeros(()), torch.zeros(()))
    window += torch.stack([ce.detach().float(), kl[0].detach().float().to(window.device),
                           kl[1].detach().float().to(window.device), torch.ones((), device=window.device),
                           n_sup.float()])
    return lr


def _step_record(cfg: TuneConfig, tuning: _Tuning, state: dict[str, int], window: torch.Tensor, lr: float,
                 start: float) -> dict[str, Any]:
    """The log record of the optimiser step just taken: `window`'s sums over every process, averaged per
    micro-batch; `window` is emptied for the next step."""
    sums = tuning.accelerator.reduce(window, "sum").tolist()
    window.zero_()
    record = {"step": state["step"], "epoch": state["epoch"], "lr": lr, "ce": sums[0] / sums[3],
              "supervised_tokens": int(sums[4]), "elapsed_s": round(time.time() - start, 2)}
    if tuning.handle is not None:
        record.update(kl_visual=sums[1] / sums[3], kl_text=sums[2] / sums[3], alpha=tuning.handle.bottleneck.alpha(),
                      loss=(sums[0] + cfg.beta * (sums[1] + sums[2])) / sums[3])
    return record


def _save_final(accelerator: Any, model: torch.nn.Module, processor: Any, handle: Any, output: Path,
                cfg: TuneConfig, summary: dict[str, Any]) -> dict[str, Any]:
    accelerator.wait_for_everyone()
    unwrapped = accelerator.unwrap_model(model)
    state_dict = accelerator.get_state_dict(model)
    if accelerator.is_main_process:
        unwrapped.eval()
        # the bottleneck's keys are in _keys_to_ignore_on_save: model.safetensors stays the plain base model
        unwrapped.save_pretrained(output, state_dict=state_dict)
        processor.save_pretrained(output)
        # tuning renders every conversation with the processor's chat template: evaluation asks the same way
        (output / TRAINED_PROFILE_FILE).write_text(json.dumps({"prompt_profile": "chat_template"}))
        if handle is not None:
            save_vittle(unwrapped, output)
        with open(output / LOG_FILE, "a") as f:
            f.write(json.dumps(summary) + "\n")
        if not cfg.keep_checkpoints:
            shutil.rmtree(output / CHECKPOINTS, ignore_errors=True)
    accelerator.wait_for_everyone()
    return summary
