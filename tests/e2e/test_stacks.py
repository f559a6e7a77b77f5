"""Driver stacks (issue 8 item 5): modules that depend on each other, given in any order, on a real
kernel in QEMU. A base exporting a symbol and its user (built here with Kbuild), and Debian's own
self-test pair test_static_key_base.ko + test_static_keys.ko from the kernel package."""

from __future__ import annotations

from pathlib import Path

import pytest

from kbuild.targets import load_target
from kit.pipeline import RunOutcome
from kit.request import RunRequest
from kit.session import RunSession
from tests.conftest import STACK_SOURCES, build_own_stack, debian_lib_module

pytestmark = pytest.mark.e2e



@pytest.fixture(scope="module")
def roots(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """One generated/ for the module's runs: the kit's modules are built once."""
    base = tmp_path_factory.mktemp("stacks")
    return base / "results", base / "generated"


@pytest.fixture(scope="module")
def own_stack(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return build_own_stack(tmp_path_factory.mktemp("stack-build") / "stack")


def _run(roots: tuple[Path, Path], modules: list[Path]) -> RunOutcome:
    results, generated = roots
    request = RunRequest(load_target("arm-6.1"), user_modules=tuple(modules), results_root=results,
                         generated_root=generated)
    return RunSession(request, lambda _line: None).run()


def _checks(outcome: RunOutcome) -> dict[str, tuple[str, str]]:
    assert outcome.verdict is not None
    return {c.id: (c.status, c.detail) for c in outcome.verdict.checks}


def _status_lines(outcome: RunOutcome) -> list[str]:
    assert outcome.bundle_dir is not None
    return (outcome.bundle_dir / "status.txt").read_text().splitlines()


def test_a_stack_given_top_first_loads_base_first_and_checks_both(roots: tuple[Path, Path],
                                                                  own_stack: dict[str, Path]) -> None:
    outcome = _run(roots, [own_stack["stack_user"], own_stack["stack_base"]])
    checks = _checks(outcome)
    assert [c for c, (status, _) in checks.items() if status in ("fail", "error")] == []
    assert _status_lines(outcome)[-2:] == ["stack_base insmod=0 rmmod=0", "stack_user insmod=0 rmmod=0"]
    for module in ("stack_base", "stack_user"):
        assert checks[f"{module}.proc_modules.size"][0] == "pass"
        assert checks[f"{module}.proc_modules.address"][0] == "pass"
        assert checks[f"{module}.no_leak"][0] == "pass"
    assert outcome.bundle_dir is not None
    # the base stayed loaded while its user was checked: /proc/modules then lists both, the user using it
    during = (outcome.bundle_dir / "modules" / "stack_user.txt").read_text()
    assert "stack_base " in during and "stack_user," in during.split("stack_base ", 1)[1].splitlines()[0]


def test_debians_static_key_pair_in_any_order(roots: tuple[Path, Path]) -> None:
    outcome = _run(roots, [debian_lib_module("test_static_keys"), debian_lib_module("test_static_key_base")])
    checks = _checks(outcome)
    assert [c for c, (status, _) in checks.items() if status in ("fail", "error")] == []
    assert _status_lines(outcome)[-2:] == ["test_static_key_base insmod=0 rmmod=0",
                                           "test_static_keys insmod=0 rmmod=0"]
    assert checks["test_static_keys.proc_modules.size"][0] == "pass"


def test_a_module_without_its_base_is_one_clean_did_not_load(roots: tuple[Path, Path]) -> None:
    outcome = _run(roots, [debian_lib_module("test_static_keys")])
    checks = _checks(outcome)
    bad = {c: v for c, v in checks.items() if v[0] in ("fail", "error")}
    assert list(bad) == ["test_static_keys.insmod"]
    _status, detail = bad["test_static_keys.insmod"]
    assert detail.startswith("did not load: ") and "Unknown symbol" in detail
    assert checks["test_static_keys.footprint"] == ("skip", "did not load (see its insmod check): no footprint "
                                                            "to compare")
    assert checks["test_static_keys.rmmod"][0] == "skip"
    assert outcome.verdict is not None and outcome.verdict.status == "fail"


def test_a_stack_given_as_its_source_tree_is_built_and_loaded_base_first(roots: tuple[Path, Path]) -> None:
    """--module DIR: the directory's Kbuild names both modules; they are built against the target's kernel
    (in the kit's mirror of the tree, which stays as it was) and run as the stack they are."""
    outcome = _run(roots, [STACK_SOURCES])
    checks = _checks(outcome)
    assert [c for c, (status, _) in checks.items() if status in ("fail", "error")] == []
    assert _status_lines(outcome)[-2:] == ["stack_base insmod=0 rmmod=0", "stack_user insmod=0 rmmod=0"]
    assert checks["stack_user.proc_modules.size"][0] == "pass"
    assert sorted(p.name for p in STACK_SOURCES.iterdir()) == ["Kbuild", "stack_base.c", "stack_user.c"]
