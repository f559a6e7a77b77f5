"""target.toml's arch against the evidence of a real bundle (issue 12 row 1: an ARM bundle that says x86_64)."""

from __future__ import annotations

import shutil
from pathlib import Path

from analysis.verify.verify import verify_bundle
from tests.kit.test_cli import invoke

RUN = Path(__file__).resolve().parents[1] / "data" / "runs" / "arm-6.1"
MODULES = ("kit_alloc", "kit_ioremap", "kit_kmap", "kit_vmalloc", "kit_vmalloc_exec")


def _with_arch(tmp_path: Path, arch: str) -> Path:
    copy = tmp_path / "bundle"
    shutil.copytree(RUN, copy)
    toml = copy / "target.toml"
    toml.write_text(toml.read_text().replace('arch = "arm"', f'arch = "{arch}"'))
    return copy


def _facts(root: Path) -> dict[str, tuple[str, object, object]]:
    return {c.id: (c.status, c.expected, c.actual) for c in verify_bundle(root).checks if c.family == "facts"}


def test_the_real_bundle_agrees_with_its_facts() -> None:
    facts = _facts(RUN)
    assert set(facts) == {"facts.arch.boot_log", *(f"facts.arch.ko.{m}" for m in MODULES)}
    assert {status for status, _, _ in facts.values()} == {"pass"}


def test_an_arm_bundle_that_says_x86_64_fails_every_fact(tmp_path: Path) -> None:
    facts = _facts(_with_arch(tmp_path, "x86_64"))
    assert facts["facts.arch.boot_log"] == ("fail", "x86_64", "arm")
    for module in MODULES:
        assert facts[f"facts.arch.ko.{module}"] == ("fail", "64-bit little-endian x86-64",
                                                    "32-bit little-endian ARM")


def test_the_cli_exits_1_on_contradicting_facts(tmp_path: Path) -> None:
    done = invoke("check", "--bundle", str(_with_arch(tmp_path, "x86_64")))
    assert done.returncode == 1
    assert "FAIL    facts.arch.boot_log" in done.stdout
