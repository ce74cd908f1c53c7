"""One run per run directory: an OS file lock plus a record of its holder.

Several runs pointed at one `--output` would delete and overwrite each other's shards; the lock makes the
second one stop at once with one line naming the first, and a run killed while holding it is taken over.
"""

from __future__ import annotations

import json
import os
import socket
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import psutil
from filelock import FileLock, Timeout

from vittle_bench.errors import ConfigError

LOCK_FILE = ".run.lock"  # flock()ed by the run writing the directory; never deleted, so waiters share one inode
HOLDER_FILE = ".run.lock.json"  # who holds the lock: pid, host, start time, command line


def _process_start(pid: int) -> float | None:
    """When process `pid` started on this host, None if there is none: a pid alone may have been reused."""
    try:
        return psutil.Process(pid).create_time()
    except psutil.Error:
        return None


def describe_holder(holder: dict[str, Any]) -> str:
    if not holder:
        return "it has not recorded who it is yet"
    return (f"pid {holder.get('pid')} on {holder.get('host')}, started {holder.get('started')}: "
            f"{holder.get('command') or '(no command line recorded)'}")


class RunDirectoryLock:
    """One run per run directory. The lock is an OS file lock (`filelock`), which the kernel releases however
    its process ends, SIGKILL included; next to it a record names the holder for the refusal message. A record
    left behind means its run was killed, and the next run takes the directory over. A record whose process is
    still alive on this host refuses the directory even when the OS lock was granted: some network file
    systems grant every lock."""

    def __init__(self, output: Path, command_line: str) -> None:
        self.output, self.command_line = output, command_line
        self._lock = FileLock(str(output / LOCK_FILE), timeout=0)
        self.taken_over: dict[str, Any] = {}  # the record of a killed run whose directory this run took over

    def _holder(self) -> dict[str, Any]:
        try:
            holder = json.loads((self.output / HOLDER_FILE).read_text())
        except (OSError, ValueError):
            return {}
        return holder if isinstance(holder, dict) else {}

    def _refusal(self, holder: dict[str, Any]) -> ConfigError:
        return ConfigError(f"{self.output} is in use by another run ({describe_holder(holder)}); wait for it to "
                           "finish or choose another --output")

    def acquire(self) -> None:
        """Own the directory or raise ConfigError naming its holder."""
        try:
            self._lock.acquire()
        except Timeout:
            raise self._refusal(self._holder()) from None
        previous = self._holder()
        pid, process_start = previous.get("pid"), previous.get("process_start")
        if (isinstance(pid, int) and process_start is not None and previous.get("host") == socket.gethostname()
                and _process_start(pid) == process_start):
            self._lock.release()
            raise self._refusal(previous)
        self.taken_over = previous
        record = {"pid": os.getpid(), "host": socket.gethostname(), "process_start": _process_start(os.getpid()),
                  "started": datetime.now(timezone.utc).isoformat(timespec="seconds"), "command": self.command_line}
        tmp = self.output / f"{HOLDER_FILE}.{os.getpid()}.tmp"
        tmp.write_text(json.dumps(record))
        os.replace(tmp, self.output / HOLDER_FILE)

    def release(self) -> None:
        """The record goes first: a run killed in between leaves a record that the next run takes over."""
        (self.output / HOLDER_FILE).unlink(missing_ok=True)
        self._lock.release()
