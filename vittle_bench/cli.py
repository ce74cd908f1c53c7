"""vittle-bench: robustness of multimodal LLMs under image, text, joint and domain shifts.

Configuration mistakes (unknown names, bad YAML, unwritable output) print one line and exit with code 2.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from vittle_bench.commands import COMMAND_MODULES
from vittle_bench.config import ConfigError
from vittle_bench.registry import UnknownNameError

USAGE_ERROR = 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vittle-bench", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for module in COMMAND_MODULES:
        importlib.import_module(module).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ConfigError, UnknownNameError) as exc:
        print(f"vittle-bench: error: {exc}", file=sys.stderr)
        return USAGE_ERROR
    except BrokenPipeError:  # output piped into `head` and friends: stop quietly, as Unix tools do
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
