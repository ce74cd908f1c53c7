"""manifest.json: a run's command line, versions, seed, models, tasks with their adapter arguments and judge
protocol, shift conditions with their parameters, domain cells with how they are scored, and what was skipped."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from vittle_bench.openai_client import redact_model_args
from vittle_bench.results_io import run_versions
from vittle_bench.run_plan import RunOptions, RunPlan
from vittle_bench.shifts import condition_manifest
from vittle_bench.shifts.domain import DomainShift


def manifest(options: RunOptions, plan: RunPlan, models: list[dict], started: str, summary: dict[str, Any],
             world_size: int) -> dict[str, Any]:
    """manifest.json: what was run, with which versions and seeds, how every cell was built and scored."""
    return {
        "command_line": options.command_line, "started": started,
        "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"), "seed": options.seed,
        "versions": run_versions(), "models": models, "processes": world_size,
        "tasks": [{"task": t.task, "source": t.source, "subset": t.subset, "adapter": t.adapter,
                   "adapter_args": _redacted_adapter_args(t.adapter_args), "config": t.path.name,
                   "headline": plan.adapters[t.task].headline, "judge_protocol": plan.adapters[t.task].judge_protocol()}
                  for t in plan.tasks],
        "judge": options.judge, "judge_args": redact_model_args(options.judge_args),
        "shifts": [condition_manifest(c, options.seed) for c in plan.conditions],
        "domains": domain_manifest(plan),
        **_plan_manifest(plan),
        "skipped_conditions": [{"label": c.label, "reason": "no selected task declares this domain"}
                               for c in plan.skipped],
        "limit": options.limit, "batch_size": options.batch_size,
        "data_dir": str(options.data_dir) if options.data_dir else None,
        "summary": summary,
    }


def domain_manifest(plan: RunPlan) -> list[dict[str, Any]]:
    """Per task and domain condition: where the rows come from and how they are scored."""
    out = []
    for spec in plan.tasks:
        for condition in filter(lambda c: plan.has_cell(spec.task, c), plan.conditions):
            shift = condition.shift
            declaration = plan.domains.declaration(spec, shift.domain) if isinstance(shift, DomainShift) else None
            if declaration is not None:
                adapter = plan.adapter(spec.task, condition)
                out.append({"task": spec.task, "condition": condition.label, **declaration.describe(),
                            "scored_by": adapter.name, "judge_protocol": adapter.judge_protocol()})
    return out


def _plan_manifest(plan: RunPlan) -> dict[str, Any]:
    """With `--plan`: the plan as written and every cell it ran (task, condition)."""
    if plan.evaluation_plan is None or plan.cells is None:
        return {}
    return {"plan": plan.evaluation_plan.record(), "cells": sorted([task, label] for task, label in plan.cells)}


def _redacted_adapter_args(args: dict[str, Any]) -> dict[str, Any]:
    return {**args, "judge_args": redact_model_args(args["judge_args"])} if "judge_args" in args else args
