"""What several commands share: exit codes, and quiet library progress bars while a command shows its own."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

USAGE_ERROR = 2
INTERRUPTED = 130  # 128 + SIGINT, as shells report a command stopped by Ctrl-C


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
