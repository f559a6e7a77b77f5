"""verdict.json (issue 2's schema) and junit.xml."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

from analysis.verify.check import Check, compare, compare_address
from kit.verdict import Verdict, write_junit, write_verdict_json


def verdict(checks: list[Check], run_error: str | None = None) -> Verdict:
    return Verdict("arm-6.1", "arm", "6.1.0-50-armmp", "6.1.176", checks, run_error=run_error)


def test_schema_and_status(tmp_path: Path) -> None:
    checks = [compare("a", "vmalloc", 1, 1), compare_address("b", "kmap", 0xBFE01000, 0xBFE02000)]
    write_verdict_json(verdict(checks), tmp_path / "v.json")
    doc = json.loads((tmp_path / "v.json").read_text())
    assert doc["target"] == "arm-6.1" and doc["arch"] == "arm"
    assert doc["kernel"] == {"release": "6.1.0-50-armmp", "version": "6.1.176"}
    assert doc["status"] == "fail"
    assert doc["summary"] == {"pass": 1, "fail": 1, "skip": 0, "error": 0}
    assert doc["checks"][1] == {"id": "b", "family": "kmap", "status": "fail", "expected": "0xbfe01000",
                                "actual": "0xbfe02000", "detail": ""}


def test_nothing_measured_is_an_error_not_a_pass() -> None:
    assert compare("a", "x", 5, None).status == "error"
    assert verdict([compare("a", "x", 5, None)]).status == "error"
    assert verdict([]).status == "error"  # no check at all proves nothing
    assert verdict([compare("a", "x", 1, 1)], run_error="guest panicked").status == "error"
    assert verdict([compare("a", "x", 1, 1)]).status == "pass"


def test_junit_has_a_suite_per_family(tmp_path: Path) -> None:
    checks = [compare("a", "vmalloc", 1, 1), compare("b", "vmalloc", 1, 2), Check("c", "kmap", "skip", detail="5.10")]
    write_junit(verdict(checks, run_error="boot timeout"), tmp_path / "j.xml")
    root = ET.parse(tmp_path / "j.xml").getroot()
    suites = {s.get("name"): s for s in root}
    assert suites["vmalloc"].get("failures") == "1" and suites["vmalloc"].get("tests") == "2"
    assert suites["kmap"].get("skipped") == "1"
    assert suites["run"].get("errors") == "1"
