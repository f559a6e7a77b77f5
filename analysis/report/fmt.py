"""Number formatting shared by the terminal lines and the page."""

from __future__ import annotations

_UNITS = ((1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB"))


def human(size: int) -> str:
    """Bytes for a person: ``240 MiB``, ``3.7 MiB``, ``13.96 MiB`` (never a rounded ``14.0``), ``12 KiB``,
    ``100 B``; exact values without a decimal."""
    for scale, unit in _UNITS:
        if abs(size) >= scale:
            if size % scale == 0:
                return f"{size // scale} {unit}"
            shown = f"{size / scale:.1f}"
            return f"{size / scale:.2f} {unit}" if shown.endswith(".0") else f"{shown} {unit}"
    return f"{size} B"


def addr(value: int) -> str:
    """A kernel address the way the kernel prints it on 32-bit: ``0xf0800000``."""
    return f"0x{value:08x}"


def span(start: int, end: int) -> str:
    return f"{addr(start)}-{addr(end)}"
