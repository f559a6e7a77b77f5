"""Real files captured from Debian 5.10 / 6.1 / 6.12 armmp kernels booted in QEMU virt (-m 1024).

tests/data/qemu-virt-<version>/ holds what the guest printed while the module in
tests/data/qemu-virt-kit_h3demo.c was loaded (vmalloc(100) and vmalloc(1025 pages), KTAP output).
The parsers are checked against each other and against kernel rules, never against their own output.
"""

from __future__ import annotations

import pytest

from analysis.parsers import (
    address_state,
    extract_module_ktap,
    meminfo_summary,
    parse_boot_log,
    parse_ktap,
    parse_meminfo,
    parse_proc_modules,
    parse_sections,
    parse_vmallocinfo,
)
from kit.errors import ParseError
from tests.analysis.test_parsers_helpers import QEMU_VERSIONS, qemu_file

PAGE = 4096
RELEASES = {"5.10": "5.10.0-32-armmp", "6.1": "6.1.0-50-armmp", "6.12": "6.12.95+deb12-armmp"}
VERSION_TUPLES = {"5.10": (5, 10, 0), "6.1": (6, 1, 0), "6.12": (6, 12, 95)}
# /proc/modules size of the module (kernel-model.md §3.3; read by eye from modules.txt).
MODULE_SIZES = {"5.10": 16384, "6.1": 16384, "6.12": 12288}
MODULE_TAINTS = {"5.10": "O", "6.1": "OE", "6.12": "OE"}  # 5.10 armmp has no module signing


def _ktap(version: str) -> str:
    return extract_module_ktap(qemu_file(version, "dmesg.txt"), "kit_h3demo", f"qemu-virt-{version}/dmesg.txt")


@pytest.mark.parametrize("version", QEMU_VERSIONS)
def test_boot_log(version: str) -> None:
    boot = parse_boot_log(qemu_file(version, "boot.log"))
    assert boot.release == RELEASES[version]
    assert boot.version == VERSION_TUPLES[version]
    assert boot.cmdline == "console=ttyAMA0 panic=-1"
    assert boot.linux_version is not None and "debian-kernel@lists.debian.org" in boot.linux_version
    assert boot.layout == {}  # removed in v5.1 (commit 1c31d4e96b8c)
    assert boot.memory is not None and boot.memory.total_kb == 1024 * 1024
    assert boot.memory.highmem_kb == 245760 and boot.memory.cma_reserved_kb == 16384


@pytest.mark.parametrize("version", QEMU_VERSIONS)
def test_ktap_from_dmesg(version: str) -> None:
    document = parse_ktap(_ktap(version))
    assert (document.version, document.plan, document.truncated) == (1, 3, False)
    assert [(result.number, result.name, result.ok) for result in document.results] == [
        (1, "layout", True),
        (2, "vmalloc", True),
        (3, "vmalloc_exec", True),
    ]
    skipped = document.results[2]
    assert (skipped.directive, skipped.reason) == ("SKIP", "vmalloc_exec() not in this kernel")
    assert document.results[1].diagnostics["subpage.size"] == "100"
    assert document.diag_int("layout.PAGE_OFFSET") == 0xC0000000
    assert document.diag_int("layout.PAGE_SIZE") == PAGE
    assert document.trailing_diag == {"exit.freed": "2"}  # printed by module_exit, after the last result


@pytest.mark.parametrize("version", QEMU_VERSIONS)
def test_ktap_extraction_drops_other_lines(version: str) -> None:
    ktap = _ktap(version)
    assert "kit:" not in ktap and "kit_h3demo:" not in ktap and "[" not in ktap.split("\n")[0]


def test_ktap_extraction_of_a_module_never_loaded() -> None:
    with pytest.raises(ParseError, match="kit: begin kit_absent"):
        extract_module_ktap(qemu_file("6.1", "dmesg.txt"), "kit_absent")


@pytest.mark.parametrize("version", QEMU_VERSIONS)
def test_vmallocinfo_holds_the_modules_allocations(version: str) -> None:
    document = parse_ktap(_ktap(version))
    entries = {entry.start: entry for entry in parse_vmallocinfo(qemu_file(version, "vmallocinfo.during.txt"))}
    subpage_address, big_address = document.diag_int("subpage.addr"), document.diag_int("big.addr")
    assert subpage_address is not None and big_address is not None
    subpage, big = entries[subpage_address], entries[big_address]
    # vmalloc(100): one page plus the guard page (mm/vmalloc.c __get_vm_area_node).
    assert (subpage.size, subpage.pages, subpage.flags) == (2 * PAGE, 1, frozenset({"vmalloc"}))
    # 1025 pages: the page array (4100 bytes > PAGE_SIZE) is itself vmalloc'ed -> " vpages".
    assert (big.size, big.pages, big.flags) == (1026 * PAGE, 1025, frozenset({"vmalloc", "vpages"}))
    assert subpage_address not in {e.start for e in parse_vmallocinfo(qemu_file(version, "vmallocinfo.after.txt"))}


@pytest.mark.parametrize("version", QEMU_VERSIONS)
def test_vmallocinfo_address_states(version: str) -> None:
    real = parse_vmallocinfo(qemu_file(version, "vmallocinfo.after.txt"))
    hashed = parse_vmallocinfo(qemu_file(version, "vmallocinfo.hashed.txt"))
    zeroed = parse_vmallocinfo(qemu_file(version, "vmallocinfo.zeroed.txt"))
    assert (address_state(real), address_state(hashed), address_state(zeroed)) == ("real", "hashed", "zeroed")
    # Same areas, only the pointers differ.
    assert [(e.size, e.caller, e.flags) for e in real] == [(e.size, e.caller, e.flags) for e in zeroed]


@pytest.mark.parametrize("version", QEMU_VERSIONS)
def test_vmallocinfo_unpurged_trailer(version: str) -> None:
    entries = parse_vmallocinfo(qemu_file(version, "vmallocinfo.before.txt"))
    kinds = [entry.kind for entry in entries]
    first_unpurged = kinds.index("unpurged")
    assert set(kinds[first_unpurged:]) == {"unpurged"}  # show_purge_info prints them last
    assert all(entry.caller is None and entry.pages is None for entry in entries[first_unpurged:])


@pytest.mark.parametrize("version", QEMU_VERSIONS)
def test_vmallocinfo_real_lines_have_consistent_sizes(version: str) -> None:
    for entry in parse_vmallocinfo(qemu_file(version, "vmallocinfo.during.txt")):
        assert entry.end - entry.start == entry.size
        if entry.pages is not None and "vmalloc" in entry.flags and entry.caller != "pcpu_get_vm_areas+0x0/0x1214":
            assert entry.size == (entry.pages + 1) * PAGE  # the guard page


@pytest.mark.parametrize("version", QEMU_VERSIONS)
def test_meminfo_agrees_with_the_modules_layout(version: str) -> None:
    meminfo = meminfo_summary(parse_meminfo(qemu_file(version, "meminfo.txt")))
    document = parse_ktap(_ktap(version))
    start, end = document.diag_int("layout.VMALLOC_START"), document.diag_int("layout.VMALLOC_END")
    assert start is not None and end is not None
    assert meminfo.vmalloc_total_kb == (end - start) >> 10
    assert meminfo.high_total_kb == 262144 and meminfo.low_total_kb is not None
    assert meminfo.mem_total_kb == meminfo.low_total_kb + meminfo.high_total_kb


@pytest.mark.parametrize("version", QEMU_VERSIONS)
def test_proc_modules_and_sections(version: str) -> None:
    (module,) = parse_proc_modules(qemu_file(version, "modules.txt"))
    assert (module.name, module.size, module.refcount, module.users) == (
        "kit_h3demo",
        MODULE_SIZES[version],
        0,
        (),
    )
    assert (module.state, module.taints, module.permanent) == ("Live", MODULE_TAINTS[version], False)
    sections = parse_sections(qemu_file(version, "sections.txt"))
    grepped = parse_sections(qemu_file(version, "sections-grep.txt"))
    assert grepped.items() <= sections.items()
    assert set(sections) - set(grepped) == {"__mcount_loc"}  # the only name without a leading dot
    # The module address is the core base, where .exit.text (first executable pass) starts.
    assert module.address == sections[".exit.text"] == min(sections.values())
