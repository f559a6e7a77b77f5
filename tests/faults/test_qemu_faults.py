"""Faults of the machine under the run: QEMU killed or stopped mid-plan (real signals to the run's real
QEMU), and the console flooded with kernel messages while the bundle is fetched."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import threading
import time
from pathlib import Path

import pytest

from deploy.bundle_io import guest_output_names
from deploy.errors import CommandTimeout, DeployError, FramingError, TransportLost
from deploy.session import GuestPaths, guest_files, plan_command
from tests.boards.test_board_faults import slow_module
from tests.deploy.conftest import kernel
from tests.faults.conftest import (
    FaultRow,
    left_behind,
    qemu_of_run,
    record,
    run_session,
    start_invoke,
    wait_for_line,
)

pytestmark = [pytest.mark.e2e, pytest.mark.faults]

# Opened again for every line: /dev/kmsg rate-limits each open file to 10 lines per 5 s (printk.devkmsg),
# not the lines of many opens. KERN_EMERG (<0>): the only level the guest's console shows (init.sh).
FLOOD = "(while :; do echo '<0>kit flood 0123456789' > /dev/kmsg; done) >/dev/null 2>&1 &"


def test_qemu_killed_mid_plan_exits_3_with_a_partial_bundle(results_dir: Path) -> None:
    process = start_invoke("run", "--results", str(results_dir))
    lines: list[str] = []
    try:
        wait_for_line(process, "boot: ", lines, limit_s=180)  # the guest is up, the plan starts now
        (qpid,) = qemu_of_run(process.pid)
        time.sleep(1.0)  # into the plan (it takes ~5 s)
        os.kill(qpid, signal.SIGKILL)
        sent = time.monotonic()
        out, err = process.communicate(timeout=120)
        detect_s = time.monotonic() - sent
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    left = left_behind(process.pid)

    assert process.returncode == 3, (out[-2000:], err[-2000:])
    assert "Traceback" not in err and "internal error" not in err, err
    assert "run error: QEMU was killed by SIGKILL" in err, err
    bundle = (results_dir / "latest").resolve()
    verdict = json.loads((bundle / "verdict.json").read_text())
    assert verdict["status"] == "error" and verdict["error"].startswith("QEMU was killed by SIGKILL"), verdict
    for name in ("junit.xml", "report.txt", "boot.log", "target.toml", "config", "ko/kit_vmalloc.ko"):
        assert (bundle / name).is_file(), name
    assert "KIT>READY" in (bundle / "boot.log").read_text()
    assert left == [], left
    record(FaultRow("QEMU killed (SIGKILL) mid-plan", "error (TransportLost)", process.returncode, detect_s,
                    "verdict.json, junit.xml, report.txt, boot.log, target.toml, config, ko/", "no QEMU, no work dir"))


def test_qemu_stopped_mid_plan_times_out_and_the_kit_kills_it(tmp_path: Path) -> None:
    stopped: list[tuple[int, float]] = []

    def stop() -> None:
        for qpid in qemu_of_run(os.getpid()):
            os.kill(qpid, signal.SIGSTOP)
            stopped.append((qpid, time.monotonic()))

    timer = threading.Timer(1.0, stop)
    slow = slow_module(tmp_path, 8000)  # the user's batch lasts 8 s: QEMU is stopped 1 s into it

    def log(line: str) -> None:
        if line.startswith("fetch: ") and not timer.is_alive() and not stopped and not timer.finished.is_set():
            timer.start()  # the kit's batch is in: the user's starts now

    try:
        outcome = run_session(tmp_path, [slow], log=log, plan_timeout_s=10.0)
        ended = time.monotonic()
        left = left_behind(os.getpid())
    finally:
        timer.cancel()
        for qpid in qemu_of_run(os.getpid()):  # never leave a stopped QEMU behind, whatever happened
            os.kill(qpid, signal.SIGCONT)
            os.kill(qpid, signal.SIGKILL)

    assert len(stopped) == 1, "QEMU was not running 1 s into the plan"
    assert outcome.bundle_dir is not None and outcome.verdict is not None
    bundle = outcome.bundle_dir
    verdict = json.loads((bundle / "verdict.json").read_text())
    assert verdict["status"] == "error"
    assert verdict["error"].startswith("no exit status for 'sh /kit/kitrun.sh"), verdict["error"]  # CommandTimeout
    for name in ("junit.xml", "report.txt", "boot.log", "target.toml", "config", "ko/kit_vmalloc.ko"):
        assert (bundle / name).is_file(), name
    assert "KIT>READY" in (bundle / "boot.log").read_text()
    assert left == [], left  # the kit killed the stopped QEMU itself
    record(FaultRow("QEMU stopped (SIGSTOP) mid-plan, plan timeout 10 s", "error (CommandTimeout)",
                    "3 (status error)", ended - stopped[0][1],
                    "verdict.json, junit.xml, report.txt, boot.log, target.toml, config, ko/",
                    "no QEMU (killed by the kit), no work dir"))


def test_console_flood_during_the_fetch_gives_exact_files_or_a_clean_error(
        tmp_path: Path, fault_modules: dict[str, Path]) -> None:
    kern = kernel("6.1")
    ko = fault_modules["hello"]
    transport = kern.transport(tmp_path / "work")
    files: dict[str, bytes] | None = None
    error: DeployError | None = None
    try:
        transport.push(guest_files([ko]))
        transport.boot()
        plan = transport.run(plan_command([ko]), 120)
        assert plan.exit_status == 0, plan.output
        listing = transport.run(f"cd {GuestPaths().out} && find . -type f | sort | xargs sha256sum", 60)
        assert listing.exit_status == 0, listing.output
        on_guest = {name.removeprefix("./"): digest for digest, name in
                    (line.split(None, 1) for line in listing.output.splitlines() if line.strip())}
        before = transport.console_log.read_bytes().count(b"kit flood")
        assert transport.run(FLOOD, 30).exit_status == 0
        started = time.monotonic()
        try:
            files = transport.fetch(GuestPaths().out)
        except DeployError as err:
            error = err
        elapsed = time.monotonic() - started
        flooded = transport.console_log.read_bytes().count(b"kit flood") - before
    finally:
        transport.abort()

    assert not transport.booted
    assert flooded >= 20, f"only {flooded} flood lines reached the console during the fetch"
    assert set(on_guest) == guest_output_names(["hello"]), on_guest
    if files is not None:
        fetched = {name: hashlib.sha256(data).hexdigest() for name, data in files.items()}
        assert fetched == on_guest  # byte-exact, every file, nothing more
        verdict, held = "files byte-exact", f"all {len(files)} files byte-exact (sha256 vs the guest's)"
    else:
        assert isinstance(error, FramingError | TransportLost | CommandTimeout), repr(error)
        verdict, held = f"clean error ({type(error).__name__})", f"no file accepted: {str(error)[:80]}"
    record(FaultRow(f"console flooded during the fetch ({flooded} KERN_EMERG lines)", verdict,
                    "-" if error is None else "3 (an InfraError)", elapsed,
                    held, "no QEMU"))
