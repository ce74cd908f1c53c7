"""A run directory belongs to one run at a time (a second run is refused in one line, a killed run's lock is
taken over, nothing is lost), Ctrl-C stops cleanly and the same command resumes, and a run in which every
sample failed says so and exits non-zero."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest

from vittle_bench.cell_runner import CellRunner
from vittle_bench.cli import main
from vittle_bench.run_lock import HOLDER_FILE, RunDirectoryLock

from fake_openai_server import FakeServer, status
from pausing_model import wait_for

PAUSING = str(Path(__file__).with_name("pausing_model.py"))
ARGS = ["--tasks", "shapes_pope_random,shapes_mc", "--shifts", "gaussian_noise@2,keyboard@1", "--limit", "12",
        "--batch-size", "5"]
N_RECORDS = 2 * 3 * 12
SMALL = ["--tasks", "shapes_mc", "--shifts", "keyboard@1", "--limit", "4", "--batch-size", "2"]


def _stderr_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _tiny_run(checkpoint: Path, cache: Path, out: Path) -> list[str]:
    return ["run", "--model", f"hf:{checkpoint}", *SMALL, "--cache-dir", str(cache), "--output", str(out)]


# In-process: the lock's decisions and Ctrl-C, without starting interpreters.

def test_a_held_directory_is_refused_in_one_line_and_left_alone(tmp_path, world_cache, capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / "shards").mkdir()
    (out / "shards" / "rank0.jsonl").write_text('{"order": [0, 0, 0, 0]}\n')
    holder = RunDirectoryLock(out, "vittle-bench run --model builtin:tiny-llava --output run")
    holder.acquire()
    try:
        code = main(["run", "--model", "builtin:tiny-llava", *SMALL, "--cache-dir", str(world_cache),
                     "--output", str(out)])
    finally:
        holder.release()
    err = capsys.readouterr().err
    assert code == 2 and len(_stderr_lines(err)) == 1 and "Traceback" not in err
    assert f"pid {os.getpid()} on {socket.gethostname()}" in err and "--model builtin:tiny-llava --output run" in err
    assert (out / "shards" / "rank0.jsonl").read_text() == '{"order": [0, 0, 0, 0]}\n'  # another run's shards stay
    assert not (out / HOLDER_FILE).exists()


def test_a_record_of_a_live_process_refuses_even_when_the_os_lock_is_free(tmp_path, world_cache, capsys):
    """File systems that grant every flock: the holder's record still tells a live run from a dead one."""
    import psutil  # type: ignore[import-untyped]

    out = tmp_path / "run"
    out.mkdir()
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (out / HOLDER_FILE).write_text(json.dumps({
            "pid": live.pid, "host": socket.gethostname(), "process_start": psutil.Process(live.pid).create_time(),
            "started": "2025-01-01T00:00:00+00:00", "command": "vittle-bench run --model x"}))
        code = main(["run", "--model", "builtin:tiny-llava", *SMALL, "--cache-dir", str(world_cache),
                     "--output", str(out)])
    finally:
        live.kill()
        live.wait()
    err = capsys.readouterr().err
    assert code == 2 and len(_stderr_lines(err)) == 1 and f"pid {live.pid}" in err


def test_a_killed_runs_lock_is_taken_over(tiny_random_checkpoint, world_cache, tmp_path, capsys):
    out = tmp_path / "run"
    (out / "shards").mkdir(parents=True)
    (out / "shards" / "rank0.jsonl").write_text('{"order": [0, 0, 0, 0], "cut short')
    dead = _dead_pid()
    (out / HOLDER_FILE).write_text(json.dumps({"pid": dead, "host": socket.gethostname(), "process_start": 1.0,
                                               "started": "2025-01-01T00:00:00+00:00", "command": "killed run"}))
    assert main(_tiny_run(tiny_random_checkpoint, world_cache, out)) == 0
    err = capsys.readouterr().err
    assert f"taking over {out} from a run that stopped without releasing it (pid {dead}" in err
    assert len((out / "samples.jsonl").read_text().splitlines()) == 2 * 4
    assert not (out / "shards").exists() and not (out / HOLDER_FILE).exists()


def test_ctrl_c_keeps_what_was_done_and_the_same_command_resumes(tiny_random_checkpoint, world_cache, tmp_path,
                                                                  capsys, monkeypatch):
    cache = tmp_path / "cache"
    shutil.copytree(world_cache, cache, ignore=shutil.ignore_patterns("answers.sqlite*"))  # the world, no answers
    args = _tiny_run(tiny_random_checkpoint, cache, tmp_path / "run")
    finish = CellRunner.finish
    calls = Counter()

    def interrupted_at_the_third_batch(self, *a, **kw):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return finish(self, *a, **kw)

    monkeypatch.setattr(CellRunner, "finish", interrupted_at_the_third_batch)
    assert main(args) == 130
    err = capsys.readouterr().err
    assert f"vittle-bench: interrupted — 4 records kept in {tmp_path / 'run'}; run the same command to resume" in err
    assert "Traceback" not in err
    monkeypatch.setattr(CellRunner, "finish", finish)
    assert main(args) == 0  # the lock was released; the answers of the first two batches come from the cache
    assert "8 samples (4 generated, 4 cached)" in capsys.readouterr().out
    assert main(_tiny_run(tiny_random_checkpoint, cache, tmp_path / "straight")) == 0
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "run" / "results.csv"),
                                  pd.read_csv(tmp_path / "straight" / "results.csv"))


def test_a_run_where_every_sample_failed_says_so_and_exits_1(world_cache, tmp_path, capsys):
    with FakeServer(default=lambda payload: status(404)) as server:
        code = main(["run", "--model", "openai:m", "--model-args", f"base_url={server.url},max_retries=0",
                     *SMALL, "--no-cache", "--cache-dir", str(world_cache), "--output", str(tmp_path / "run")])
    captured = capsys.readouterr()
    assert code == 1
    assert "8 samples (8 generated, 0 cached), 8 errors (see samples.jsonl) in" in captured.out
    assert f"-> {tmp_path / 'run'}/" in captured.out
    last = _stderr_lines(captured.err)[-1]
    assert last.startswith("vittle-bench: error: every sample failed; the commonest error (8 of 8): generate: ")
    assert "404" in last and "Traceback" not in captured.err
    assert "no results to show" not in captured.out + captured.err


# Subprocesses: real concurrent runs, a real SIGKILL and a real SIGINT.

def _start(out: Path, cache: Path, log: Path, **model_args) -> subprocess.Popen:
    spec = ",".join([f"log={log}", *(f"{k}={v}" for k, v in model_args.items())])
    return subprocess.Popen([sys.executable, PAUSING, "run", "--model", "counting:model", "--model-args", spec, *ARGS,
                             "--output", str(out), "--cache-dir", str(cache)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _finish(proc: subprocess.Popen) -> tuple[int, str, str]:
    out, err = proc.communicate(timeout=300)
    return proc.returncode, out, err


@pytest.fixture(scope="module")
def lone_run(world_cache, tmp_path_factory) -> Path:
    """The same grid run alone, start to end: what every contested or interrupted run must end up equal to."""
    root = tmp_path_factory.mktemp("lone")
    shutil.copytree(world_cache, root / "cache", ignore=shutil.ignore_patterns("answers.sqlite*"))
    code, _, err = _finish(_start(root / "run", root / "cache", root / "calls.log"))
    assert code == 0, err
    return root / "run"


def _same_as(run: Path, lone: Path) -> None:
    pd.testing.assert_frame_equal(pd.read_csv(run / "results.csv"), pd.read_csv(lone / "results.csv"))
    assert (run / "samples.jsonl").read_text() == (lone / "samples.jsonl").read_text()
    assert len((run / "samples.jsonl").read_text().splitlines()) == N_RECORDS


@pytest.fixture
def private_cache(world_cache, tmp_path) -> Path:
    shutil.copytree(world_cache, tmp_path / "cache", ignore=shutil.ignore_patterns("answers.sqlite*"))
    return tmp_path / "cache"


@pytest.mark.slow
def test_two_concurrent_runs_into_one_directory_one_completes_one_refuses(lone_run, private_cache, tmp_path):
    out, resume = tmp_path / "run", tmp_path / "resume"
    first = _start(out, private_cache, tmp_path / "first.log", pause_at_call=2, resume_file=resume)
    wait_for(Path(f"{resume}.paused"), first)  # the first run holds the directory, its shard half written
    code, _, err = _finish(_start(out, private_cache, tmp_path / "second.log"))
    assert code == 2 and "Traceback" not in err
    assert _stderr_lines(err) == [line for line in _stderr_lines(err) if "is in use by another run" in line]
    assert f"pid {first.pid} on {socket.gethostname()}" in err
    assert not (tmp_path / "second.log").exists()  # refused before generating anything
    resume.write_text("")
    code, _, err = _finish(first)
    assert code == 0, err
    _same_as(out, lone_run)


@pytest.mark.slow
def test_a_run_killed_holding_the_directory_is_taken_over(lone_run, private_cache, tmp_path):
    out, resume = tmp_path / "run", tmp_path / "resume"
    first = _start(out, private_cache, tmp_path / "calls.log", pause_at_call=3, resume_file=resume)
    wait_for(Path(f"{resume}.paused"), first)
    first.send_signal(signal.SIGKILL)
    assert _finish(first)[0] == -signal.SIGKILL
    code, _, err = _finish(_start(out, private_cache, tmp_path / "calls.log"))
    assert code == 0, err
    assert f"taking over {out} from a run that stopped without releasing it (pid {first.pid}" in err
    calls = Counter((tmp_path / "calls.log").read_text().split())
    assert max(calls.values()) == 1  # nothing computed twice across the kill
    _same_as(out, lone_run)


@pytest.mark.slow
def test_sigint_mid_run_stops_cleanly_and_the_same_command_resumes(lone_run, private_cache, tmp_path):
    out, resume = tmp_path / "run", tmp_path / "resume"
    first = _start(out, private_cache, tmp_path / "calls.log", pause_at_call=4, resume_file=resume)
    wait_for(Path(f"{resume}.paused"), first)
    first.send_signal(signal.SIGINT)
    code, stdout, err = _finish(first)
    assert code == 130 and "Traceback" not in err + stdout
    assert _stderr_lines(err)[-1] == (f"vittle-bench: interrupted — 12 records kept in {out}; "
                                      "run the same command to resume")  # the first cell's batches: 5 + 5 + 2
    code, _, err = _finish(_start(out, private_cache, tmp_path / "calls.log"))
    assert code == 0, err
    assert max(Counter((tmp_path / "calls.log").read_text().split()).values()) == 1
    _same_as(out, lone_run)


@pytest.mark.slow
def test_the_ranks_of_a_refused_multi_process_run_all_stop(world_cache, tmp_path):
    """Rank 0 holds the lock for every rank: when the directory is taken, no rank goes on (or waits forever)."""
    pytest.importorskip("accelerate")
    out = tmp_path / "run"
    out.mkdir()
    holder = RunDirectoryLock(out, "vittle-bench run (the holder)")
    holder.acquire()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
              "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
              "--main_process_port", str(port)]
    try:
        proc = subprocess.run([*launch, "-m", "vittle_bench", "run", "--model", "builtin:tiny-llava", *SMALL,
                               "--cache-dir", str(world_cache), "--output", str(out)],
                              capture_output=True, text=True, timeout=300)
    finally:
        holder.release()
    assert proc.returncode != 0  # promptly: no rank went on, none waits for the others at a barrier
    assert f"{out} is in use by another run (pid {os.getpid()}" in proc.stderr
    assert not (out / "shards").exists()
