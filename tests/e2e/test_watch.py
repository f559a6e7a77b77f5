"""`invoke watch`'s warm guest (issue 11): the same checks and verdicts as a cold run, five times in a row on
one boot; a run after an edit rebuilds and pushes only what changed; a module that leaks or crashes the
guest is reported as in a cold run and the next run starts from a fresh boot."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from kbuild.make import build_module_dir
from kbuild.render import TEMPLATES_DIR
from kbuild.targets import load_target
from kit.pipeline import RunOutcome
from kit.request import RunRequest
from kit.session import RunSession
from kit.watch import Iteration, WatchLoop
from tests.conftest import debian_kernel, target_toolchain

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
FAULTS = REPO / "tests" / "faults" / "data"


def checks(outcome: RunOutcome | None) -> dict[str, str]:
    assert outcome is not None and outcome.verdict is not None
    return {c.id: c.status for c in outcome.verdict.checks}


def fault_module(name: str, tmp_path: Path) -> Path:
    shutil.copytree(FAULTS / name, tmp_path / name)
    (built,) = build_module_dir(debian_kernel("6.1"), target_toolchain("6.1"), tmp_path / name)
    return built.ko


def two_runs_with(fault: str, tmp_path: Path) -> tuple[WatchLoop, Iteration, Iteration]:
    """Two runs of the loop with the fault module as the user's --module (its guest closed after)."""
    module = fault_module(fault, tmp_path)
    request = RunRequest(load_target("arm-6.1"), user_modules=(module,), results_root=tmp_path / "results")
    loop = WatchLoop(request, lambda _line: None)
    try:
        first, second = loop.iterate(), loop.iterate()
    finally:
        loop.close()
    return loop, first, second


def test_five_warm_runs_give_the_cold_runs_checks_and_verdicts(tmp_path: Path) -> None:
    request = RunRequest(load_target("arm-6.1"), results_root=tmp_path / "results")
    cold = checks(RunSession(request, lambda _line: None).run())
    assert len(cold) > 400 and set(cold.values()) <= {"pass", "skip"}
    loop = WatchLoop(request, lambda _line: None)
    try:
        runs = [loop.iterate(everything=True) for _ in range(6)]
        unchanged = loop.iterate()  # nothing edited: no module to load again
    finally:
        loop.close()
    assert runs[0].fresh_boot and not any(run.fresh_boot for run in runs[1:])  # one boot for all six
    for run in runs:
        assert run.outcome is not None and checks(run.outcome) == cold, run.number
        assert run.checks == cold and not run.restarts_next and not run.newly_failing
        assert len(run.ran) == 5
    assert loop.warm.boots == 1
    assert unchanged.outcome is None and unchanged.ran == () and unchanged.checks == cold


def test_a_leak_is_reported_and_the_next_run_boots_afresh(tmp_path: Path) -> None:
    loop, first, second = two_runs_with("fault_leak", tmp_path)
    for run in (first, second):
        failing = [k for k, v in checks(run.outcome).items() if v in ("fail", "error")]
        assert failing == ["fault_leak.no_leak"], failing  # as in a cold run (tests/faults)
        assert run.restarts_next
    assert first.newly_failing == ("fault_leak.no_leak",) and second.newly_failing == ()
    assert first.fresh_boot and second.fresh_boot and loop.warm.boots == 2


def test_a_crash_is_reported_and_the_next_run_boots_afresh(tmp_path: Path) -> None:
    loop, first, second = two_runs_with("fault_oops", tmp_path)
    for run in (first, second):
        assert run.outcome is not None and run.outcome.verdict is not None
        assert run.outcome.verdict.status == "error" and "Internal error" in (run.outcome.verdict.run_error or "")
        assert checks(run.outcome)["kit_vmalloc.no_leak"] == "pass"  # the kit's batch ran before the crash
        assert run.restarts_next
    assert second.fresh_boot and loop.warm.boots == 2


def test_an_edit_reruns_on_the_warm_guest_pushing_only_the_rebuilt_module(tmp_path: Path) -> None:
    """watch(): a template edited after the first verdict (a copy of templates/) gives a second run on the
    same guest; only the edited family's module is rebuilt and goes through the console."""
    templates = tmp_path / "templates"
    shutil.copytree(TEMPLATES_DIR, templates)
    request = RunRequest(load_target("arm-6.1"), results_root=tmp_path / "results",
                         generated_root=tmp_path / "generated", templates_dir=templates)
    lines: list[str] = []
    loop = WatchLoop(request, lines.append)
    seen: list[Iteration] = []

    first_run_lines: list[int] = []

    def report(run: Iteration) -> None:
        seen.append(run)
        if len(seen) == 1:  # the author saves an edit
            first_run_lines.append(len(lines))
            edit = 'MODULE_INFO(kit_edit, "1");\n'  # changes the module's bytes (a comment would not)
            threading.Timer(0.5, lambda: (templates / "modules" / "kmap.c.j2").open("a").write(edit)).start()

    try:
        loop.watch(report, keep_going=lambda: len(seen) < 2)
    finally:
        loop.close()
    assert [run.fresh_boot for run in seen] == [True, False]
    assert seen[1].ran == ("kit_kmap",)  # only the edited family's module ran again
    assert seen[1].checks == checks(seen[0].outcome)  # merged: the suite's verdicts, as after a full run
    assert seen[1].outcome is not None and seen[1].outcome.bundle_dir is not None
    assert [ko.name for ko in (seen[1].outcome.bundle_dir / "ko").iterdir()] == ["kit_kmap.ko"]
    assert checks(seen[1].outcome)["kit_kmap.no_leak"] == "pass"
    pushed = [line for line in lines[first_run_lines[0]:] if "through the console" in line]
    assert len(pushed) == 1 and "kit_kmap.ko" in pushed[0], pushed


def test_invoke_watch_stops_after_its_iterations() -> None:
    done = subprocess.run([sys.executable, "-m", "invoke", "watch", "--iterations", "1"], cwd=REPO,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert re.search(r"^\[1\] \d+ checks: \d+ pass, 0 fail, \d+ skip, 0 error", done.stdout, re.M), done.stdout
    assert "(fresh boot, ran kit_alloc, kit_ioremap, kit_kmap, kit_vmalloc, kit_vmalloc_exec)" in done.stdout


def test_a_source_tree_edit_rebuilds_and_reruns_only_that_module(tmp_path: Path) -> None:
    """--module DIR: an edit of the user's source is rebuilt (in the kit's mirror) and only that module runs
    again on the warm guest; a compile error names the user's file and the loop waits for the fix."""
    source = shutil.copytree(REPO / "tests" / "deploy" / "data" / "hello", tmp_path / "hello")
    request = RunRequest(load_target("arm-6.1"), user_modules=(source,), results_root=tmp_path / "results",
                         generated_root=tmp_path / "generated")
    original = (source / "hello.c").read_text()
    edits = iter([original + 'MODULE_INFO(kit_edit, "1");\n', original + "int broken = ;\n",
                  original + 'MODULE_INFO(kit_edit, "2");\n'])
    seen: list[Iteration] = []

    def report(run: Iteration) -> None:
        seen.append(run)
        text = next(edits, None)
        if text is not None:
            threading.Timer(0.3, lambda: (source / "hello.c").write_text(text)).start()

    loop, deadline = WatchLoop(request, lambda _line: None), time.monotonic() + 240
    try:  # an edit the loop does not see would leave it polling: the deadline ends it, and the test fails
        loop.watch(report, keep_going=lambda: len(seen) < 4 and time.monotonic() < deadline)
    finally:
        loop.close()
    assert len(seen) == 4, [(run.ran, run.error) for run in seen]
    first, edited, broken, fixed = seen
    assert first.fresh_boot and "hello.no_leak" in first.checks
    assert edited.ran == ("hello",) and not edited.fresh_boot and edited.checks == first.checks
    assert broken.outcome is None and broken.error is not None
    assert f"{source}/hello.c" in broken.error and "error: expected expression" in broken.error
    assert fixed.ran == ("hello",) and not fixed.fresh_boot and fixed.checks == first.checks
    assert sorted(p.name for p in source.iterdir()) == ["Kbuild", "hello.c"]  # no build output in the user's tree
