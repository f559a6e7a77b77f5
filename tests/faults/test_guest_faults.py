"""Faults inside the guest kernel, caused by real modules (tests/faults/data, built with Kbuild) loaded by
a real run after the default suite: an oops, a panic, a hang and a soft lockup in module_init, a leak.

Each fault module prints ``kit_fault: <name> starts`` at KERN_EMERG (the guest console shows only that
level): the time to detect is from that line on the live console to the end of the run.
"""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path

import pytest

from kit.pipeline import RunOutcome
from tests.faults.conftest import (
    QEMU_WORK,
    ConsoleWatch,
    FaultRow,
    left_behind,
    record,
    run_session,
    start_invoke,
)

pytestmark = [pytest.mark.e2e, pytest.mark.faults]

KIT_MODULES = ("kit_vmalloc", "kit_vmalloc_exec", "kit_ioremap", "kit_kmap", "kit_alloc")
HOST_FILES = ("target.toml", "config", "boot.log", "verdict.json", "junit.xml", "report.txt")


def starts(name: str) -> bytes:
    return f"kit_fault: {name} starts".encode()


def verdict_of(bundle: Path) -> dict[str, object]:
    doc: dict[str, object] = json.loads((bundle / "verdict.json").read_text())
    return doc


def bundle_of(outcome: RunOutcome) -> Path:
    assert outcome.bundle_dir is not None and outcome.verdict is not None
    return outcome.bundle_dir


def check_statuses(doc: dict[str, object]) -> dict[str, str]:
    checks = doc["checks"]
    assert isinstance(checks, list)
    return {str(c["id"]): str(c["status"]) for c in checks}


def held(bundle: Path) -> str:
    """What the bundle holds, for the table: the host's files, then how many guest files."""
    host = [name for name in HOST_FILES if (bundle / name).is_file()]
    guest = [p for p in bundle.rglob("*") if p.is_file() and p.name not in HOST_FILES and p.parent.name != "ko"]
    return f"{', '.join(host)}, ko/; {len(guest)} guest files"


def assert_host_files_kept(bundle: Path, console_line: bytes) -> None:
    for name in HOST_FILES:
        assert (bundle / name).is_file(), name
    assert console_line in (bundle / "boot.log").read_bytes()


def test_oops_in_init_gives_an_error_verdict_with_the_oops_and_the_modules_before_it_checked(
        tmp_path: Path, fault_modules: dict[str, Path]) -> None:
    with ConsoleWatch(os.getpid(), starts("fault_oops")) as watch:
        outcome = run_session(tmp_path, [fault_modules["fault_oops"]])
    detect_s = watch.detect_s(time.monotonic())
    bundle = bundle_of(outcome)
    doc = verdict_of(bundle)
    left = left_behind(os.getpid())

    assert doc["status"] == "error"
    error = str(doc["error"])
    # die()'s first line (KERN_EMERG: the console shows only that level; oops=panic makes it a panic)
    assert error.startswith("the guest kernel panicked: Internal error: "), error
    excerpt = str(doc.get("log_excerpt", ""))
    assert "PC is at fault_oops_init" in excerpt and "Kernel panic - not syncing: Fatal exception" in excerpt, excerpt
    assert_host_files_kept(bundle, b"PC is at fault_oops_init")
    assert left == [], left
    record(FaultRow("oops (NULL write) in a module's init", "error (GuestCrashed)", "3 (status error)", detect_s,
                    held(bundle), "no QEMU, no work dir"))
    # the five kit modules loaded before it ran to completion: their checks are in the verdict
    statuses = check_statuses(doc)
    for module in KIT_MODULES:
        assert statuses.get(f"{module}.insmod") == "pass", (module, sorted(statuses)[:20])


def test_panic_in_init_exits_3_at_the_cli_with_the_panic_in_the_bundle(
        results_dir: Path, fault_modules: dict[str, Path]) -> None:
    process = start_invoke("run", "--results", str(results_dir), "--module", str(fault_modules["fault_panic"]))
    with ConsoleWatch(process.pid, starts("fault_panic")) as watch:
        out, err = process.communicate(timeout=300)
    detect_s = watch.detect_s(time.monotonic())
    left = left_behind(process.pid)

    assert process.returncode == 3, (out[-2000:], err[-2000:])
    assert "Traceback" not in err and "internal error" not in err, err
    assert "run error: the guest kernel panicked: Kernel panic - not syncing: fault_panic: deliberate panic" in err
    bundle = results_dir / "latest"
    doc = verdict_of(bundle)
    assert doc["status"] == "error"
    assert "Kernel panic - not syncing: fault_panic: deliberate panic" in str(doc["error"])
    assert_host_files_kept(bundle, b"fault_panic: deliberate panic from module_init")
    assert left == [], left
    record(FaultRow("panic() in a module's init", "error (GuestCrashed)", process.returncode, detect_s,
                    held(bundle.resolve()), "no QEMU, no work dir"))


def test_hang_in_init_ends_with_a_plan_timeout_and_no_qemu(tmp_path: Path, fault_modules: dict[str, Path]) -> None:
    with ConsoleWatch(os.getpid(), starts("fault_hang")) as watch:
        outcome = run_session(tmp_path, [fault_modules["fault_hang"]], plan_timeout_s=20.0)
    detect_s = watch.detect_s(time.monotonic())
    bundle = bundle_of(outcome)
    doc = verdict_of(bundle)
    left = left_behind(os.getpid())

    assert doc["status"] == "error"
    error = str(doc["error"])
    assert re.match(r"no exit status for 'sh /kit/kitrun\.sh .*fault_hang' within 20 s", error), error  # CommandTimeout
    assert_host_files_kept(bundle, starts("fault_hang"))
    assert left == [], left
    record(FaultRow("hang (msleep loop) in a module's init, plan timeout 20 s", "error (CommandTimeout)",
                    "3 (status error)", detect_s, held(bundle), "no QEMU, no work dir"))


def test_soft_lockup_in_init_is_reported_as_the_lockup(tmp_path: Path, fault_modules: dict[str, Path]) -> None:
    """6 s with preemption off; watchdog_thresh=1 makes the kernel report it after 2 s (pr_emerg: on the
    console). The plan timeout (60 s) outlasts the lockup: the run can end on its own, the lockup in view."""
    with ConsoleWatch(os.getpid(), starts("fault_lockup")) as start, \
            ConsoleWatch(os.getpid(), b"BUG: soft lockup - CPU#0 stuck for") as report:
        outcome = run_session(tmp_path, [fault_modules["fault_lockup"]], append="watchdog_thresh=1",
                              plan_timeout_s=60.0)
    ended = time.monotonic()
    bundle = bundle_of(outcome)
    doc = verdict_of(bundle)
    left = left_behind(os.getpid())
    failing = sorted(cid for cid, status in check_statuses(doc).items() if status in ("fail", "error"))
    reported_s = start.detect_s(ended) - report.detect_s(ended)
    verdict = f"{doc['status']} ({str(doc['error'])[:70] if 'error' in doc else 'check ' + ', '.join(failing)})"
    record(FaultRow("soft lockup (6 s, preemption off) in a module's init, watchdog_thresh=1", verdict,
                    {"error": 3, "fail": 1, "pass": 0}[str(doc["status"])], report.detect_s(ended),
                    f"{held(bundle)}; the kernel reported it {reported_s:.1f} s into the lockup",
                    "no QEMU, no work dir" if not left else ", ".join(left)))

    assert b"BUG: soft lockup - CPU#0 stuck for" in (bundle / "boot.log").read_bytes()
    assert left == [], left
    # the guest hung: the run could not tell (exit 3), and says why
    assert doc["status"] == "error", (doc["status"], failing)
    assert "soft lockup" in str(doc.get("error", "")), doc.get("error")


def test_a_module_leaking_vmalloc_fails_its_leak_check_naming_the_area(
        results_dir: Path, fault_modules: dict[str, Path]) -> None:
    process = start_invoke("run", "--results", str(results_dir), "--module", str(fault_modules["fault_leak"]))
    started = time.monotonic()
    out, err = process.communicate(timeout=300)
    elapsed = time.monotonic() - started
    left = left_behind(process.pid)

    assert process.returncode == 1, (out[-3000:], err[-2000:])
    assert "Traceback" not in err
    bundle = (results_dir / "latest").resolve()
    doc = verdict_of(bundle)
    assert doc["status"] == "fail"
    printed = re.search(r"fault_leak: area ([0-9a-f]{8})$", (bundle / "dmesg.txt").read_text(), re.M)
    assert printed is not None
    checks = doc["checks"]
    assert isinstance(checks, list)
    failed = [c for c in checks if c["status"] != "pass" and c["status"] != "skip"]
    assert [c["id"] for c in failed] == ["fault_leak.no_leak"], failed
    (leak,) = failed
    assert leak["family"] == "leak"
    assert f"0x{printed.group(1)}-" in json.dumps(leak["actual"]), leak
    assert "fault_leak.no_leak" in out and f"0x{printed.group(1)}-" in out  # the terminal names it too
    assert left == [] and not list(QEMU_WORK.glob(f"run-{process.pid}-*")), left
    record(FaultRow("a module leaking vmalloc (no vfree in exit)", "fail (leak: fault_leak.no_leak)",
                    process.returncode, elapsed, "complete bundle; the check names the area " + f"0x{printed.group(1)}",
                    "no QEMU, no work dir"))
