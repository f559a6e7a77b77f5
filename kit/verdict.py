"""verdict.json and junit.xml: the schema other tools depend on (issue 2, "Interfaces")."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from analysis.verify.check import Check, summarize

RunStatus = Literal["pass", "fail", "error"]


@dataclass(frozen=True)
class Verdict:
    target: str
    arch: str
    release: str | None
    version: str | None
    checks: Sequence[Check]
    run_error: str | None = None
    log_excerpt: str | None = None
    extra: dict[str, object] = field(default_factory=dict)

    @property
    def summary(self) -> dict[str, int]:
        return summarize(self.checks)

    @property
    def status(self) -> RunStatus:
        """error when the run could not tell (infrastructure, guest crash, a check that errored);
        fail when any check failed; pass only with at least one passing check and nothing else wrong."""
        counts = self.summary
        if self.run_error is not None or counts["error"]:
            return "error"
        if counts["fail"]:
            return "fail"
        return "pass" if counts["pass"] else "error"

    def as_json(self) -> dict[str, object]:
        doc: dict[str, object] = {
            "target": self.target,
            "kernel": {"release": self.release, "version": self.version},
            "arch": self.arch,
            "status": self.status,
            "checks": [c.as_json() for c in self.checks],
            "summary": self.summary,
        }
        if self.run_error is not None:
            doc["error"] = self.run_error
        if self.log_excerpt is not None:
            doc["log_excerpt"] = self.log_excerpt
        doc.update(self.extra)
        return doc


def write_verdict_json(verdict: Verdict, path: Path) -> None:
    path.write_text(json.dumps(verdict.as_json(), indent=2) + "\n")


def write_junit(verdict: Verdict, path: Path) -> None:
    """One testsuite per family, one testcase per check."""
    root = ET.Element("testsuites", name=f"kmodkit {verdict.target}")
    families: dict[str, list[Check]] = {}
    for check in verdict.checks:
        families.setdefault(check.family, []).append(check)
    if verdict.run_error is not None:
        families.setdefault("run", []).append(
            Check("run", "run", "error", None, None, verdict.run_error + "\n" + (verdict.log_excerpt or ""))
        )
    for family, checks in families.items():
        counts = summarize(checks)
        suite = ET.SubElement(
            root,
            "testsuite",
            name=family,
            tests=str(len(checks)),
            failures=str(counts["fail"]),
            errors=str(counts["error"]),
            skipped=str(counts["skip"]),
        )
        for check in checks:
            case = ET.SubElement(suite, "testcase", classname=f"{verdict.target}.{family}", name=check.id)
            message = f"expected {check.expected!r}, got {check.actual!r}. {check.detail}".strip()
            if check.status == "fail":
                ET.SubElement(case, "failure", message=message)
            elif check.status == "error":
                ET.SubElement(case, "error", message=message)
            elif check.status == "skip":
                ET.SubElement(case, "skipped", message=check.detail)
    ET.ElementTree(root).write(path, encoding="unicode", xml_declaration=True)
