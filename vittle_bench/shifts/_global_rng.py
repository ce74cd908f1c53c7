"""Run a library that draws from global RNGs (numpy's, Python's) reproducibly from our per-sample RNG.

imagecorruptions and nlpaug take no seed argument; they draw from `np.random` / `random`. We seed those from
the sample's own generator inside one process-wide lock and restore the previous state afterwards, so the
result depends only on the sample's RNG and concurrent threads cannot interleave draws.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np

_LOCK = threading.RLock()
SEED_BOUND = 2**32 - 1  # np.random.seed takes 32-bit seeds


def draw_seed(rng: np.random.Generator) -> int:
    """One 32-bit seed from the sample's generator (the same draw `seeded_global_rngs` makes)."""
    return int(rng.integers(0, SEED_BOUND))


@contextmanager
def pinned_global_rngs(seed: int) -> Iterator[None]:
    """Seed numpy's and Python's global RNGs with `seed` for the block; restore them afterwards."""
    with _LOCK:
        np_state, py_state = np.random.get_state(), random.getstate()
        np.random.seed(seed)
        random.seed(seed)
        try:
            yield
        finally:
            np.random.set_state(np_state)
            random.setstate(py_state)


@contextmanager
def seeded_global_rngs(rng: np.random.Generator) -> Iterator[None]:
    with pinned_global_rngs(draw_seed(rng)):
        yield
