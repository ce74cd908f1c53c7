"""benchmarks/gpu_check.py: refuses in one line without CUDA, and its whole code path runs on the CPU (slow)."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_check.py"


def test_refuses_in_one_line_without_cuda(monkeypatch, capsys):
    import torch

    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    assert spec is not None and spec.loader is not None
    gpu_check = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gpu_check)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(sys, "argv", ["gpu_check.py"])
    assert gpu_check.main() == 2
    captured = capsys.readouterr()
    assert captured.out == "" and len(captured.err.strip().splitlines()) == 1 and "no CUDA" in captured.err


@pytest.mark.slow
def test_the_whole_check_runs_on_the_cpu():
    proc = subprocess.run([sys.executable, str(SCRIPT), "--device", "cpu", "--families", "llava_1_5", "--steps", "4"],
                          capture_output=True, text=True, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.splitlines()
    rows = [line.split() for line in lines if line.startswith("llava_1_5")]
    ways = [["full", "baseline"], ["full", "vittle"], ["lora", "baseline"], ["lora", "vittle"]]
    assert [r[1:3] for r in rows] == ways
    assert all(float(r[3]) > 0 and r[4] == "n/a" for r in rows) and float(rows[1][5]) > 0 and float(rows[3][5]) > 0
    assert lines[-1] == "all evaluations (bf16) and tune runs succeeded"
