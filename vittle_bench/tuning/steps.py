"""The optimiser-step loop of `vittle-bench tune`, its log records and its checkpoints.

One optimiser step takes ``grad_accum`` micro-batches on each process: one global batch. Its loss is the mean
over the whole global batch, whatever the split: the cross-entropy is summed over supervised tokens and divided
by the global batch's count of them, each KL term likewise by its count of positions (x hidden size). The counts
are known before the first forward (the step's micro-batches are read first and the counts summed over
processes), so 1 process x 4 rows and 2 processes x 2 rows, or 2 micro-batches of 2, take the same step. The
gradient Accelerate and DDP / DeepSpeed / FSDP form is a mean over micro-batches and processes, so each
micro-batch's loss is scaled by their number to leave the global sums.

An epoch's last micro-batches that make no whole global batch are not used: every step sees a full global batch,
and the accumulation boundary of Accelerate (and of DeepSpeed's engine) stays aligned with the steps, also when
a run resumes.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from vittle_bench.tuning.data import IGNORE_INDEX
from vittle_bench.vittle.bottleneck import VittleHandle, kl_position_counts

LOG_FILE = "train_log.jsonl"
STATE_FILE = "trainer_state.json"
CHECKPOINTS = "checkpoints"
KEEP_LAST_CHECKPOINTS = 2


@dataclass
class Tuning:
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
    grad_accum: int
    max_grad_norm: float  # 0: no clipping
    betas: tuple[float, float]  # (beta_visual, beta_text)
    hidden_size: int  # the KL is averaged over positions x hidden dims


def latest_checkpoint(output: Path) -> Path | None:
    done = sorted(p for p in (output / CHECKPOINTS).glob("step-*") if (p / STATE_FILE).is_file())
    return done[-1] if done else None


def save_checkpoint(accelerator: Any, output: Path, state: dict[str, int]) -> None:
    path = output / CHECKPOINTS / f"step-{state['step']:08d}"
    accelerator.save_state(str(path))
    if accelerator.is_main_process:
        (path / STATE_FILE).write_text(json.dumps(state))  # written last: marks the checkpoint complete
        done = sorted(p for p in (output / CHECKPOINTS).glob("step-*") if (p / STATE_FILE).is_file())
        for old in done[:-KEEP_LAST_CHECKPOINTS]:
            shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()


def trim_log(log_path: Path, step: int) -> None:
    """Drop log records past the checkpoint we resume from (they will be written again)."""
    if log_path.is_file():
        kept = [line for line in log_path.read_text().splitlines()
                if line.strip() and json.loads(line).get("step", 0) <= step and "event" not in json.loads(line)]
        log_path.write_text("".join(line + "\n" for line in kept))


def global_batches(loader: Iterable[dict[str, Any]], size: int) -> Iterator[list[dict[str, Any]]]:
    """Consecutive groups of `size` micro-batches; an incomplete last group is dropped (module docstring)."""
    group: list[dict[str, Any]] = []
    for batch in loader:
        group.append(batch)
        if len(group) == size:
            yield group
            group = []


def run_steps(tuning: Tuning, state: dict[str, int], output: Path, save_every: int) -> dict[str, Any]:
    """Optimiser steps from `state` up to `tuning.total`, epoch after epoch, logging each step and saving a
    checkpoint every `save_every`; `state` is advanced in place. Returns the last step's log record."""
    accelerator = tuning.accelerator
    bar = tqdm(total=tuning.total, initial=state["step"], disable=not accelerator.is_local_main_process, desc="tune")
    start, record = time.time(), {}
    while state["step"] < tuning.total:
        tuning.loader.set_epoch(state["epoch"])
        skip = state["batches_in_epoch"]
        loader = accelerator.skip_first_batches(tuning.loader, skip) if skip else tuning.loader
        for group in global_batches(loader, tuning.grad_accum):
            sums, lr = _optimiser_step(tuning, group, state["step"])
            state["step"] += 1
            state["batches_in_epoch"] += len(group)
            record = _step_record(tuning, state, sums, lr, start)
            if accelerator.is_main_process:
                with open(output / LOG_FILE, "a") as f:
                    f.write(json.dumps(record) + "\n")
            bar.update(1)
            bar.set_postfix({k: f"{record[k]:.4g}" for k in ("ce", "kl_visual", "kl_text", "lr") if k in record})
            if state["step"] >= tuning.total:
                break
            if save_every and state["step"] % save_every == 0:
                save_checkpoint(accelerator, output, state)
        else:  # the epoch ran out before the step budget
            state["epoch"], state["batches_in_epoch"] = state["epoch"] + 1, 0
            continue
        break
    bar.close()
    return record


def _global_counts(tuning: Tuning, group: list[dict[str, Any]]) -> torch.Tensor:
    """(supervised tokens, visual-KL terms, text-KL terms) of the whole global batch, summed over processes."""
    token_id = tuning.handle.config.image_token_id if tuning.handle is not None else None
    local = [0, 0, 0]
    for batch in group:
        local[0] += int((batch["labels"][:, 1:] != IGNORE_INDEX).sum())
        visual, text = kl_position_counts(batch, token_id)
        local[1] += visual * tuning.hidden_size
        local[2] += text * tuning.hidden_size
    counts = torch.tensor(local, dtype=torch.float64, device=tuning.accelerator.device)
    return tuning.accelerator.reduce(counts, "sum").clamp(min=1)


def _optimiser_step(tuning: Tuning, group: list[dict[str, Any]], step: int) -> tuple[torch.Tensor, float]:
    """Forward and backward on each micro-batch of one global batch, then the optimiser step. Returns the global
    sums (CE, KL_v, KL_t, supervised tokens, visual-KL terms, text-KL terms) and the learning rate used."""
    accelerator, handle, model = tuning.accelerator, tuning.handle, tuning.model
    counts = _global_counts(tuning, group)
    # the sums of each process and micro-batch, which Accelerate and the data-parallel backend average
    scale = accelerator.num_processes * tuning.grad_accum
    sums = torch.zeros(3, dtype=torch.float64, device=accelerator.device)
    lr = tuning.scheduler.get_last_lr()[0]
    for batch in group:
        with accelerator.accumulate(model):
            if handle is not None:
                handle.set_progress(step / max(1, tuning.total - 1))
            n_sup = (batch["labels"][:, 1:] != IGNORE_INDEX).sum()
            # the model's mean over this micro-batch's supervised tokens, of which every row has at least one (the
            # collators keep a row's first answer token through truncation)
            ce = model(**batch, use_cache=False).loss * n_sup
            kl = handle.kl_sums() if handle is not None else (torch.zeros_like(ce), torch.zeros_like(ce))
            loss = ce / counts[0].to(ce.dtype)
            for beta, kl_sum, count in zip(tuning.betas, kl, counts[1:]):
                loss = loss + beta * kl_sum.to(ce.dtype) / count.to(ce.dtype)
            accelerator.backward(loss * scale)
            if accelerator.sync_gradients and tuning.max_grad_norm:
                accelerator.clip_grad_norm_(tuning.params, tuning.max_grad_norm)
            tuning.optimizer.step()
            if accelerator.sync_gradients and not accelerator.optimizer_step_was_skipped:
                tuning.scheduler.step()
            tuning.optimizer.zero_grad(set_to_none=True)
        sums += torch.stack([ce.detach(), kl[0].detach().to(ce.device), kl[1].detach().to(ce.device)]).double()
    return torch.cat([accelerator.reduce(sums, "sum"), counts]), lr


def _step_record(tuning: Tuning, state: dict[str, int], sums: torch.Tensor, lr: float,
                 start: float) -> dict[str, Any]:
    """The log record of the optimiser step just taken: the global batch's mean CE (per supervised token) and
    KL terms (per position and dim)."""
    ce, kl_v, kl_t, n_sup, n_v, n_t = sums.tolist()
    record = {"step": state["step"], "epoch": state["epoch"], "lr": lr, "ce": ce / n_sup,
              "supervised_tokens": int(n_sup), "elapsed_s": round(time.time() - start, 4)}
    if tuning.handle is not None:
        beta_v, beta_t = tuning.betas
        record.update(kl_visual=kl_v / n_v, kl_text=kl_t / n_t, alpha=tuning.handle.bottleneck.alpha(),
                      loss=ce / n_sup + beta_v * kl_v / n_v + beta_t * kl_t / n_t)
    return record
