"""Deploy failures: every one is an InfraError (the run could not tell), never a test failure.

Each error carries the path of the console log kept so far and a short excerpt of it, so the
caller can show what the guest printed last without opening the file.
"""

from __future__ import annotations

from pathlib import Path

from kit.errors import InfraError, UserError


class DeployError(InfraError):
    """A transport failed. ``log_path`` is the console log as received; ``excerpt`` its relevant tail."""

    def __init__(self, message: str, log_path: Path | None = None, excerpt: str = "") -> None:
        self.log_path = log_path
        self.excerpt = excerpt
        self.what = message  # without the log's path
        self.partial_bundle: Path | None = None  # set by deploy.session when files were kept
        where = f" (console log: {log_path})" if log_path is not None else ""
        super().__init__(message + where)


class BootTimeout(DeployError):
    """The guest did not reach the shell prompt marker before the deadline."""


class GuestCrashed(DeployError):
    """The guest kernel panicked (or oopsed fatally); the excerpt starts at the first crash line."""


class TransportLost(DeployError):
    """The connection to the guest ended unexpectedly (QEMU exited without a panic, serial closed)."""


class CommandTimeout(DeployError):
    """A command did not report its exit status before its deadline (the guest shell is busy or hung)."""


class FramingError(DeployError):
    """A fetched file's framing was broken: missing end marker or byte count mismatch."""


class GuestOutputRefused(DeployError):
    """The guest sent files its plan does not write (a host file's name, a directory, a path that escapes):
    the ones it should have sent are kept, the rest refused, and the run cannot be trusted."""


class WrongKernel(UserError):
    """The target runs another kernel than the one the modules were built for (a board's own kernel)."""
