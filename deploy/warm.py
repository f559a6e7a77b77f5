"""A warm target: one boot (or one attach to a board) kept across many runs of the guest plan.

``WarmTransport`` wraps a QEMU or board transport and makes it behave like a board that stays up: each
run pushes what changed (the inner transport skips files the target already holds), runs the plan,
fetches, and the plan's output is removed before the next run's plan (prefixed to its command: one console
round trip less between an edit and its verdict), so each run starts from the same guest. The kit's
modules are unloaded after every run (``stays_up``: deploy.session unloads what a plan left). A run that
crashed or hung aborts the inner transport: the next ``boot()`` boots afresh.
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
        self._dirty = False  # a run's output is still on the target: removed before the next command

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
        if self._dirty:
            command = f"{self._remove_scratch()}; {command}"
            self._dirty = False
        return self.inner.run(command, timeout_s)

    def _remove_scratch(self) -> str:
        return f"rm -rf {' '.join(shell_quote(p) for p in self.scratch)}"

    def fetch(self, remote_dir: str) -> dict[str, bytes]:
        return self.inner.fetch(remote_dir)

    def power_off(self) -> None:
        """The end of one run: the target stays up (a dead one stays down); the plan's output goes with the
        next command (the next run's first), or when the loop shuts the target down."""
        self._dirty = True

    def abort(self) -> None:
        """A run that crashed, hung or was interrupted: stop the target; the next boot() is a fresh one."""
        self._up = False
        self.inner.abort()

    def shutdown(self) -> None:
        """Power the target off for good; a board that stays up is left without the kit's output."""
        if self._dirty and self._up:
            with contextlib.suppress(KitError):
                self.inner.run(self._remove_scratch(), CLEAN_TIMEOUT_S)
        self.inner.power_off()
