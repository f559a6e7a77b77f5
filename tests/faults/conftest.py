"""The fault suite's shared parts: real CLI runs and the table of what each fault gave.

Each fault test records one row (fault, verdict class, exit code, seconds to detect, what the bundle
holds, processes left); the table is printed at the end of the session (`pytest -m faults -s` or in
the summary), and docs/faults.md keeps the figures of a run. Tests assert behaviour only; the times
are figures, not assertions.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


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
