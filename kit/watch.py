"""``invoke watch``: the module author's loop. Boot once (or attach to a board once), run the suite, then on
every change of a template or of a ``--module`` file run it again on the same guest, and say what changed.

Each iteration is a whole run (kit.session.RunSession) on a ``deploy.warm.WarmTransport``: the templates are
rendered again (files rewritten only where they change), Kbuild rebuilds what is out of date, only the
modules whose bytes changed go through the console, the plan runs, the bundle is fetched and verified.
Every check replays from the snapshots its plan took right before each insmod, so a guest that has seen
earlier loads gets the same checks and verdicts as a fresh one. A run that ends in an error (crash, hang,
lost link) or with a leak starts the next iteration from a fresh boot.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from deploy.warm import WarmTransport
from kit.pipeline import Log, RunOutcome
from kit.request import RunRequest
from kit.session import RunSession

Fingerprint = tuple[tuple[str, int, int], ...]


@dataclass(frozen=True)
class Iteration:
    """One run of the loop: its outcome, how long from its start to the verdict, and what changed."""

    number: int
    outcome: RunOutcome
    elapsed_s: float
    fresh_boot: bool  # the guest was booted (or attached) for this run
    newly_failing: tuple[str, ...]
    newly_passing: tuple[str, ...]
    restarts_next: bool  # an error or a leak: the next iteration boots afresh


def watched_files(request: RunRequest) -> list[Path]:
    """What a change of restarts the loop: every template, and the user's --module files."""
    return sorted(p for p in request.templates_dir.rglob("*") if p.is_file()) + list(request.user_modules)


def fingerprint(paths: list[Path]) -> Fingerprint:
    """(path, mtime_ns, size) of each file; a missing file counts as (-1, -1)."""
    found: list[tuple[str, int, int]] = []
    for path in paths:
        try:
            stat = path.stat()
        except OSError:
            found.append((str(path), -1, -1))
        else:
            found.append((str(path), stat.st_mtime_ns, stat.st_size))
    return tuple(found)


def needs_fresh_boot(outcome: RunOutcome) -> bool:
    """The guest cannot be trusted for the next run: the run ended in an error, or a module leaked."""
    verdict = outcome.verdict
    if outcome.error is not None or verdict is None or verdict.status == "error":
        return True
    return any(check.family == "leak" and check.status == "fail" for check in verdict.checks)


class WatchLoop:
    """The warm guest and the runs on it. ``iterate()`` runs once; ``watch()`` runs on every change."""

    def __init__(self, request: RunRequest, log: Log) -> None:
        self.request, self.log = request, log
        self._maker = RunSession(request, log)  # makes the transport (and its QEMU work dir) once
        paths = self._maker.guest_paths
        self.warm = WarmTransport(self._maker.transport(), scratch=[paths.out, paths.out + "-rc"])
        self._previous: dict[str, str] | None = None
        self.iterations = 0

    def iterate(self) -> Iteration:
        started, boots = time.monotonic(), self.warm.boots
        outcome = RunSession(self.request, self.log, transport=self.warm).run()
        elapsed = time.monotonic() - started
        statuses: dict[str, str] = ({c.id: c.status for c in outcome.verdict.checks}
                                   if outcome.verdict is not None else {})
        before = self._previous or {}
        failing = tuple(sorted(k for k, v in statuses.items() if v in ("fail", "error")
                               and before.get(k, "pass") not in ("fail", "error")))
        passing = tuple(sorted(k for k, v in statuses.items() if v == "pass" and before.get(k) in ("fail", "error")))
        self._previous = statuses
        self.iterations += 1
        restart = needs_fresh_boot(outcome)
        if restart:
            self.warm.abort()
        return Iteration(self.iterations, outcome, elapsed, self.warm.boots > boots, failing, passing, restart)

    def watch(self, report: Callable[[Iteration], None], poll_s: float = 0.2,
              keep_going: Callable[[], bool] = lambda: True) -> None:
        """Run now, then again after every change of the watched files, while ``keep_going()``."""
        seen = fingerprint(watched_files(self.request))
        report(self.iterate())
        while keep_going():
            time.sleep(poll_s)
            now = fingerprint(watched_files(self.request))
            if now != seen:
                seen = now
                report(self.iterate())

    def close(self) -> None:
        """Power the guest off (a board: the kit's files removed, the link closed) and drop the work dir."""
        try:
            self.warm.shutdown()
        finally:
            self._maker.close()
