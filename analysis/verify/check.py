"""The unit of a verdict: one named check with what was expected and what was seen."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

CheckStatus = Literal["pass", "fail", "skip", "error"]


def fmt_value(value: object) -> object:
    """Render ints that look like kernel addresses in hex; keep everything else JSON-friendly."""
    if isinstance(value, bool) or not isinstance(value, int):
        return value
    return f"0x{value:08x}" if value >= 0x10000 else value


@dataclass(frozen=True)
class Check:
    id: str
    family: str
    status: CheckStatus
    expected: object = None
    actual: object = None
    detail: str = ""

    def as_json(self) -> dict[str, object]:
        return {
            "id": self.id,
            "family": self.family,
            "status": self.status,
            "expected": fmt_value(self.expected),
            "actual": fmt_value(self.actual),
            "detail": self.detail,
        }


def compare(check_id: str, family: str, expected: object, actual: object, detail: str = "") -> Check:
    """pass when equal, fail otherwise; ``actual is None`` (nothing measured) is an error, never a pass."""
    if actual is None:
        return Check(check_id, family, "error", expected, None, detail or "no value was measured")
    status: CheckStatus = "pass" if expected == actual else "fail"
    return Check(check_id, family, status, expected, actual, detail)


def skip(check_id: str, family: str, reason: str) -> Check:
    return Check(check_id, family, "skip", None, None, reason)


def summarize(checks: Iterable[Check]) -> dict[str, int]:
    counts = {"pass": 0, "fail": 0, "skip": 0, "error": 0}
    for check in checks:
        counts[check.status] += 1
    return counts
