"""What several commands share: exit codes, and quiet library progress bars while a command shows its own."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

USAGE_ERROR = 2
INTERRUPTED = 130  # 128 + SIGINT, as shells report a command stopped by Ctrl-C


@contextmanager
def library_bars_off(with_datasets: bool = True) -> Iterator[None]:
    """Silence the progress bars of transformers and the hub (and of datasets, unless `with_datasets` is False:
    importing it costs more than a second) while a command shows one of its own (half a dozen bars from
    library internals say nothing to a user); they come back as they were."""
    import transformers.utils.logging as transformers_logging

    transformers_on = transformers_logging.is_progress_bar_enabled()
    transformers_logging.disable_progress_bar()  # the hub's bars too
    datasets_on = False
    if with_datasets:
        import datasets

        datasets_on = datasets.is_progress_bar_enabled()
        datasets.disable_progress_bars()
    try:
        yield
    finally:
        if datasets_on:
            datasets.enable_progress_bars()
        if transformers_on:
            transformers_logging.enable_progress_bar()
