"""vittle-bench: robustness of multimodal LLMs under image, text, joint and domain shifts.

A user's mistake (unknown names, bad YAML or options, unwritable output, a run directory in use) prints one line
and exits with code 2; Ctrl-C exits with 130; tracebacks are left for our bugs.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import NoReturn

from vittle_bench.commands import COMMAND_MODULES
from vittle_bench.config import ConfigError
from vittle_bench.registry import UnknownNameError

USAGE_ERROR = 2
INTERRUPTED = 130  # 128 + SIGINT, as shells report a command stopped by Ctrl-C


class _Parser(argparse.ArgumentParser):
    """argparse with its errors as ConfigError: one line, like every other usage error, instead of the usage
    block (`--help` still prints it)."""

    def error(self, message: str) -> NoReturn:
        raise ConfigError(f"{message} (`{self.prog} --help` lists the options)")


@contextmanager
def library_bars_off() -> Iterator[None]:
    """Silence the progress bars of datasets, transformers and the hub while a command shows one of its own
    (half a dozen bars from library internals say nothing to a user); they come back as they were."""
    import datasets
    import transformers.utils.logging as transformers_logging

    datasets_on, transformers_on = datasets.is_progress_bar_enabled(), transformers_logging.is_progress_bar_enabled()
    datasets.disable_progress_bars()
    transformers_logging.disable_progress_bar()  # the hub's bars too
    try:
        yield
    finally:
        if datasets_on:
            datasets.enable_progress_bars()
        if transformers_on:
            transformers_logging.enable_progress_bar()


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
