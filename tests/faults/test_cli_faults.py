"""Faults a user causes on the real CLI: Ctrl-C in the middle of a run, two runs at once (real runs)."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import pytest

from tests.conftest import debian_kernel
from tests.faults.conftest import REPO, FaultRow, qemu_of_run, record, start_invoke, wait_for_line

pytestmark = [pytest.mark.e2e, pytest.mark.faults]


def _bundles(results: Path) -> list[Path]:
    return sorted(p for p in (results / "arm-6.1").iterdir() if p.is_dir())


def test_ctrl_c_during_a_run_stops_the_guest_and_keeps_a_verdict(results_dir: Path) -> None:
    debian_kernel("6.1")  # cached (invoke setup --all), so the run reaches the guest quickly
    process = start_invoke("run", "--results", str(results_dir))
    lines: list[str] = []
    wait_for_line(process, "boot: ", lines, limit_s=180)  # the guest is up and the plan is starting
    assert qemu_of_run(process.pid), "no QEMU of this run while its plan runs"
    sent = time.monotonic()
    process.send_signal(signal.SIGINT)
    _out, err = process.communicate(timeout=30)
    stopped_s = time.monotonic() - sent
    left = qemu_of_run(process.pid)

    assert process.returncode == 130, err
    assert "interrupted (Ctrl-C)" in err and "Traceback" not in err
    (bundle,) = _bundles(results_dir)
    assert (results_dir / "latest").resolve() == bundle.resolve()
    verdict = json.loads((bundle / "verdict.json").read_text())
    assert verdict["status"] == "error" and verdict["error"].startswith("interrupted (Ctrl-C)")
    for name in ("junit.xml", "report.txt", "boot.log", "target.toml", "config"):
        assert (bundle / name).is_file(), name
    assert "KIT>READY" in (bundle / "boot.log").read_text()
    assert left == [], f"QEMU left running: {left}"
    record(FaultRow("Ctrl-C (SIGINT) during the guest plan", "error (interrupted)", process.returncode, stopped_s,
                    "verdict.json, junit.xml, report.txt, boot.log, target.toml, config, ko/", "no QEMU"))


def test_two_runs_at_once_each_keep_their_own_console_and_bundle(results_dir: Path) -> None:
    debian_kernel("6.1")
    start = time.monotonic()
    first, second = (start_invoke("run", "--results", str(results_dir)) for _ in range(2))
    outputs = [p.communicate(timeout=600) for p in (first, second)]
    elapsed = time.monotonic() - start

    for process, (out, err) in zip((first, second), outputs, strict=True):
        assert process.returncode == 0, (out[-3000:], err[-2000:])
        assert qemu_of_run(process.pid) == []
        assert list((REPO / "generated" / "arm-6.1" / "qemu").glob(f"run-{process.pid}-*")) == []
    bundles = _bundles(results_dir)
    assert len(bundles) == 2
    for bundle in bundles:
        console = (bundle / "boot.log").read_text()
        assert console.count("Booting Linux on physical CPU") == 1, bundle
        assert json.loads((bundle / "verdict.json").read_text())["status"] == "pass"
    assert (results_dir / "latest").resolve() in [b.resolve() for b in bundles]
    record(FaultRow("two runs at once in one checkout", "pass, pass", "0, 0", elapsed,
                    "two complete bundles, one console each", "no QEMU, no work dir"))
