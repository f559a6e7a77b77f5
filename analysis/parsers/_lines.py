"""Line helpers shared by the parsers."""

from __future__ import annotations

from collections.abc import Iterator


def numbered_lines(text: str) -> Iterator[tuple[int, str]]:
    """Yield ``(line_number, line)`` from 1, without line ends (``\\r\\n`` tolerated)."""
    yield from enumerate(text.splitlines(), start=1)


def data_lines(text: str) -> Iterator[tuple[int, str]]:
    """Numbered lines that carry data: blank lines and ``#`` provenance lines are skipped."""
    for number, line in numbered_lines(text):
        stripped = line.strip()
        if stripped and not stripped.startswith("#"):
            yield number, stripped
