"""Shifting overlaps generation: while the model answers one batch, the next ones are shifted.

`prefetched(items, prepare, depth)` yields `prepare(item)` for each item in order, computed in one background
thread up to `depth` items ahead of the consumer (0: in line, nothing ahead). The runner's `prepare` shifts a
batch and builds its requests through the shift engine, whose worker processes (`--shift-workers`) do the
pixel work, so the wall time of a run approaches max(shift, generate) instead of their sum. The bound keeps
memory flat: at most `depth` shifted batches wait for the model.

What runs ahead is pure: the same seed rule and the same bytes whatever the timing (records are identical with
and without prefetch, tested). The items are drawn in the background thread too (the runner's load the samples
and look them up in the answer cache through a connection of their own); an exception in drawing or preparing
an item reaches the consumer at that item. Until the first batch that needs shifting, batches are taken in line:
a fully cached rerun has nothing to overlap, and a second thread would only contend for the interpreter.
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")
U = TypeVar("U")


def prefetched(items: Iterable[T], prepare: Callable[[T], U], depth: int,
               costly: Callable[[T], bool] = lambda item: True) -> Iterator[U]:
    """`prepare(item)` for each item, in order, computed up to `depth` items ahead of the consumer. Items are
    prepared in line up to the first `costly` one; from it on (with depth > 0) they are drawn from `items` and
    prepared in the background thread (one at a time, in order). Work with nothing to overlap (a fully cached
    rerun shifts nothing) thus never pays for a thread."""
    if depth <= 0:
        yield from map(prepare, items)
        return
    source = iter(items)
    for item in source:
        if costly(item):
            source = itertools.chain([item], source)
            break
        yield prepare(item)
    else:
        return

    def next_prepared() -> U | _End:
        item = next(source, _END)
        return item if isinstance(item, _End) else prepare(item)

    pool = ThreadPoolExecutor(1, thread_name_prefix="vittle-prefetch")
    try:
        pending = deque(pool.submit(next_prepared) for _ in range(depth))
        while not isinstance(ready := pending.popleft().result(), _End):
            pending.append(pool.submit(next_prepared))
            yield ready
    finally:  # the consumer stopped (done, an error, Ctrl-C): what was queued is dropped, not computed
        pool.shutdown(wait=True, cancel_futures=True)


class _End:
    """The items ran out."""


_END = _End()
