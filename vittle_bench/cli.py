"""vittle-bench: robustness of multimodal LLMs under image, text, joint and domain shifts.

A user's mistake (unknown names, bad YAML or options, unwritable output, a run directory in use) prints one line
and exits with code 2; Ctrl-C exits with 130; tracebacks are left for our bugs.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from typing import NoReturn

from vittle_bench.commands import COMMAND_MODULES
from vittle_bench.commands.common import INTERRUPTED, USAGE_ERROR
from vittle_bench.config import ConfigError
from vittle_bench.registry import UnknownNameError


class _Parser(argparse.ArgumentParser):
    """argparse with its errors as ConfigError: one line, like every other usage error, instead of the usage
    block (`--help` still prints it)."""

    def error(self, message: str) -> NoReturn:
        raise ConfigError(f"{message} (`{self.prog} --help` lists the options)")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="vittle-bench", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for module in COMMAND_MODULES:
        importlib.import_module(module).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        return args.func(args)
    except (ConfigError, UnknownNameError) as exc:
        print(f"vittle-bench: error: {exc}", file=sys.stderr)
        return USAGE_ERROR
    except KeyboardInterrupt:
        print("vittle-bench: interrupted", file=sys.stderr)
        return INTERRUPTED
    except BrokenPipeError:  # output piped into `head` and friends: stop quietly, as Unix tools do
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
