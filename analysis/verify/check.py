"""The unit of a verdict: one named check with what was expected and what was seen."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

CheckStatus = Literal["pass", "fail", "skip", "error"]


def hex_address(value: int | None) -> str | None:
    """Kernel addresses are shown the way the kernel prints them (%px on 32-bit)."""
    return None if value is None else f"0x{value:08x}"


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
            "expected": self.expected,
            "actual": self.actual,
            "detail": self.detail,
        }


def compare(check_id: str, family: str, expected: object, actual: object, detail: str = "") -> Check:
    """pass when equal, fail otherwise; ``actual is None`` (nothing measured) is an error, never a pass."""
    if actual is None:
        return Check(check_id, family, "error", expected, None, detail or "no value was measured")
    status: CheckStatus = "pass" if expected == actual else "fail"
    return Check(check_id, family, status, expected, actual, detail)


def compare_address(check_id: str, family: str, expected: int | None, actual: int | None,
                    detail: str = "") -> Check:
    """``compare`` for addresses: both sides shown in hex."""
    shown = hex_address(expected) if expected is not None else "none (the model predicts no fit)"
    return compare(check_id, family, shown, hex_address(actual), detail)


def skip(check_id: str, family: str, reason: str) -> Check:
    return Check(check_id, family, "skip", None, None, reason)


def summarize(checks: Iterable[Check]) -> dict[str, int]:
    counts = {"pass": 0, "fail": 0, "skip": 0, "error": 0}
    for check in checks:
        counts[check.status] += 1
    return counts
