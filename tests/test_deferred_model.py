"""A model known by its recorded fingerprint: a fully cached rerun never loads the weights; a rerun with new cells
loads them at its first miss and checks the fingerprint; changed weights are another identity."""

from __future__ import annotations

import json
import shutil
import sqlite3

import pytest

from vittle_bench.builtin.world import world_dir
from vittle_bench.models import deferred
from vittle_bench.models.base import model_backend
from vittle_bench.models.hf import HFModel, directory_fingerprint
from vittle_bench.models.prompt_profiles import TRAINED_PROFILE_FILE
from vittle_bench.run_plan import RunOptions
from vittle_bench.runner import run


@pytest.fixture
def cache(world_cache, tmp_path):
    """A cache holding the built-in world and nothing else (no answers, no recorded fingerprints)."""
    target = tmp_path / "cache"
    shutil.copytree(world_dir(world_cache), world_dir(target))
    return target


@pytest.fixture
def loads(monkeypatch):
    """The models loaded, by spec (every way a run loads one goes through deferred.load_model)."""
    loaded: list[str] = []
    real = deferred.load_model
    monkeypatch.setattr(deferred, "load_model", lambda spec, **args: loaded.append(spec) or real(spec, **args))
    return loaded


def evaluate(checkpoint, cache, out, shifts):
    return run(RunOptions(models=[f"hf:{checkpoint}"], output=out, tasks="shapes_mc", shifts=shifts, limit=3,
                          batch_size=2, cache_dir=cache, progress=False))


def manifest_models(out):
    return json.loads((out / "manifest.json").read_text())["models"]


def test_a_fully_cached_rerun_never_loads_the_weights(tiny_random_checkpoint, cache, tmp_path, loads):
    first = evaluate(tiny_random_checkpoint, cache, tmp_path / "first", "gaussian_noise@1,keyboard@1")
    assert loads == [f"hf:{tiny_random_checkpoint}"] and first.n_generated == 9
    again = evaluate(tiny_random_checkpoint, cache, tmp_path / "again", "gaussian_noise@1,keyboard@1")
    assert len(loads) == 1 and (again.n_generated, again.n_cached) == (0, 9)
    assert (tmp_path / "again" / "samples.jsonl").read_text() == (tmp_path / "first" / "samples.jsonl").read_text()
    assert manifest_models(tmp_path / "again") == manifest_models(tmp_path / "first")


def test_a_rerun_with_new_cells_loads_the_model_at_its_first_miss(tiny_random_checkpoint, cache, tmp_path, loads):
    evaluate(tiny_random_checkpoint, cache, tmp_path / "first", "gaussian_noise@1")
    wider = evaluate(tiny_random_checkpoint, cache, tmp_path / "wider", "gaussian_noise@1,keyboard@1")
    assert len(loads) == 2 and (wider.n_generated, wider.n_cached) == (3, 6)
    assert manifest_models(tmp_path / "wider") == manifest_models(tmp_path / "first")
    first = (tmp_path / "first" / "samples.jsonl").read_text().splitlines()
    assert set(first) <= set((tmp_path / "wider" / "samples.jsonl").read_text().splitlines())


def test_a_loaded_fingerprint_unlike_its_record_stops_the_run(tiny_random_checkpoint, cache, tmp_path, loads):
    evaluate(tiny_random_checkpoint, cache, tmp_path / "first", "gaussian_noise@1")
    with sqlite3.connect(cache / deferred.MODEL_FINGERPRINTS.file) as db:
        assert db.execute("UPDATE model_fingerprints SET fingerprint = 'planted'").rowcount == 1
    with pytest.raises(deferred.FingerprintMismatch, match="not the planted recorded in .*models.sqlite"):
        evaluate(tiny_random_checkpoint, cache, tmp_path / "again", "gaussian_noise@1")
    again = evaluate(tiny_random_checkpoint, cache, tmp_path / "again", "gaussian_noise@1")  # the record is gone
    assert again.n_cached == 6 and manifest_models(tmp_path / "again") == manifest_models(tmp_path / "first")


def test_without_a_cache_or_an_identity_the_model_loads_at_once(tiny_random_checkpoint, loads):
    model = deferred.load_model_when_needed(f"hf:{tiny_random_checkpoint}", {}, None)
    assert isinstance(model, HFModel) and loads == [f"hf:{tiny_random_checkpoint}"]
    assert model_backend("openai").load_identity("some-model") is None  # the base class's default: cannot tell


def test_changed_weights_args_or_template_are_another_identity(tiny_random_checkpoint, tmp_path):
    checkpoint = tmp_path / "checkpoint"
    shutil.copytree(tiny_random_checkpoint, checkpoint)
    base = HFModel.load_identity(str(checkpoint))
    assert base == HFModel.load_identity(str(checkpoint)) and base["weights"] == directory_fingerprint(checkpoint)
    assert HFModel.load_identity(str(checkpoint), dtype="bfloat16") != base
    assert HFModel.load_identity(str(checkpoint), device="cpu", device_map="auto") == base  # placement only
    template = tmp_path / "chat.jinja"
    template.write_text("{{ messages }}")
    with_template = HFModel.load_identity(str(checkpoint), chat_template=str(template))
    template.write_text("{{ messages }} ")
    assert HFModel.load_identity(str(checkpoint), chat_template=str(template)) != with_template
    weights = checkpoint / "model.safetensors"
    weights.write_bytes(weights.read_bytes() + b" ")  # another size, another modification time
    assert HFModel.load_identity(str(checkpoint))["weights"] != base["weights"]


def test_a_hub_snapshot_is_known_by_its_commit_and_what_its_local_copy_holds(tiny_random_checkpoint, tmp_path):
    """Offline, a prompt profile or bottleneck file missing from the snapshot changes the loaded model, not the
    commit: the identity names them too."""
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "hub" / "models--tiny--random"
    snapshot = repo / "snapshots" / commit
    shutil.copytree(tiny_random_checkpoint, snapshot)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    hub = {"cache_dir": str(tmp_path / "hub")}
    plain = HFModel.load_identity("tiny/random", **hub)
    assert plain["commit"] == commit and plain["trained_profile"] is None and plain["vittle"] is False
    (snapshot / TRAINED_PROFILE_FILE).write_text(json.dumps({"prompt_profile": "vicuna_v1"}))
    profiled = HFModel.load_identity("tiny/random", **hub)
    assert profiled["trained_profile"] == "vicuna_v1" and profiled != plain
    assert deferred.load_model_when_needed("hf:tiny/random", hub, tmp_path / "cache").fingerprint_info[
        "profile"]["name"] == "vicuna_v1"
