"""Task adapters: prompt building, answer parsing, scoring and per-cell aggregation."""

from vittle_bench.adapters.base import TASK_ADAPTERS, TaskAdapter

__all__ = ["TASK_ADAPTERS", "TaskAdapter"]
