"""Shared fixtures. Hub access is switched off before anything imports transformers or datasets:
offline machines otherwise hang on every hub call."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

for _var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE"):
    os.environ[_var] = "1"
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


@pytest.fixture(scope="session")
def world_cache(tmp_path_factory) -> Path:
    """A cache directory holding the built-in world (generated once per test session)."""
    from vittle_bench.builtin.world import ensure_world

    cache = tmp_path_factory.mktemp("cache")
    ensure_world(cache)
    return cache


@pytest.fixture(scope="session")
def tiny_random_checkpoint(tmp_path_factory) -> Path:
    """The built-in architecture with random weights, saved like any HF checkpoint (for pipeline tests)."""
    import torch

    from vittle_bench.builtin.tiny_llava import build_model, build_processor

    torch.manual_seed(0)
    processor = build_processor()
    model = build_model(processor, hidden=32, vision_layers=1, text_layers=1, heads=2)
    path = tmp_path_factory.mktemp("tiny-random")
    model.save_pretrained(path)
    processor.save_pretrained(path)
    return path
