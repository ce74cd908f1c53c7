"""One module per CLI subcommand; each exposes `register(subparsers)` which adds its parser and sets `func`.

To add a command, write `vittle_bench/commands/<name>.py` and list the module in COMMAND_MODULES.
"""

COMMAND_MODULES = (
    "vittle_bench.commands.run",
    "vittle_bench.commands.list",
    "vittle_bench.commands.shifts",
    "vittle_bench.commands.leaderboard",
    "vittle_bench.commands.compare",
    "vittle_bench.commands.report",
    "vittle_bench.commands.train_builtin",
    "vittle_bench.commands.tune",
    "vittle_bench.commands.emi",
    "vittle_bench.commands.data",
    "vittle_bench.commands.cache",
)
