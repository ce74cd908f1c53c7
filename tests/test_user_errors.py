"""Every user mistake we know of in `run`, `shifts preview`, `data pope` and `list`: one line on stderr, the
documented exit code (2), never a traceback. One row per mistake; in-process through `cli.main` unless only a
fresh interpreter can show it (hub settings are read when huggingface_hub is imported)."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PIL import Image

from vittle_bench.cli import main

RUN = ["run", "--model", "builtin:tiny-llava", "--tasks", "shapes_mc", "--shifts", "keyboard@1"]
PREVIEW = ["shifts", "preview", "--task", "shapes_mc", "--shifts", "keyboard", "--cache-dir", "{world}",
           "--output", "{tmp}/preview"]
POPE = ["data", "pope", "--annotations", "{tmp}/coco/instances.json", "--images", "{tmp}/coco",
        "--output", "{tmp}/pope"]

CASES = [
    # run: options
    (["run", "--model", "builtin:tiny-llava", "--limit", "0"], "--limit must be at least 1 (got 0)"),
    (["run", "--model", "builtin:tiny-llava", "--limit", "-3"], "--limit must be at least 1 (got -3)"),
    (["run", "--model", ""], "--model: no model given"),
    (["run", "--model", " , "], "--model: no model given"),
    (["run", "--model", "builtin:tiny-llava,,builtin:tiny-llava-vittle-f"], "an empty entry between commas"),
    ([*RUN, "--model-args", "foo"], "--model-args: 'foo' is not key=value"),
    ([*RUN, "--model-args", "=bfloat16"], "--model-args: '=bfloat16' is not key=value"),
    ([*RUN, "--judge-args", "foo"], "--judge-args: 'foo' is not key=value"),
    ([*RUN, "--batch-size", "0"], "--batch-size must be at least 1"),
    ([*RUN, "--emi-encoders", "a,b,c"], "--emi-encoders takes IMAGE,TEXT"),
    ([*RUN, "--include-path", "{tmp}/no-such-dir"], "is not a directory"),
    (["run"], "the following arguments are required: --model"),
    ([*RUN, "--limit", "ten"], "argument --limit: invalid int value: 'ten'"),
    # run: task files
    ([*RUN[:4], "typo_args", "--include-path", "{tmp}/tasks"],
     "typo_args.yaml: unknown adapter_args promt_suffix; adapter closed_form takes prompt_suffix,"),
    (["list", "tasks", "--include-path", "{tmp}/tasks"], "typo_args.yaml: unknown adapter_args promt_suffix"),
    ([*RUN[:4], "typo_adapter", "--include-path", "{tmp}/adapter_typo"],
     "typo_adapter.yaml: unknown adapter 'closed_from'; did you mean closed_form? (see `vittle-bench list adapters`)"),
    # run: models that cannot be had (checked before anything loads)
    (["run", "--model", "hf:/a/missing/dir"], "hf:/a/missing/dir: no such checkpoint directory /a/missing/dir"),
    (["run", "--model", "hf:{tmp}/tasks"], "holds no config.json, so it is not a checkpoint directory"),
    (["run", "--model", "hf:nosuch-org/nosuch-model"],
     "hf:nosuch-org/nosuch-model is not in the local Hugging Face cache and the hub is switched off (HF_HUB_OFFLINE)"),
    (["run", "--model", "hf:a/b/c"], "'a/b/c' is neither a directory nor a hub id like ORG/NAME"),
    (["run", "--model", "builtin:tiny-lava"], "did you mean builtin:tiny-llava"),
    # run: directories
    ([*RUN, "--cache-dir", "{tmp}/a-file/cache"], "cache directory (--cache-dir) {tmp}/a-file/cache is not writable"),
    ([*RUN, "--output", "{tmp}/a-file/run"], "output directory {tmp}/a-file/run is not writable"),
    ([*RUN, "--data-dir", "{tmp}/no-such-dir"], "--data-dir {tmp}/no-such-dir is not a directory"),
    # run: judges
    ([*RUN, "--judge", "nosuch"], "unknown judge 'nosuch'"),
    ([*RUN, "--judge", "openai"], "judge 'openai' needs a model"),
    ([*RUN, "--judge", "overlap:gpt-4o"], "judge 'overlap' takes no model"),
    # shifts preview
    ([*PREVIEW, "--cell", "0"], "--cell 0: thumbnails are 32 to 1024 pixels"),
    ([*PREVIEW, "--cell", "-5"], "--cell -5: thumbnails are 32 to 1024 pixels"),
    ([*PREVIEW, "--cell", "100000"], "--cell 100000: thumbnails are 32 to 1024 pixels"),
    ([*PREVIEW, "--sample", "-1"], "--sample -1: task shapes_mc has 200 samples"),
    ([*PREVIEW, "--sample", "200"], "--sample 200: task shapes_mc has 200 samples"),
    ([*PREVIEW, "--severities", "0,3"], "--severities: positive integers"),
    ([*PREVIEW, "--severities", "x"], "--severities 'x': give integers like 1,3,5"),
    ([*PREVIEW, "--shifts", "frots"], "did you mean frost"),
    (["shifts", "preview", "--image", "{tmp}/no-such.png", "--output", "{tmp}/preview"], "cannot read it"),
    (["shifts", "preview", "--task", "shapes_mc", "--output", "{tmp}/a-file/preview", "--shifts", "keyboard"],
     "--output {tmp}/a-file/preview cannot be created"),
    # data pope
    ([*POPE, "--k", "4"], "--k 4: no image in instances.json has 4 object categories and 4 it lacks"),
    ([*POPE, "--k", "0"], "--num-images and --k must be at least 1 (got 500 and 0)"),
    ([*POPE, "--num-images", "-1"], "--num-images and --k must be at least 1 (got -1 and 3)"),
    ([*POPE, "--strategy", "populr"], "--strategy: unknown ['populr']"),
    (["data", "pope", "--annotations", "{tmp}/none.json", "--images", "{tmp}/coco", "--output", "{tmp}/pope"],
     "--annotations {tmp}/none.json is not a file"),
    ([*POPE[:-1], "{tmp}/a-file"], "--output {tmp}/a-file exists and is not an empty directory"),
    ([*POPE[:-1], "{tmp}/a-file/pope", "--k", "1"], "--output {tmp}/a-file/pope cannot be created"),
    (["data", "pope", "--annotations", "{tmp}/a-list.json", "--images", "{tmp}/coco", "--output", "{tmp}/pope"],
     "--annotations {tmp}/a-list.json: cannot build POPE ("),
    # list
    (["list", "judgez"], "argument what: invalid choice: 'judgez'"),
]


@pytest.fixture(scope="module")
def places(tmp_path_factory, world_cache) -> dict[str, str]:
    """What the rows name: task files with typos, a file where a directory belongs, a tiny COCO set whose
    images hold at most three object categories."""
    tmp = tmp_path_factory.mktemp("mistakes")
    (tmp / "tasks").mkdir()
    (tmp / "tasks" / "typo_args.yaml").write_text("task: typo_args\nsource: builtin:shapes\nsubset: mc\n"
                                                  "adapter: closed_form\nadapter_args:\n  promt_suffix: Answer.\n")
    (tmp / "adapter_typo").mkdir()
    (tmp / "adapter_typo" / "typo_adapter.yaml").write_text("task: typo_adapter\nsource: builtin:shapes\nsubset: mc\n"
                                                            "adapter: closed_from\n")
    (tmp / "a-file").write_text("")
    (tmp / "a-list.json").write_text("[]")
    (tmp / "coco").mkdir()
    names = ["cat", "dog", "car", "cup", "bus", "kite"]
    images: list[dict] = []
    annotations: list[dict] = []
    for i in range(4):
        Image.new("RGB", (16, 16), (40 * i, 0, 0)).save(tmp / "coco" / f"{i}.jpg")
        images.append({"id": i, "file_name": f"{i}.jpg", "width": 16, "height": 16})
        annotations += [{"id": len(annotations), "image_id": i, "category_id": c + 1, "bbox": [0, 0, 4, 4],
                         "area": 16, "iscrowd": 0} for c in range(i % 3 + 1)]
    (tmp / "coco" / "instances.json").write_text(json.dumps({
        "images": images, "annotations": annotations,
        "categories": [{"id": i + 1, "name": n} for i, n in enumerate(names)]}))
    return {"tmp": str(tmp), "world": str(world_cache)}


def _one_line(code: int, out: str, err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert "Traceback" not in out + err
    assert len(lines) == 1, err
    return lines[0]


@pytest.mark.parametrize("argv,phrase", CASES, ids=[phrase[:60] for _, phrase in CASES])
def test_a_mistake_is_one_line_and_exit_2(argv, phrase, places, capsys):
    argv = [a.format(**places) for a in argv]
    if argv[0] == "run" and "--cache-dir" not in argv:
        argv += ["--cache-dir", places["world"]]
    if argv[0] == "run" and "--output" not in argv:
        argv += ["--output", f"{places['tmp']}/run-{len(argv)}"]
    code = main(argv)
    captured = capsys.readouterr()
    line = _one_line(code, captured.out, captured.err)
    assert code == 2
    assert line.startswith("vittle-bench: error: ") and phrase.format(**places) in line


def test_a_model_backend_that_is_no_model_subclass_is_one_line(places, capsys, monkeypatch):
    """Backends declare load / validate_name through the Model base class; an entry that is not one is the
    plugin's problem, said in one line, before anything loads."""
    from vittle_bench.models.base import MODELS

    class Plain:
        @classmethod
        def load(cls, name, **kwargs):
            raise AssertionError("never reached")

    monkeypatch.setitem(MODELS._registered, "plain", Plain)
    code = main(["run", "--model", "plain:x", "--output", str(Path(places["tmp"]) / "plain")])
    captured = capsys.readouterr()
    assert code == 2
    assert "model backend 'plain'" in _one_line(code, captured.out, captured.err) and "Model subclass" in captured.err


def test_a_model_that_cannot_be_had_leaves_no_run_directory(places, capsys):
    out = Path(places["tmp"]) / "never"
    assert main(["run", "--model", "hf:/a/missing/dir", "--cache-dir", places["world"], "--output", str(out)]) == 2
    assert not out.exists()


def test_judge_errors_point_to_a_command_that_lists_the_judges(places, capsys):
    assert main([*RUN, "--judge", "nosuch", "--cache-dir", places["world"], "--output", f"{places['tmp']}/j"]) == 2
    hint = re.search(r"`vittle-bench (list \w+)`", capsys.readouterr().err)
    assert hint is not None and hint.group(1) == "list judges"
    assert main(hint.group(1).split()) == 0
    listed = {line.split()[0] for line in capsys.readouterr().out.splitlines()}
    assert {"openai:<model>", "embedding", "overlap"} <= listed


def test_adapter_errors_point_to_a_command_that_lists_the_adapters(places, capsys):
    assert main(["list", "tasks", "--include-path", f"{places['tmp']}/adapter_typo"]) == 2
    hint = re.search(r"`vittle-bench (list \w+)`", capsys.readouterr().err)
    assert hint is not None and hint.group(1) == "list adapters"
    assert main(hint.group(1).split()) == 0
    listed = {line.split()[0] for line in capsys.readouterr().out.splitlines()[1:]}
    assert {"closed_form", "pope", "mme", "open_ended", "pairwise"} <= listed


def test_a_model_listed_twice_runs_once(tiny_random_checkpoint, world_cache, tmp_path, capsys):
    spec = f"hf:{tiny_random_checkpoint}"
    assert main(["run", "--model", f"{spec},{spec}", "--tasks", "shapes_mc", "--shifts", "keyboard@1", "--limit", "2",
                 "--cache-dir", str(world_cache), "--output", str(tmp_path / "run")]) == 0
    assert f"{spec} listed more than once in --model; each model runs once" in capsys.readouterr().err
    assert len((tmp_path / "run" / "samples.jsonl").read_text().splitlines()) == 2 * 2


def _offline_env(**extra: str) -> dict[str, str]:
    """The test session's environment with the hub switched on but unreachable: a closed local port."""
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return {**env, "HF_ENDPOINT": f"http://127.0.0.1:{port}", **extra}


@pytest.mark.slow
def test_a_hub_model_missing_from_the_cache_fails_at_once_when_the_hub_cannot_be_reached(world_cache, tmp_path):
    start = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "vittle_bench", "run", "--model", "hf:nosuch-org/nosuch-model",
                           "--cache-dir", str(world_cache), "--output", str(tmp_path / "run")],
                          capture_output=True, text=True, timeout=300, env=_offline_env(HF_HOME=str(tmp_path / "hf")))
    line = _one_line(proc.returncode, proc.stdout, proc.stderr)
    assert proc.returncode == 2 and "is not in the local Hugging Face cache and the hub cannot be reached" in line
    assert time.monotonic() - start < 60 and not (tmp_path / "run").exists()


@pytest.mark.slow
def test_a_cached_hub_model_loads_from_the_cache_when_the_hub_cannot_be_reached(tiny_random_checkpoint, world_cache,
                                                                                tmp_path):
    """Without HF_HUB_OFFLINE, transformers retries an unreachable hub for every file before reading its cache
    (minutes); the model is read from the cache at once instead."""
    import shutil

    commit = "0" * 40
    repo = tmp_path / "hub" / "models--someorg--tiny"
    shutil.copytree(tiny_random_checkpoint, repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    proc = subprocess.run([sys.executable, "-m", "vittle_bench", "run", "--model", "hf:someorg/tiny", "--tasks",
                           "shapes_mc", "--shifts", "keyboard@1", "--limit", "2", "--cache-dir", str(world_cache),
                           "--output", str(tmp_path / "run")],
                          capture_output=True, text=True, timeout=300,
                          env=_offline_env(HF_HUB_CACHE=str(tmp_path / "hub")))
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "Retrying" not in proc.stderr
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest["models"][0]["fingerprint_info"]["revision"] == commit
