"""``invoke watch``: the module author's loop. Boot once (or attach to a board once), run the suite, then on
every change of a template, of a ``--module`` file or of a ``--module`` source tree run it again on the same
guest, and say what changed.

Each iteration is a whole run (kit.session.RunSession) on a ``deploy.warm.WarmTransport``: the templates are
rendered again (files rewritten only where they change), Kbuild rebuilds what is out of date, only the
modules whose bytes changed go through the console, the plan runs, the bundle is fetched and verified.
Every check replays from the snapshots its plan took right before each insmod, so a guest that has seen
earlier loads gets the same checks and verdicts as a fresh one. A run that ends in an error (crash, hang,
lost link) or with a leak starts the next iteration from a fresh boot.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from deploy.bundle_io import module_name
from deploy.warm import WarmTransport
from kit.errors import KitError
from kit.pipeline import Log, RunOutcome
from kit.request import RunRequest
from kit.session import RunSession
from kit.user_trees import check_user_tree, tree_sources

Fingerprint = tuple[tuple[str, int, int], ...]


@dataclass(frozen=True)
class Iteration:
    """One run of the loop: its outcome, how long from its start to the verdict, and what changed.

    ``ran``: the modules this run loaded (all of them on the first run and after a fresh boot, else those
    whose bytes changed); ``checks``: the suite's verdicts, this run's merged over the last ones of the
    modules it did not rerun. A run whose modules did not change at all (a comment edited) loads nothing:
    ``outcome`` is None. A build that fails (the author's compile error) is ``error``, and the loop waits.
    """

    number: int
    outcome: RunOutcome | None
    elapsed_s: float
    fresh_boot: bool  # the guest was booted (or attached) for this run
    ran: tuple[str, ...]
    checks: dict[str, str]
    newly_failing: tuple[str, ...]
    newly_passing: tuple[str, ...]
    restarts_next: bool  # an error or a leak: the next iteration boots afresh
    error: str | None = None


def watched_files(request: RunRequest) -> list[Path]:
    """What a change of restarts the loop: every template, the user's --module files, and every source of
    the user's --module directories (a file added or removed there counts too)."""
    templates = sorted(p for p in request.templates_dir.rglob("*") if p.is_file())
    user = [source for path in request.user_modules
            for source in (tree_sources(check_user_tree(path)) if path.is_dir() else [path])]
    return templates + user


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


def touches(check_id: str, modules: tuple[str, ...]) -> bool:
    """Whether a check is about one of ``modules``: a word of its id names it (kit_kmap.ktap,
    vmallocinfo.kit_kmap.*, facts.arch.ko.kit_kmap)."""
    return any(word in modules for word in check_id.split("."))


def merge_checks(previous: dict[str, str], rerun: dict[str, str], modules: tuple[str, ...],
                 reran: tuple[str, ...]) -> dict[str, str]:
    """The suite's verdicts after a partial run: this run's for the modules it ran and for the suite-wide
    checks; the last ones for the modules not rerun (the partial bundle has nothing of them: what it says
    of them is dropped) and for any check a one-module run cannot compute (one comparing two modules)."""
    others = tuple(name for name in modules if name not in reran)
    return {**previous, **{k: v for k, v in rerun.items() if not touches(k, others)}}


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
        self._digests: dict[str, str] = {}  # module -> sha256 of the .ko the guest last loaded
        self._tree = self._maker.kernel()
        self.iterations = 0

    def iterate(self, everything: bool = False) -> Iteration:
        """Build what changed and run the modules whose bytes changed (all of them when ``everything``, on
        the first run, and after a fresh boot); merge their checks into the suite's."""
        started, boots = time.monotonic(), self.warm.boots
        session = RunSession(self.request, self.log, transport=self.warm, tree=self._tree)
        try:
            digests = {module_name(ko): hashlib.sha256(ko.read_bytes()).hexdigest()
                       for ko in session.shipped_modules()}
        except KitError as err:  # a compile error: say it, keep the guest, wait for the next edit
            return self._record(started, boots, None, (), {}, error=str(err))
        changed = tuple(sorted(name for name, digest in digests.items() if self._digests.get(name) != digest))
        fresh = everything or not self._digests or not self.warm.up
        if not fresh and not changed:
            return self._record(started, boots, None, (), self._previous or {})
        session.only = None if fresh else frozenset(changed)
        outcome = session.run()
        self._digests = {} if needs_fresh_boot(outcome) else digests
        ran = tuple(sorted(digests)) if fresh else changed
        statuses: dict[str, str] = ({c.id: c.status for c in outcome.verdict.checks}
                                   if outcome.verdict is not None else {})
        merged = statuses if fresh else merge_checks(self._previous or {}, statuses, tuple(digests), ran)
        return self._record(started, boots, outcome, ran, merged)

    def _record(self, started: float, boots: int, outcome: RunOutcome | None, ran: tuple[str, ...],
                checks: dict[str, str], error: str | None = None) -> Iteration:
        before = self._previous or {}
        failing = tuple(sorted(k for k, v in checks.items() if v in ("fail", "error")
                               and before.get(k, "pass") not in ("fail", "error")))
        passing = tuple(sorted(k for k, v in checks.items() if v == "pass" and before.get(k) in ("fail", "error")))
        if checks:
            self._previous = checks
        self.iterations += 1
        restart = outcome is not None and needs_fresh_boot(outcome)
        if restart:
            self.warm.abort()
        return Iteration(self.iterations, outcome, time.monotonic() - started, self.warm.boots > boots, ran,
                         checks, failing, passing, restart, error)

    def watch(self, report: Callable[[Iteration], None], poll_s: float = 0.05,
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


def suite_summary(checks: dict[str, str]) -> str:
    """``N checks: a pass, b fail, c skip, d error`` (invoke run's summary line) of merged verdicts."""
    count = {status: sum(1 for v in checks.values() if v == status) for status in ("pass", "fail", "skip", "error")}
    return (f"{len(checks)} checks: {count['pass']} pass, {count['fail']} fail, {count['skip']} skip, "
            f"{count['error']} error")
