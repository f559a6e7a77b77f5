"""Plain-text rendering of checks for the terminal (no colours): a table and a one-line summary."""

from __future__ import annotations

from collections.abc import Sequence

from analysis.verify.check import Check, summarize

_HEADERS = ("status", "id", "expected", "actual", "detail")
_ORDER = {"fail": 0, "error": 1, "skip": 2, "pass": 3}
_MAX_CELL = 70      # expected / actual
_MAX_DETAIL = 240   # the last column is not padded, so the detail may run longer


def _cell(value: object, limit: int = _MAX_CELL) -> str:
    text = "" if value is None else str(value)
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def format_table(checks: Sequence[Check]) -> str:
    """One row per check, in the given order; columns padded to the widest cell (the detail is last)."""
    rows = [_HEADERS] + [
        (check.status.upper(), check.id, _cell(check.expected), _cell(check.actual), _cell(check.detail, _MAX_DETAIL))
        for check in checks
    ]
    widths = [max(len(row[column]) for row in rows) for column in range(len(_HEADERS) - 1)]
    lines = []
    for row in rows:
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=False)] + [row[-1]]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines) + "\n"


def worst_first(checks: Sequence[Check]) -> list[Check]:
    """Failures and errors first, then skips, then passes (stable within each status)."""
    return sorted(checks, key=lambda check: _ORDER[check.status])


def summary_line(checks: Sequence[Check]) -> str:
    """``12 checks: 10 pass, 1 fail, 1 skip, 0 error``."""
    counts = summarize(checks)
    parts = ", ".join(f"{counts[status]} {status}" for status in ("pass", "fail", "skip", "error"))
    return f"{len(checks)} checks: {parts}"


def family_summary(checks: Sequence[Check]) -> str:
    """One line per family: ``vmalloc      52 pass  0 fail  0 skip  0 error``, families in first-seen order."""
    families: dict[str, list[Check]] = {}
    for check in checks:
        families.setdefault(check.family, []).append(check)
    width = max((len(name) for name in families), default=0)
    lines = []
    for name, members in families.items():
        counts = summarize(members)
        cells = "  ".join(f"{counts[status]:4d} {status}" for status in ("pass", "fail", "skip", "error"))
        lines.append(f"  {name:<{width}}  {cells}")
    return "\n".join(lines) + "\n"
