"""Shared readers for the QEMU captures in tests/data/live/<version>/ (see src/capture.sh, src/split.py)."""

from __future__ import annotations

import re
from pathlib import Path

from analysis.parsers.vmallocinfo import VmallocEntry, parse_vmallocinfo

DATA = Path(__file__).resolve().parent.parent / "data"
VERSIONS: dict[str, tuple[int, int, int]] = {"5.10": (5, 10, 223), "6.1": (6, 1, 176), "6.12": (6, 12, 95)}
MODULES = ("kh5foot", "nls_cp437", "crc7", "ts_kmp", "kh5alloc")
VMALLOC_END = 0xFF800000  # arch/arm/include/asm/pgtable.h, 5.10/6.1/6.12
MODULES_VADDR, MODULES_END = 0xBF000000, 0xBFE00000  # VMSPLIT_3G + HIGHMEM (asm/memory.h)


def live(version: str) -> Path:
    return DATA / "live" / version


def ko_path(version: str, module: str) -> Path:
    found = sorted((DATA / "ko" / version).glob(f"{module}.ko*"))
    assert len(found) == 1, found
    return found[0]


def config(version: str) -> dict[str, str]:
    out = {}
    for line in (live(version) / "config.extract").read_text().splitlines():
        if line.startswith("CONFIG_"):
            key, _, value = line.partition("=")
            out[key] = value
    return out


def vmallocinfo(version: str, module: str, when: str) -> list[VmallocEntry]:
    path = live(version) / "vmallocinfo" / f"{module}.{when}.txt"
    return parse_vmallocinfo(path.read_text(), str(path))


def proc_modules_line(version: str, module: str) -> tuple[int, int]:
    """(size, address) of ``module`` in /proc/modules while it was loaded."""
    text = (live(version) / "modules" / f"{module}.txt").read_text()
    match = re.search(rf"^{module} (\d+) \d+ \S+ Live 0x([0-9a-f]+)", text, re.M)
    assert match, text
    return int(match.group(1)), int(match.group(2), 16)


def sections(version: str, module: str) -> dict[str, int]:
    lines = (live(version) / "sections" / f"{module}.txt").read_text().splitlines()
    return {name: int(addr, 16) for name, addr in (line.split() for line in lines if not line.startswith("#"))}


def vmalloc_start(version: str) -> int:
    """VMALLOC_END - VmallocTotal (kernel-model.md §6 invariant 9)."""
    text = (live(version) / "meminfo.txt").read_text()
    match = re.search(r"^VmallocTotal:\s+(\d+) kB", text, re.M)
    assert match
    return VMALLOC_END - int(match.group(1)) * 1024


def dmesg_fields(version: str, tag: str) -> dict[str, int]:
    """The ``key=hex`` fields of the kh5alloc ``tag`` line in dmesg."""
    text = (live(version) / "dmesg.txt").read_text()
    match = re.search(rf"kh5alloc: {tag} (.*)", text)
    assert match, tag
    fields = re.findall(r"(\w+)=(\w+)", match.group(1))
    return {key: int(value, 10) if key.endswith("count") else int(value, 16) for key, value in fields}
