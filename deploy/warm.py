"""A warm target: one boot (or one attach to a board) kept across many runs of the guest plan.

``WarmTransport`` wraps a QEMU or board transport and makes it behave like a board that stays up: each
run pushes what changed (the inner transport skips files the target already holds), runs the plan,
fetches, and at the end only the plan's output is removed (``power_off``), so the next run starts from
the same guest. The kit's modules are unloaded after every run (``stays_up``: deploy.session unloads what
a plan left). A run that crashed or hung aborts the inner transport: the next ``boot()`` boots afresh.
``shutdown()`` powers the inner target off for good.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping, Sequence
from pathlib import Path

from deploy.base import BootResult, CommandResult, Transport
from deploy.console import shell_quote
from kit.errors import KitError

CLEAN_TIMEOUT_S = 30.0


class WarmTransport:
    """``inner`` kept up between runs; ``scratch``: what each run's plan writes (removed after each run)."""

    def __init__(self, inner: Transport, scratch: Sequence[str]) -> None:
        self.inner, self.scratch = inner, tuple(scratch)
        self.boots = 0  # how many times the inner target was booted (or attached)
        self._up = False

    @property
    def console_log(self) -> Path:
        return self.inner.console_log

    @property
    def stays_up(self) -> bool:
        return True

    def push(self, files: Mapping[str, Path]) -> None:
        self.inner.push(files)

    @property
    def up(self) -> bool:
        """Booted (or attached) and not aborted since: the modules it last loaded are known."""
        return self._up

    def boot(self) -> BootResult:
        result = self.inner.boot()
        if result.elapsed_s > 0:
            self.boots += 1
        self._up = True
        return result

    def run(self, command: str, timeout_s: float) -> CommandResult:
        return self.inner.run(command, timeout_s)

    def fetch(self, remote_dir: str) -> dict[str, bytes]:
        return self.inner.fetch(remote_dir)

    def power_off(self) -> None:
        """The end of one run: the plan's output goes, the target stays up (a dead one stays down)."""
        with contextlib.suppress(KitError):
            self.inner.run(f"rm -rf {' '.join(shell_quote(p) for p in self.scratch)}", CLEAN_TIMEOUT_S)

    def abort(self) -> None:
        """A run that crashed, hung or was interrupted: stop the target; the next boot() is a fresh one."""
        self._up = False
        self.inner.abort()

    def shutdown(self) -> None:
        self.inner.power_off()
