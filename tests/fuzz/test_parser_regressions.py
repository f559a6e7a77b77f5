"""The crashes the fuzzers found in analysis/parsers, each as its minimal input (regular tests).

Every one was an exception other than the kit's own: int() refuses decimal strings of more than 4300
digits (ValueError, CPython's integer string conversion limit), and KTAP subtests recursed once per
level of indentation (RecursionError).
"""

from __future__ import annotations

import time

import pytest

from analysis.parsers import (
    parse_boot_log,
    parse_ktap,
    parse_meminfo,
    parse_proc_modules,
    parse_sections,
    parse_vmallocinfo,
)
from kit.errors import ParseError

HUGE = "1" * 4301  # one digit over CPython's int() limit for decimal strings


@pytest.mark.parametrize("line", [
    f"0xf0800000-0xf0803000 {HUGE} start_kernel+0x550/0x748 pages=2 vmalloc",
    f"0xf0800000-0xf0803000   12288 start_kernel+0x550/0x748 pages={HUGE} vmalloc",
    f"0xf0800000-0xf0803000   12288 start_kernel+0x550/0x748 pages=2 vmalloc N0={HUGE}",
    f"0xf0800000-0xf0803000   12288 start_kernel+0x550/0x748 pages=2 vmalloc N{HUGE}=2",
], ids=["size", "pages", "numa-count", "numa-node"])
def test_vmallocinfo_number_too_long_is_a_parse_error(line: str) -> None:
    text = "0xf0803000-0xf0805000    8192 gicv2m_init+0x198/0x4c4 phys=0x08020000 ioremap\n" + line + "\n"
    with pytest.raises(ParseError, match=r"^vmallocinfo\.txt:2: not a vmallocinfo line: '0xf0800000-0xf0803000"):
        parse_vmallocinfo(text, "vmallocinfo.txt")


def test_vmallocinfo_widest_real_numbers_still_parse() -> None:
    (entry,) = parse_vmallocinfo("0xffffffffc0000000-0xffffffffc0002000 18446744073709551615 f pages=4294967295 "
                                 "phys=0x00000000fffff000 ioremap N0=4294967295\n")
    assert (entry.start, entry.size, entry.pages, entry.numa) == (
        0xFFFFFFFFC0000000, 18446744073709551615, 4294967295, {0: 4294967295})


@pytest.mark.parametrize("line", [f"kit_vmalloc {HUGE} 0 - Live 0xbf000000 (O)",
                                  f"kit_vmalloc 12288 {HUGE} - Live 0xbf000000 (O)"], ids=["size", "refcount"])
def test_proc_modules_number_too_long_is_a_parse_error(line: str) -> None:
    with pytest.raises(ParseError, match=r"^modules\.txt:1: not a /proc/modules line: 'kit_vmalloc "):
        parse_proc_modules(line + "\n", "modules.txt")


def test_meminfo_number_too_long_is_a_parse_error() -> None:
    with pytest.raises(ParseError, match=r"^meminfo\.txt:2: not a meminfo line: 'MemFree:  +1111"):
        parse_meminfo(f"MemTotal:        1012580 kB\nMemFree:         {HUGE} kB\n", "meminfo.txt")


def test_sections_address_wider_than_a_pointer_is_a_parse_error() -> None:
    with pytest.raises(ParseError, match=r"^sections\.txt:2: expected '<section> 0x<address>'"):
        parse_sections(".text 0xbf000000\n.data 0x" + "f" * 5000 + "\n", "sections.txt")


def test_ktap_numbers_too_long_are_unknown_lines() -> None:
    document = parse_ktap(f"KTAP version {HUGE}\n1..{HUGE}\nok {HUGE} layout\nok 1 layout\n", "kit.ktap")
    assert (document.version, document.plan, [result.number for result in document.results]) == (None, None, [1])
    assert [number for number, _ in document.unknown_lines] == [1, 2, 3]


def test_ktap_diagnostic_too_long_is_a_parse_error() -> None:
    document = parse_ktap(f"KTAP version 1\n1..1\n# subpage.size={HUGE}\nok 1 subpage\n", "kit.ktap")
    shown = "1" * 40 + "..."
    with pytest.raises(ParseError, match=rf"^kit\.ktap:3: subpage\.size='{shown}' is not an integer "
                                         r"\(0x and 1-16 hex digits, or 1-20 decimal digits\)$"):
        document.diag_int("subpage.size")
    assert parse_ktap("# a=-18446744073709551615\n# b=0xffffffffffffffff\n").diag_int("a") == -(2**64 - 1)


def test_ktap_deep_indentation_is_bounded() -> None:
    text = "KTAP version 1\n1..1\n" + "".join(" " * depth + "# deep.x=1\n" for depth in range(1, 3001)) + "ok 1 deep\n"
    start = time.monotonic()
    document = parse_ktap(text, "kit.ktap")
    assert time.monotonic() - start < 2
    assert document.results[0].name == "deep" and not document.truncated
    level, inner = 0, document.results[0].subtest
    while inner is not None and inner.results:
        level, inner = level + 1, inner.results[0].subtest
    assert level == 0  # subtest blocks without a result line are not results (as before)


def test_boot_log_numbers_too_long_are_not_recognised() -> None:
    log = parse_boot_log(
        f"Linux version {HUGE}.1-armmp (gcc) #1 SMP\n"
        f"Memory: {HUGE}K/1048576K available (8192K kernel code, 0K highmem)\n"
        "Virtual kernel memory layout:\n"
        f"    vmalloc : 0xf0800000 - 0xff800000   ({HUGE} MB)\n"
        f"    lowmem  : 0xc0000000 - 0xf0000000   ( 768 MB)\n",
        "boot.log",
    )
    assert log.release is not None and log.version is None and log.memory is None
    assert log.layout["vmalloc"] == (0xF0800000, 0xFF800000) and "vmalloc" not in log.layout_size_kb
    assert log.layout_size_kb["lowmem"] == 768 * 1024
    memory = parse_boot_log(f"Memory: 1024K/2048K available ({HUGE}K kernel code, 12K highmem)\n").memory
    assert memory is not None and memory.fields == {"highmem": 12}
