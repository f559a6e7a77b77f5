"""A bug of the kit's (an exception that is not a KitError) is still a verdict and exit 3, never lost.

The bug is injected (a pipeline step replaced by one that raises): no real input makes the kit raise a
foreign exception on purpose. Everything else is real: the cached kernel, the bundle, the verdict.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import kit.session
import tasks
from kbuild.targets import load_target
from kit.request import RunRequest
from kit.session import RunSession
from tests.conftest import debian_kernel


def _broken_step(*_args: object) -> None:
    raise ZeroDivisionError("division by zero in a pipeline step")


def test_an_internal_error_during_a_run_writes_an_error_verdict(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    debian_kernel("6.1")
    monkeypatch.setattr(kit.session, "write_target_facts", _broken_step)
    request = RunRequest(load_target("arm-6.1"), results_root=tmp_path / "results", generated_root=tmp_path / "gen")
    outcome = RunSession(request, lambda _line: None).run()

    assert outcome.verdict is not None and outcome.verdict.status == "error"
    assert outcome.bundle_dir is not None
    doc = json.loads((outcome.bundle_dir / "verdict.json").read_text())
    assert doc["error"].startswith("internal error ZeroDivisionError: division by zero in a pipeline step")
    assert "_broken_step" in (outcome.bundle_dir / "traceback.txt").read_text()
    assert (outcome.bundle_dir / "junit.xml").is_file()


def test_the_cli_turns_a_foreign_exception_into_exit_3(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(tasks.Exit) as raised, tasks._exit_codes():
        _broken_step()
    assert raised.value.code == 3
    assert capsys.readouterr().err.startswith("error: internal error ZeroDivisionError: division by zero")
