"""Kill-safe resume, per-sample fault isolation and multi-process runs."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from vittle_bench.builtin.scenes import draw_scene, scene_rng
from vittle_bench.cli import main

COUNTING = str(Path(__file__).with_name("counting_model.py"))
ARGS = ["--tasks", "shapes_pope_random,shapes_mc", "--shifts", "gaussian_noise@2,keyboard@1", "--limit", "12",
        "--batch-size", "5"]


def _counting_run(out: Path, cache: Path, log: Path, kill_at_call: int = 0) -> subprocess.CompletedProcess:
    model_args = f"log={log}" + (f",kill_at_call={kill_at_call}" if kill_at_call else "")
    return subprocess.run([sys.executable, COUNTING, "run", "--model", "counting:model", "--model-args", model_args,
                           *ARGS, "--output", str(out), "--cache-dir", str(cache)], capture_output=True, text=True,
                          timeout=300)


def test_sigkill_then_rerun_equals_uninterrupted_and_computes_nothing_twice(world_cache, tmp_path):
    answers = tmp_path / "answers"
    shutil.copytree(world_cache, answers)  # same built-in world, private answer cache
    killed = _counting_run(tmp_path / "run", answers, tmp_path / "calls.log", kill_at_call=6)
    assert killed.returncode == -9
    done_before = (tmp_path / "calls.log").read_text().split()
    assert 0 < len(done_before) < 2 * 3 * 12
    resumed = _counting_run(tmp_path / "run", answers, tmp_path / "calls.log")
    assert resumed.returncode == 0, resumed.stderr
    calls = Counter((tmp_path / "calls.log").read_text().split())
    assert max(calls.values()) == 1  # no request was generated twice across the kill

    fresh_cache = tmp_path / "fresh"
    shutil.copytree(world_cache, fresh_cache)
    straight = _counting_run(tmp_path / "straight", fresh_cache, tmp_path / "straight.log")
    assert straight.returncode == 0
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "run" / "results.csv"),
                                  pd.read_csv(tmp_path / "straight" / "results.csv"))
    resumed_records = (tmp_path / "run" / "samples.jsonl").read_text().splitlines()
    keys = Counter((r["task"], r["shift"], r["severity"], r["sample_id"]) for r in map(json.loads, resumed_records))
    assert len(keys) == 2 * 3 * 12 and set(keys.values()) == {1}  # nothing lost, nothing duplicated


def _faulty_split(root: Path) -> Path:
    images = root / "images"
    images.mkdir(parents=True)
    good = draw_scene(scene_rng(0, 1)).image
    good.save(images / "good.png")
    good.save(images / "full.jpg", quality=90)
    (images / "truncated.jpg").write_bytes((images / "full.jpg").read_bytes()[:300])
    (images / "empty.png").write_bytes(b"")
    Image.fromarray(np.asarray(good.convert("L"), dtype=np.uint16) * 250).save(images / "sixteen.png")
    good.convert("RGBA").save(images / "rgba.png")
    rows = [{"question_id": name, "question": "Is there a red circle in the image?", "image": f"images/{name}",
             "answer": "no"} for name in ("good.png", "truncated.jpg", "empty.png", "sixteen.png", "rgba.png")]
    rows.append({"question_id": "no-question", "image": "images/good.png", "answer": "yes"})
    (root / "faulty.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (root / "faulty.yaml").write_text("task: faulty\nsource: local:faulty.jsonl\nadapter: pope\n")
    return root


def test_bad_samples_are_recorded_and_counted(tiny_random_checkpoint, world_cache, tmp_path, capsys):
    root = _faulty_split(tmp_path / "data")
    args = ["run", "--model", f"hf:{tiny_random_checkpoint}", "--tasks", "faulty", "--shifts", "defocus_blur@1",
            "--include-path", str(root), "--cache-dir", str(world_cache)]
    assert main([*args, "--output", str(tmp_path / "run")]) == 0
    out = capsys.readouterr().out
    assert "6 errors (see samples.jsonl)" in out
    assert "commonest error (2 of 6): " in out  # each bad sample fails alike under both conditions
    records = {(r["shift"], r["sample_id"]): r for r in map(json.loads, (tmp_path / "run" / "samples.jsonl").open())}
    for shift in ("clean", "defocus_blur"):
        assert {k[1] for k, r in records.items() if k[0] == shift and r["error"]} == {"truncated.jpg", "empty.png",
                                                                                       "no-question"}
        assert records[(shift, "sixteen.png")]["raw_output"] is not None
        assert records[(shift, "rgba.png")]["raw_output"] is not None
    assert "missing column" in records[("clean", "no-question")]["error"]
    results = pd.read_csv(tmp_path / "run" / "results.csv")
    errors = results[results.metric == "n_errors"].set_index("shift")["value"]
    assert errors["clean"] == 3 and errors["defocus_blur"] == 3
    accuracy = results[results.metric == "accuracy"]
    assert set(accuracy["n"]) == {3}  # metrics are over the samples that ran
    assert main([*args, "--output", str(tmp_path / "ff"), "--fail-fast"]) == 1


def test_two_processes_give_the_same_run_as_one(world_cache, tmp_path):
    """... and shift each image once: each process takes a contiguous block of a cell, so the six questions
    about one POPE image stay on one process (without a cache, only the questions of one batch share a shift)."""
    pytest.importorskip("accelerate")
    common = ["-m", "vittle_bench", "run", "--model", "builtin:tiny-llava", "--tasks", "shapes_mc,shapes_pope_random",
              "--shifts", "keyboard@2,gaussian_noise@1", "--limit", "12", "--batch-size", "6", "--no-cache",
              "--cache-dir", str(world_cache)]
    with socket.socket() as s:  # a free port for the gloo rendezvous
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    # --multi_gpu picks accelerate's multi-process launcher; without GPUs the processes use gloo on the CPU
    # (accelerate's --cpu flag launches a single process).
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
              "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
              "--main_process_port", str(port)]
    two = subprocess.run([*launch, *common, "--output", str(tmp_path / "two")], capture_output=True, text=True,
                         timeout=600)
    assert two.returncode == 0, two.stderr[-2000:]
    one = subprocess.run([sys.executable, *common, "--output", str(tmp_path / "one")], capture_output=True, text=True,
                         timeout=600)
    assert one.returncode == 0
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "one" / "results.csv"),
                                  pd.read_csv(tmp_path / "two" / "results.csv"))
    assert (tmp_path / "one" / "samples.jsonl").read_text() == (tmp_path / "two" / "samples.jsonl").read_text()
    two_manifest, one_manifest = (json.loads((tmp_path / run / "manifest.json").read_text()) for run in ("two", "one"))
    assert two_manifest["processes"] == 2
    # 12 multiple-choice images and the 2 POPE images the first 12 POPE questions ask about
    assert two_manifest["summary"]["shifted_images"]["gaussian_noise@1"]["computed"] == 14
    assert one_manifest["summary"]["shifted_images"]["gaussian_noise@1"]["computed"] == 14
