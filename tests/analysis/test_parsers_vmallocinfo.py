"""Synthetic /proc/vmallocinfo lines for every era's quirks (kernel-model.md §2.5)."""

from __future__ import annotations

import pytest

from analysis.parsers import VmallocEntry, address_state, parse_vmallocinfo
from kit.errors import ParseError


def one(line: str) -> VmallocEntry:
    (entry,) = parse_vmallocinfo(line + "\n", "snippet")
    return entry


def test_plain_vmalloc_line() -> None:
    entry = one("0xf0805000-0xf0807000    8192 hello_init+0x1c/0x1000 [hello] pages=1 vmalloc")
    assert (entry.start, entry.end, entry.size) == (0xF0805000, 0xF0807000, 8192)
    assert (entry.caller, entry.caller_module) == ("hello_init+0x1c/0x1000", "hello")
    assert (entry.pages, entry.phys) == (1, None)
    assert entry.flags == {"vmalloc"} and entry.kind == "area" and entry.numa == {} and entry.line == 1


def test_old_phys_without_0x() -> None:
    assert one("0xc2848000-0xc284d000   20480 fh_probe+0x68/0x314 phys=e0300000 ioremap").phys == 0xE0300000


def test_lpae_phys_is_64_bit() -> None:
    entry = one("0xf0800000-0xf0802000    8192 pl011_probe+0x40/0x100 phys=0x0000000109000000 ioremap")
    assert entry.phys == 0x1_0900_0000 and entry.flags == {"ioremap"}


def test_numa_counts() -> None:
    entry = one("0xffffc90000000000-0xffffc90000005000 20468 alloc_large+0x2a/0x80 pages=4 vmalloc N0=3 N1=1")
    assert entry.numa == {0: 3, 1: 1} and entry.pages == 4 and entry.start == 0xFFFFC90000000000


def test_vm_map_ram_and_unpurged() -> None:
    ram = one("0xf1000000-0xf1400000 4194304 vm_map_ram")
    purged = one("0xf0a00000-0xf0a03000   12288 unpurged vm_area")
    assert (ram.kind, ram.caller, ram.flags) == ("vm_map_ram", None, frozenset())
    assert (purged.kind, purged.caller, purged.size) == ("unpurged", None, 12288)


def test_every_flag_word_in_kernel_order() -> None:
    flags = "ioremap sparse vmalloc vmap user dma-coherent vpages"
    entry = one(f"0xf0800000-0xf0900000 1052672 f+0x0/0x4 pages=256 {flags}")
    assert entry.flags == {"ioremap", "sparse", "vmalloc", "vmap", "user", "dma-coherent", "vpages"}


def test_no_caller() -> None:
    entry = one("0xfee00000-0xff000000 2097152 ioremap")
    assert entry.caller is None and entry.flags == {"ioremap"}
    assert one("0xf0800000-0xf0802000    8192 pages=1 vmalloc").caller is None


def test_raw_address_caller_and_build_id() -> None:
    assert one("0xf082b000-0xf082e000   12288 0xbf0050b0 pages=2 vmalloc").caller == "0xbf0050b0"
    entry = one("0xf0800000-0xf0802000    8192 f+0x1/0x2 [mod 0123abcd] pages=1 vmalloc")
    assert (entry.caller, entry.caller_module) == ("f+0x1/0x2", "mod")


def test_static_mapping_without_guard() -> None:
    entry = one("0xfe000000-0xfe004000   16384 iotable_init+0x0/0xbc phys=e0200000 ioremap")
    assert entry.size == entry.end - entry.start and entry.pages is None


def test_provenance_blank_and_crlf_lines() -> None:
    text = "# source: somewhere\n\n0xf0800000-0xf0802000    8192 f+0x0/0x4 pages=1 vmalloc\r\n  \n"
    (entry,) = parse_vmallocinfo(text)
    assert entry.line == 3 and entry.flags == {"vmalloc"}


def test_leading_spaces_are_tolerated() -> None:
    assert one("   0xf0800000-0xf0802000 8192 f+0x0/0x4 pages=1 vmalloc").pages == 1


@pytest.mark.parametrize(
    "line",
    [
        "0xf0800000 0xf0802000 8192 f",  # no dash
        "f0800000-f0802000 8192 vmalloc",  # no 0x
        "0xf0800000-0xf0802000 vmalloc",  # no size
        "0xf0800000-0xf0802000 8192 f+0x0/0x4 pages=x vmalloc",
        "0xf0800000-0xf0802000 8192 f+0x0/0x4 pages=1 vmalloc bogusflag",
        "Summary: fix_size_alloc_test passed",
    ],
)
def test_malformed_lines_name_file_and_line(line: str) -> None:
    with pytest.raises(ParseError) as caught:
        parse_vmallocinfo(f"0xf0800000-0xf0802000 8192 vmalloc\n{line}\n", "vmallocinfo/kit.during.txt")
    assert (caught.value.path, caught.value.line) == ("vmallocinfo/kit.during.txt", 2)
    assert str(caught.value).startswith("vmallocinfo/kit.during.txt:2: ")


def test_address_state() -> None:
    real = parse_vmallocinfo("0xf0800000-0xf0802000 8192 vmalloc\n0xf0802000-0xf0805000 12288 vmalloc\n")
    zeroed = parse_vmallocinfo("0x00000000-0x00000000 8192 vmalloc\n")
    hashed = parse_vmallocinfo("0x8d244dbc-0x6b1bf3a6 69632 of_iomap+0x50/0x78 phys=0x08000000 ioremap\n")
    assert [address_state(x) for x in (real, zeroed, hashed, [])] == ["real", "zeroed", "hashed", "empty"]


def test_fast_constructor_builds_ordinary_entries() -> None:
    flags = frozenset({"vmalloc"})
    built = VmallocEntry(0xF0800000, 0xF0802000, 8192, "f+0x0/0x4", None, 1, None, flags, "area", {}, 1)
    assert one("0xf0800000-0xf0802000    8192 f+0x0/0x4 pages=1 vmalloc") == built
    with pytest.raises(AttributeError):
        built.size = 1  # type: ignore[misc]
