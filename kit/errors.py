"""One exception base, split into user errors and infrastructure errors.

Library code raises these; only tasks.py turns them into exit codes and one-line messages.
"""

from __future__ import annotations


class KitError(Exception):
    """Base of every error this kit raises on purpose. ``str(err)`` is the one line shown to the user."""

    exit_code = 2


class UserError(KitError):
    """Bad input: an unknown target, a malformed file, a bad parameter. The message says what to do."""


class InfraError(KitError):
    """The machine or a tool failed: download, compiler, QEMU, a guest that never booted."""

    exit_code = 3


class ParseError(UserError):
    """Malformed input file. Names the file and the line."""

    def __init__(self, path: str, line: int | None, problem: str) -> None:
        self.path = path
        self.line = line
        self.problem = problem
        where = f"{path}:{line}" if line is not None else path
        super().__init__(f"{where}: {problem}")


class Interrupted(KitError):
    """The user stopped the run (Ctrl-C): exit 130 as a shell reports SIGINT, after the partial verdict."""

    exit_code = 130


class CouldNotTell(KitError):
    """The input was read but nothing in it could be checked (a capture missing what every check needs)."""

    exit_code = 3
