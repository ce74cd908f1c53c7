"""A deterministic test model that logs every generated request and can SIGKILL its own process at the
start of its N-th generate call (a kill at a known point, so 'nothing computed twice' is exact)."""

from __future__ import annotations

import hashlib
import os
import signal
import sys
from pathlib import Path

from vittle_bench.models.base import Model
from vittle_bench.schema import Request, image_digest


def request_id(request: Request) -> str:
    return hashlib.sha256((request.prompt + "".join(image_digest(i) for i in request.images)).encode()).hexdigest()[:16]


class CountingModel(Model):
    fingerprint = "counting-model-v1"

    def __init__(self, log: str, kill_at_call: int = 0) -> None:
        self.name, self.log, self.kill_at_call, self.calls = "counting:model", Path(log), kill_at_call, 0

    @classmethod
    def load(cls, name: str, **kwargs) -> CountingModel:
        return cls(**kwargs)

    def generate(self, requests: list[Request]) -> list[str]:
        self.calls += 1
        if self.kill_at_call and self.calls == self.kill_at_call:
            os.kill(os.getpid(), signal.SIGKILL)
        with self.log.open("a") as f:
            f.writelines(request_id(r) + "\n" for r in requests)
            f.flush()
            os.fsync(f.fileno())
        return ["Yes" if int(request_id(r), 16) % 3 else "No" for r in requests]


if __name__ == "__main__":  # python counting_model.py <vittle-bench args>: the CLI with this model registered
    from vittle_bench.cli import main
    from vittle_bench.models.base import MODELS

    MODELS.register("counting")(CountingModel)
    sys.exit(main(sys.argv[1:]))
