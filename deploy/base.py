"""The one interface every transport implements: QEMU (deploy/qemu.py), SSH and serial console (boards).

A transport moves files to the target, boots (or connects to) it, runs shell commands with their real
exit status, fetches a directory of text files back, and powers off. Everything the target printed on
its console is appended to ``console_log`` as it arrives.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable


@dataclass(frozen=True)
class CommandResult:
    """What one remote command did: its shell exit status, its output (console text) and how long it took."""

    exit_status: int
    output: str
    elapsed_s: float

    @property
    def ok(self) -> bool:
        return self.exit_status == 0


@dataclass(frozen=True)
class BootResult:
    """The guest reached its shell: how long from start to the ready marker."""

    elapsed_s: float


@runtime_checkable
class Transport(Protocol):
    """Boot or connect to a target and talk to it. Every method raises ``deploy.errors.DeployError``."""

    @property
    def console_log(self) -> Path:
        """The file everything received on the console is appended to (boot.log)."""
        ...

    @property
    def stays_up(self) -> bool:
        """True for a board that keeps running after power_off (what the kit left there must be undone);
        False for a guest the transport itself boots and stops."""
        ...

    def push(self, files: Mapping[str, Path]) -> None:
        """Make local files available on the target at the given absolute remote paths."""
        ...

    def boot(self) -> BootResult:
        """Start (or connect to) the target and wait until its shell is ready."""
        ...

    def run(self, command: str, timeout_s: float) -> CommandResult:
        """Run one shell command on the target and return its exit status and output."""
        ...

    def fetch(self, remote_dir: str) -> dict[str, bytes]:
        """Every regular file under ``remote_dir``: relative path -> bytes (untrusted: the caller decides
        which of them it writes, and where)."""
        ...

    def abort(self) -> None:
        """Stop the target at once (no graceful shutdown): after an interrupt or a host-side fault."""
        ...

    def power_off(self) -> None:
        """Stop the target; safe to call more than once and after a crash."""
        ...


@runtime_checkable
class BoardTransport(Transport, Protocol):
    """A transport to a board that stays up on its own (SSH, serial console)."""

    def reattach(self, timeout_s: float) -> BootResult:
        """Connect again to a board that went down and came back (a power-cycle): retried until
        ``timeout_s``; what the kit had pushed is assumed gone (the next push sends it again)."""
        ...
