"""verdict.json and junit.xml: the schema other tools depend on (issue 2, "Interfaces")."""

from __future__ import annotations

import errno
import json
import os
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from analysis.verify.check import Check, summarize
from kit.errors import InfraError, UserError

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


# What a person can fix by giving another path; anything else (a full disk, an I/O error) is the machine's.
_PATH_ERRNOS = frozenset({errno.ENOENT, errno.ENOTDIR, errno.EISDIR, errno.EACCES, errno.EPERM, errno.EROFS,
                          errno.ENAMETOOLONG, errno.ELOOP})


def check_output_path(path: Path) -> Path:
    """Raise UserError unless `path` can be written as a file: not a directory, in a directory that
    exists, writable (an existing file) or creatable (a new one). Call it before the work that produces
    the file, so a bad path fails at once; returns `path`. Creates nothing."""
    shown = str(path)
    if path.is_dir():
        raise UserError(f"{shown} is a directory; give a file path, e.g. {path / 'verdict.json'}")
    parent = path.parent
    if not parent.exists():
        raise UserError(f"cannot write {shown}: directory {parent} does not exist; create it or give a "
                        "file in an existing directory")
    if not parent.is_dir():
        raise UserError(f"cannot write {shown}: {parent} is not a directory; give a file in a directory")
    if path.exists():
        if not os.access(path, os.W_OK):
            raise UserError(f"cannot write {shown}: the file is not writable; give a writable file path")
    elif not os.access(parent, os.W_OK | os.X_OK):
        raise UserError(f"cannot write {shown}: directory {parent} is not writable; give a file in a "
                        "writable directory")
    return path


def _write_failed(path: Path, err: OSError) -> UserError | InfraError:
    reason = err.strerror or type(err).__name__
    if err.errno in _PATH_ERRNOS:
        return UserError(f"cannot write {path}: {reason}; give a writable file path")
    return InfraError(f"cannot write {path}: {reason}; free space or fix the file system and run again")


def write_verdict_json(verdict: Verdict, path: Path) -> None:
    """verdict.json at `path`. UserError when the path cannot be a file (a directory, a missing or
    read-only directory), InfraError when the machine fails the write (disk full, I/O error)."""
    try:
        path.write_text(json.dumps(verdict.as_json(), indent=2) + "\n")
    except OSError as err:
        raise _write_failed(path, err) from err


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
    try:
        ET.ElementTree(root).write(path, encoding="unicode", xml_declaration=True)
    except OSError as err:
        raise _write_failed(path, err) from err
