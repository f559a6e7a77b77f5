"""A lock on a directory shared by concurrent runs of one checkout (``generated/<target>``).

fcntl.flock on a lock file: released by the kernel when the process dies, so a killed run never leaves
it held. Re-entrant within one process (the build steps nest and run in a worker thread too).
"""

from __future__ import annotations

import fcntl
import os
import threading
from pathlib import Path
from types import TracebackType


class DirectoryLock:
    """``with lock:`` holds an exclusive flock on ``directory/.lock`` (waits for another run to finish)."""

    def __init__(self, directory: Path) -> None:
        self.path = directory / ".lock"
        self._mutex = threading.RLock()
        self._depth = 0
        self._fd: int | None = None

    def __enter__(self) -> DirectoryLock:
        self._mutex.acquire()
        if self._depth == 0:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
            except BaseException:
                os.close(fd)
                self._mutex.release()
                raise
            self._fd = fd
        self._depth += 1
        return self

    def __exit__(self, *_exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self._depth -= 1
        if self._depth == 0 and self._fd is not None:
            os.close(self._fd)  # closing the last descriptor releases the flock
            self._fd = None
        self._mutex.release()
