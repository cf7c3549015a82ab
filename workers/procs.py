"""Process helpers for the worker and ``serve``: children that die with their parent, and the
lock that keeps a second beat off one ``MIXOPT_HOME``."""

from __future__ import annotations

import ctypes
import ctypes.util
import fcntl
import os
import signal
from pathlib import Path

PR_SET_PDEATHSIG = 1


def die_with_parent(parent_pid: int | None = None, sig: int = signal.SIGKILL) -> bool:
    """Ask the kernel to send ``sig`` to this process when its parent dies (Linux
    ``prctl(PR_SET_PDEATHSIG)``); False where that does not exist. Used as a ``preexec_fn`` by
    ``serve`` and in each Celery pool process, so a SIGKILLed ``serve`` or worker leaves nothing
    behind. ``parent_pid``: the parent we expect; if it is already gone, die now."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        if libc.prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0) != 0:
            return False
    except (OSError, AttributeError):
        return False
    if parent_pid is not None and os.getppid() != parent_pid:  # it died before prctl took effect
        os.kill(os.getpid(), sig)
    return True


class BeatLock:
    """An exclusive ``flock`` on ``<home>/beat.lock``, held for the life of the process that
    runs beat (the kernel drops it when that process dies, even by SIGKILL)."""

    def __init__(self, home: Path):
        self.path = Path(home) / "beat.lock"
        self._fh = None

    def acquire(self) -> bool:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fh = open(self.path, "a+")  # noqa: SIM115 - held open as the lock
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            fh.close()
            return False
        fh.seek(0)
        fh.truncate()
        fh.write(f"{os.getpid()}\n")
        fh.flush()
        self._fh = fh
        return True

    def holder(self) -> str:
        try:
            return self.path.read_text().strip() or "?"
        except OSError:
            return "?"

    def release(self) -> None:
        if self._fh is not None:
            fcntl.flock(self._fh.fileno(), fcntl.LOCK_UN)
            self._fh.close()
            self._fh = None
