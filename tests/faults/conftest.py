"""The fault suite's shared parts: real CLI runs and the table of what each fault gave.

Each fault test records one row (fault, verdict class, exit code, seconds to detect, what the bundle
holds, processes left); the table is printed at the end of the session (`pytest -m faults -s` or in
the summary), and docs/faults.md keeps the figures of a run. Tests assert behaviour only; the times
are figures, not assertions.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from kbuild.make import build_module_dir
from kbuild.targets import load_target
from kit.pipeline import RunOutcome
from kit.request import RunRequest
from kit.session import RunSession
from tests.conftest import debian_kernel, target_toolchain
from tests.deploy.conftest import DATA as DEPLOY_DATA

REPO = Path(__file__).resolve().parents[2]
FAULT_DATA = Path(__file__).parent / "data"  # one directory per fault module: <name>.c and Kbuild
QEMU_WORK = REPO / "generated" / "arm-6.1" / "qemu"  # runs' work dirs: run-<pid>-*/boot.log (the live console)


@dataclass(frozen=True)
class FaultRow:
    fault: str
    verdict: str
    exit_code: int | str
    detect_s: float
    bundle: str
    left: str


ROWS: list[FaultRow] = []


def record(row: FaultRow) -> None:
    ROWS.append(row)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not ROWS:
        return
    terminalreporter.section("fault table")
    terminalreporter.write_line("| fault | verdict | exit | detected after | bundle | left behind |")
    terminalreporter.write_line("|---|---|---|---|---|---|")
    for row in ROWS:
        terminalreporter.write_line(f"| {row.fault} | {row.verdict} | {row.exit_code} | {row.detect_s:.1f} s | "
                                    f"{row.bundle} | {row.left} |")


def invoke_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "invoke", *args]


def start_invoke(*args: str) -> subprocess.Popen[str]:
    """A real `invoke ...` in the checkout, as a user starts it (its own output pipes)."""
    return subprocess.Popen(invoke_command(*args), cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})


def qemu_processes() -> list[tuple[int, str]]:
    """Every running QEMU of this machine: (pid, command line)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if argv and argv[0].decode(errors="replace").rsplit("/", 1)[-1].startswith("qemu-system"):
            found.append((int(entry.name), b" ".join(argv).decode(errors="replace")))
    return found


def qemu_of_run(pid: int) -> list[int]:
    """The QEMU processes started by the run with process id ``pid`` (its work dir names the pid)."""
    return [qpid for qpid, cmdline in qemu_processes() if f"/qemu/run-{pid}-" in cmdline]


@pytest.fixture
def results_dir(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "results"
    path.mkdir()
    yield path


@pytest.fixture(scope="session")
def fault_modules(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Every module of tests/faults/data, and tests/deploy/data/hello, built once for the session against
    arm-6.1 by real Kbuild: their sources and Kbuild lines in one directory, so one make builds them all."""
    out = tmp_path_factory.mktemp("fault-modules")
    sources = [*sorted(d for d in FAULT_DATA.iterdir() if d.is_dir()), DEPLOY_DATA / "hello"]
    for source in sources:
        for c_file in source.glob("*.c"):
            shutil.copy(c_file, out / c_file.name)
    (out / "Kbuild").write_text("".join((source / "Kbuild").read_text() for source in sources))
    built = build_module_dir(debian_kernel("6.1"), target_toolchain("6.1"), out)
    return {module.name: module.ko for module in built}


def run_session(tmp_path: Path, user_modules: Sequence[Path] = (), log: Callable[[str], None] = lambda _line: None,
                **overrides: object) -> RunOutcome:
    """A real arm-6.1 run in this process (results under ``tmp_path``; the checkout's generated/, whose
    modules are already built), the default suite then ``user_modules``."""
    request = RunRequest(load_target("arm-6.1"), user_modules=tuple(user_modules),
                         results_root=tmp_path / "results", **overrides)  # type: ignore[arg-type]
    return RunSession(request, log).run()


def work_dirs(pid: int) -> list[Path]:
    """The QEMU work directories of the run with process id ``pid`` still on disk."""
    return sorted(QEMU_WORK.glob(f"run-{pid}-*"))


def left_behind(pid: int) -> list[str]:
    """What the run ``pid`` left: its QEMU processes and work directories (empty: nothing)."""
    return [f"QEMU pid {qpid}" for qpid in qemu_of_run(pid)] + [str(d) for d in work_dirs(pid)]


class ConsoleWatch:
    """Notes when ``needle`` first shows on the live console of the run ``pid`` (its work dir's boot.log,
    polled in a thread): the start of a fault, for the time-to-detect figure."""

    def __init__(self, pid: int, needle: bytes) -> None:
        self.pid, self.needle = pid, needle
        self.seen_at: float | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def __enter__(self) -> ConsoleWatch:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _poll(self) -> None:
        while self.seen_at is None and not self._stop.wait(0.02):
            for log in QEMU_WORK.glob(f"run-{self.pid}-*/boot.log"):
                try:
                    if self.needle in log.read_bytes():
                        self.seen_at = time.monotonic()
                        break
                except OSError:
                    continue

    def detect_s(self, ended_at: float) -> float:
        """Seconds from the fault's first console line to ``ended_at`` (the run's end)."""
        assert self.seen_at is not None, f"{self.needle!r} never appeared on the console"
        return ended_at - self.seen_at


def wait_for_line(process: subprocess.Popen[str], prefix: str, lines: list[str], limit_s: float) -> None:
    """Read the run's stdout until a line starts with ``prefix`` (the phase log), within ``limit_s``."""
    assert process.stdout is not None
    timer = threading.Timer(limit_s, process.kill)
    timer.start()
    try:
        for line in process.stdout:
            lines.append(line)
            if line.startswith(prefix):
                return
    finally:
        timer.cancel()
    pytest.fail(f"the run never printed {prefix!r}: {''.join(lines)[-2000:]}")
