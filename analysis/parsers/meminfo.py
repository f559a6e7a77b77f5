"""/proc/meminfo.

Format (fs/proc/meminfo.c ``meminfo_proc_show``, all versions): ``<Key>:<spaces><value> kB`` and, for
the HugePages counters, ``<Key>:<spaces><count>`` without a unit. ``VmallocTotal`` is
``(VMALLOC_END - VMALLOC_START) >> 10`` (5.10:119, 6.1:128, 6.12:129); ``VmallocUsed`` was hard-coded
0 from 4.4 to 5.2 and counts vmalloc'ed pages since 5.3. ``LowTotal``/``HighTotal`` exist only
with CONFIG_HIGHMEM.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from analysis.parsers._lines import data_lines
from kit.errors import ParseError

# A value is an unsigned long (%8lu: at most 20 digits); a longer digit run is a malformed line.
_LINE = re.compile(r"(?P<key>[A-Za-z0-9_()]+):\s*(?P<value>\d{1,20})(?:\s*(?P<unit>kB))?\s*")


def parse_meminfo(text: str, path: str = "meminfo") -> dict[str, int]:
    """Every field: values in kB, HugePages counters as plain counts. A repeated key is an error."""
    values: dict[str, int] = {}
    for number, line in data_lines(text):
        match = _LINE.fullmatch(line)
        if match is None:
            raise ParseError(path, number, f"not a meminfo line: {line[:80]!r}")
        key = match["key"]
        if key in values:
            raise ParseError(path, number, f"{key} appears twice")
        values[key] = int(match["value"])
    return values


def is_meminfo_line(line: str) -> bool:
    """The line (surrounding whitespace ignored) is one ``Key: value [kB]`` line of /proc/meminfo."""
    return _LINE.fullmatch(line.strip()) is not None


@dataclass(frozen=True, slots=True)
class MeminfoSummary:
    """The fields the layout model reads, in kB; ``None`` when the kernel does not print them."""

    mem_total_kb: int | None
    mem_free_kb: int | None
    low_total_kb: int | None
    high_total_kb: int | None
    vmalloc_total_kb: int | None
    vmalloc_used_kb: int | None
    vmalloc_chunk_kb: int | None
    cma_total_kb: int | None

    @property
    def has_highmem_fields(self) -> bool:
        """True when the kernel was built with CONFIG_HIGHMEM (it prints LowTotal/HighTotal)."""
        return self.high_total_kb is not None


def meminfo_summary(values: dict[str, int]) -> MeminfoSummary:
    """Pick the model's fields out of :func:`parse_meminfo`'s result."""
    return MeminfoSummary(
        mem_total_kb=values.get("MemTotal"),
        mem_free_kb=values.get("MemFree"),
        low_total_kb=values.get("LowTotal"),
        high_total_kb=values.get("HighTotal"),
        vmalloc_total_kb=values.get("VmallocTotal"),
        vmalloc_used_kb=values.get("VmallocUsed"),
        vmalloc_chunk_kb=values.get("VmallocChunk"),
        cma_total_kb=values.get("CmaTotal"),
    )
