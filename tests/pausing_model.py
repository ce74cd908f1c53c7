"""The counting model (same fingerprint, so the same cache keys and answers) that can hold still at the start
of its N-th generate call until a file appears. It announces the pause by writing `<resume_file>.paused`
(holding its pid), so a test acts on a run at a known point — starts a second run into its directory, sends it
SIGINT or SIGKILL — without sleeps to tune."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from vittle_bench.schema import Request

from counting_model import CountingModel

PAUSE_LIMIT_S = 120  # a test that never resumes the run does not leave it behind for long


class PausingModel(CountingModel):
    def __init__(self, log: str, pause_at_call: int = 0, resume_file: str = "", kill_at_call: int = 0) -> None:
        super().__init__(log, kill_at_call)
        self.pause_at_call, self.resume_file = pause_at_call, Path(resume_file)

    @classmethod
    def load(cls, name: str, **kwargs) -> PausingModel:
        return cls(**kwargs)

    def generate(self, requests: list[Request]) -> list[str]:
        if self.pause_at_call and self.calls + 1 == self.pause_at_call:
            Path(f"{self.resume_file}.paused").write_text(str(os.getpid()))
            deadline = time.monotonic() + PAUSE_LIMIT_S
            while not self.resume_file.exists() and time.monotonic() < deadline:
                time.sleep(0.05)
        return super().generate(requests)


def wait_for(path: Path, proc, timeout: float = 120) -> None:
    """Until `path` exists; fails early if the process `proc` ends first."""
    deadline = time.monotonic() + timeout
    while not path.exists():
        if proc.poll() is not None:
            raise AssertionError(f"the run ended (rc {proc.returncode}) before {path.name}: "
                                 f"{proc.stderr.read()[-2000:]}")
        if time.monotonic() > deadline:
            raise AssertionError(f"no {path.name} after {timeout} s")
        time.sleep(0.05)


if __name__ == "__main__":  # python pausing_model.py <vittle-bench args>: the CLI with this model as `counting:`
    from vittle_bench.cli import main
    from vittle_bench.models.base import MODELS

    MODELS.register("counting")(PausingModel)
    sys.exit(main(sys.argv[1:]))
