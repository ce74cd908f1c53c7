"""`vittle_bench.tasks` names the same adapter base and registry as `vittle_bench.adapters`, for plugins that
import them from here (`from vittle_bench.tasks import TaskAdapter`). vittle-bench's own modules import from
`vittle_bench.adapters`."""

from vittle_bench.adapters import TASK_ADAPTERS, TaskAdapter

__all__ = ["TASK_ADAPTERS", "TaskAdapter"]
