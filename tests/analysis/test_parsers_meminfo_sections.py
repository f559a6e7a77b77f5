"""/proc/meminfo and /sys/module/M/sections parsing."""

from __future__ import annotations

import pytest

from analysis.parsers import meminfo_summary, parse_meminfo, parse_sections
from kit.errors import ParseError

MEMINFO = """\
MemTotal:        1019988 kB
Active(anon):        992 kB
HighTotal:        262144 kB
LowTotal:         757844 kB
VmallocTotal:     245760 kB
VmallocUsed:         716 kB
HugePages_Total:       0
Hugepagesize:       2048 kB
"""


def test_meminfo_values_and_units() -> None:
    values = parse_meminfo(MEMINFO)
    assert values["Active(anon)"] == 992 and values["HugePages_Total"] == 0 and values["Hugepagesize"] == 2048
    summary = meminfo_summary(values)
    assert (summary.mem_total_kb, summary.low_total_kb, summary.high_total_kb) == (1019988, 757844, 262144)
    vmalloc = (summary.vmalloc_total_kb, summary.vmalloc_used_kb, summary.vmalloc_chunk_kb)
    assert vmalloc == (245760, 716, None)
    assert summary.has_highmem_fields


def test_meminfo_errors() -> None:
    with pytest.raises(ParseError, match=r"meminfo\.txt:2: MemTotal appears twice"):
        parse_meminfo("MemTotal: 1 kB\nMemTotal: 2 kB\n", "meminfo.txt")
    with pytest.raises(ParseError) as caught:
        parse_meminfo("MemTotal: 1 kB\nMemFree: lots\n", "meminfo.txt")
    assert caught.value.line == 2


def test_sections_both_spellings() -> None:
    plain = parse_sections(".text 0xbf000000\n.bss 0xbf002280\n__mcount_loc 0xbf001280\n")
    grep = parse_sections("/sys/module/kit/sections/.text:0xbf000000\n/sys/module/kit/sections/.bss:0xbf002280\n")
    assert plain == {".text": 0xBF000000, ".bss": 0xBF002280, "__mcount_loc": 0xBF001280}
    assert grep == {".text": 0xBF000000, ".bss": 0xBF002280}


def test_sections_skips_dot_directories_and_keeps_zero() -> None:
    text = "# provenance\n.\n..\n/sys/module/kit/sections/..:\n.text 0x00000000\n"
    assert parse_sections(text) == {".text": 0}


def test_sections_conflicting_duplicate() -> None:
    assert parse_sections(".text 0x1\n.text 0x1\n") == {".text": 1}
    with pytest.raises(ParseError, match=r"sections/kit\.txt:2: section \.text listed twice"):
        parse_sections(".text 0x1\n.text 0x2\n", "sections/kit.txt")


def test_sections_malformed() -> None:
    with pytest.raises(ParseError) as caught:
        parse_sections(".text 0x1\n.data\n", "sections/kit.txt")
    assert caught.value.line == 2
