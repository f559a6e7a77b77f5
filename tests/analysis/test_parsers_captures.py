"""Every shared capture (tests/data/captures, copied with its # provenance) through the parsers.

The expected numbers were read by eye from the capture files, not from parser output.
"""

from __future__ import annotations

import pytest

from analysis.parsers import (
    address_state,
    meminfo_summary,
    parse_boot_log,
    parse_ktap,
    parse_meminfo,
    parse_proc_modules,
    parse_vmallocinfo,
)
from tests.analysis.test_parsers_helpers import (
    ALLWINNER,
    CAPTURES,
    FLORENT,
    FULLHAN,
    GRANITE2,
    KASAN,
    RASPBIAN,
    TECHNICOLOR,
    TEST_VMALLOC,
    VEXPRESS,
    X86_2632,
    capture_sections,
    read_capture,
    without_shell_prompts,
)

X86_38 = "x86-32-ubuntu-3.8.0-2gb-vmalloc512MB-cmdline.txt"
LICHEE = "arm-licheepi-nano-f1c100s-32mb-4.15-ptrval-indented.txt"

# Boot-log facts per capture: (release, {region: (start, end)} subset, {region: size kB} subset).
BOOT_LAYOUTS: dict[str, tuple[str | None, dict[str, tuple[int, int]], dict[str, int]]] = {
    ALLWINNER: (
        "3.4.39",
        {
            "vector": (0xFFFF0000, 0xFFFF1000),
            "fixmap": (0xFFF00000, 0xFFFE0000),
            "vmalloc": (0xD0800000, 0xFF000000),
            "lowmem": (0xC0000000, 0xD0000000),
            "modules": (0xBF000000, 0xC0000000),
            ".bss": (0xC04B7F64, 0xC05510D8),
        },
        {"vmalloc": 744 * 1024, "fixmap": 896, ".bss": 613},
    ),
    FULLHAN: (
        "4.9.129",
        {"vmalloc": (0xC2800000, 0xFF800000), "lowmem": (0xC0000000, 0xC2400000)},
        {"vmalloc": 976 * 1024, "lowmem": 36 * 1024, ".text": 2987},
    ),
    KASAN: (
        "5.4.24",
        {
            "vmalloc": (0xBF800000, 0xFF800000),
            "lowmem": (0x80000000, 0xBF000000),
            "pkmap": (0x7FE00000, 0x80000000),
            "modules": (0x7F000000, 0x7FE00000),
        },
        {"vmalloc": 1024 * 1024, "modules": 14 * 1024},
    ),
    GRANITE2: (
        None,  # the console excerpt has no "Linux version" banner
        {
            "vector": (0xFFFF0000, 0xFFFF1000),
            "fixmap": (0xFFC00000, 0xFFE00000),
            "vmalloc": (0xF0000000, 0xFF000000),
            "lowmem": (0xC0000000, 0xEF800000),
            "pkmap": (0xBFE00000, 0xC0000000),
            "modules": (0xBF000000, 0xBFE00000),
            ".text": (0xC0008000, 0xC05A8D84),
        },
        {"vmalloc": 240 * 1024, "lowmem": 760 * 1024, "pkmap": 2 * 1024, ".bss": 449},
    ),
    VEXPRESS: (
        "4.9.240",
        {"vmalloc": (0xA0800000, 0xFF800000), "modules": (0x7F000000, 0x80000000)},
        {"vmalloc": 1520 * 1024, "lowmem": 512 * 1024},
    ),
    FLORENT: (
        None,
        {"lowmem": (0xC0000000, 0xDFEAD000), "vmalloc": (0xE0000000, 0xFF800000)},
        {"lowmem": 510 * 1024, ".text": 10208},
    ),
    TECHNICOLOR: (
        None,  # the excerpt starts below the header line: a header-less block
        {"modules": (0xBEC00000, 0xBFE00000), "vmalloc": (0xD0800000, 0xFF000000)},
        {"modules": 18 * 1024},
    ),
    X86_2632: (
        None,
        {
            "fixmap": (0xFFF1D000, 0xFFFFF000),
            "pkmap": (0xFF800000, 0xFFC00000),
            "vmalloc": (0xF7FFE000, 0xFF7FE000),
            "lowmem": (0xC0000000, 0xF77FE000),
            ".data": (0xC0591E33, 0xC07A4E88),
        },
        {"fixmap": 904, "pkmap": 4096, "vmalloc": 120 * 1024},
    ),
    X86_38: (
        None,
        {"vmalloc": (0xDFBFE000, 0xFFBFE000), "pkmap": (0xFFC00000, 0xFFE00000)},
        {"vmalloc": 512 * 1024, "lowmem": 499 * 1024, "fixmap": 940},
    ),
}

# Memory: line facts: (available kB, total kB, {field: kB} subset).
MEMORY_LINES: dict[str, tuple[int, int, dict[str, int]]] = {
    ALLWINNER: (161848, 161848, {"reserved": 100296, "highmem": 0}),
    FULLHAN: (31432, 36864, {"kernel code": 2986, "reserved": 5432, "cma-reserved": 0}),
    KASAN: (902460, 922624, {"rwdata": 295, "cma-reserved": 0, "highmem": 0}),  # wrapped over 3 lines
    GRANITE2: (1028396, 1044480, {"reserved": 16084, "highmem": 270336}),
    VEXPRESS: (508864, 524288, {"reserved": 15424, "init": 3072}),
    FLORENT: (370084, 457396, {"cma-reserved": 65536, "highmem": 0}),
    X86_2632: (1534628, 1572800, {"kernel code": 4679, "data": 2124, "highmem": 663496}),
    X86_38: (2048408, 2097088, {"reserved": 48228, "highmem": 1585096}),
}

# Captures that hold no boot log at all.
NO_BOOT_LOG = {RASPBIAN, TEST_VMALLOC}
# Captures kept in their pasted form (indented, quoted...): tests/analysis/test_paste.py reads them.
PASTED = {LICHEE}


def test_every_capture_has_expectations() -> None:
    names = {path.name for path in CAPTURES.glob("*.txt")}
    assert names == set(BOOT_LAYOUTS) | NO_BOOT_LOG | PASTED


def test_every_capture_keeps_its_provenance_header() -> None:
    for path in CAPTURES.glob("*.txt"):
        assert path.read_text().startswith("# source:"), path.name


@pytest.mark.parametrize("name", sorted(BOOT_LAYOUTS))
def test_boot_layout_of_capture(name: str) -> None:
    release, regions, sizes = BOOT_LAYOUTS[name]
    boot = parse_boot_log(read_capture(name), name)
    assert boot.release == release
    for region, span in regions.items():
        assert boot.layout[region] == span, region
    for region, size_kb in sizes.items():
        assert boot.layout_size_kb[region] == size_kb, region
    for region, (start, end) in boot.layout.items():
        assert start is not None and end is not None and start <= end, region


@pytest.mark.parametrize("name", sorted(MEMORY_LINES))
def test_memory_line_of_capture(name: str) -> None:
    available, total, fields = MEMORY_LINES[name]
    memory = parse_boot_log(read_capture(name), name).memory
    assert memory is not None
    assert (memory.available_kb, memory.total_kb) == (available, total)
    for field_name, value in fields.items():
        assert memory.fields[field_name] == value, field_name


@pytest.mark.parametrize("name", sorted(NO_BOOT_LOG))
def test_captures_without_boot_log_give_empty_results(name: str) -> None:
    boot = parse_boot_log(read_capture(name), name)
    assert (boot.release, boot.cmdline, boot.memory, boot.layout) == (None, None, None, {})


def test_region_sizes_agree_with_their_addresses() -> None:
    # The kernel prints (end - start) >> 10 or >> 20; whole-MB regions must match exactly.
    boot = parse_boot_log(read_capture(GRANITE2), GRANITE2)
    for region in ("vmalloc", "lowmem", "pkmap", "modules", "fixmap"):
        start, end = boot.layout[region]
        assert start is not None and end is not None
        assert (end - start) // 1024 == boot.layout_size_kb[region], region


def test_version_tuples_and_cmdlines() -> None:
    allwinner = parse_boot_log(read_capture(ALLWINNER))
    assert allwinner.version == (3, 4, 39)
    assert allwinner.cmdline is not None
    assert allwinner.cmdline.startswith("console=ttyS0,115200 root=/dev/nor1 init=/init loglevel=8")
    assert allwinner.cmdline.endswith("fb_base=0x41b00000 config_size=38092")
    assert allwinner.linux_version is not None and "Linaro GCC 2012.02" in allwinner.linux_version
    assert parse_boot_log(read_capture(VEXPRESS)).cmdline == "console=ttyAMA0"
    x86 = parse_boot_log(read_capture(X86_38))
    assert x86.cmdline is not None and "vmalloc=512MB" in x86.cmdline.split()
    assert parse_boot_log(read_capture(KASAN)).version == (5, 4, 24)


def test_fullhan_vmallocinfo() -> None:
    sections = capture_sections(read_capture(FULLHAN))
    entries = parse_vmallocinfo(sections[3], FULLHAN)
    assert len(entries) == 97  # grep -c '^0x'
    first = entries[0]
    assert (first.start, first.end, first.size, first.pages) == (0xBF000000, 0xBF004000, 16384, 3)
    assert first.caller == "load_module+0x650/0x1aa0" and first.flags == {"vmalloc"}
    dma = entries[10]  # the 11th line
    assert dma.caller == "fh_axi_dma_adapt_probe+0x68/0x314"
    assert dma.phys == 0xE0300000 and dma.flags == {"ioremap"} and dma.pages is None  # "phys=e0300000"
    jpeg = entries[11]
    assert (jpeg.caller, jpeg.caller_module, jpeg.phys) == ("_create_jpg_chan+0xa0/0x2c4", "jpeg", 0xA6E1B000)
    assert {entry.caller for entry in entries if entry.flags == {"user"}} >= {"atomic_pool_init+0x0/0x134"}
    assert [entry.size for entry in entries if entry.size > 20_000_000] == [25382912]
    assert sum(entry.caller_module == "isp" for entry in entries) == 13  # grep -cE '^0x.*\[isp\]'
    assert entries[-1].phys == 0xED000000 and entries[-1].caller == "iotable_init+0x0/0xbc"
    assert address_state(entries) == "real"
    assert all(entry.kind == "area" for entry in entries)


def test_fullhan_meminfo_agrees_with_its_layout_block() -> None:
    sections = capture_sections(read_capture(FULLHAN))
    meminfo = meminfo_summary(parse_meminfo(sections[2], FULLHAN))
    assert meminfo.mem_total_kb == 32256
    assert meminfo.vmalloc_total_kb == 999424
    assert meminfo.vmalloc_used_kb == 0 and meminfo.vmalloc_chunk_kb == 0
    assert meminfo.low_total_kb is None and not meminfo.has_highmem_fields
    start, end = parse_boot_log(sections[1], FULLHAN).layout["vmalloc"]
    assert start is not None and end is not None
    assert (end - start) >> 10 == meminfo.vmalloc_total_kb  # fs/proc/meminfo.c VmallocTotal


def test_fullhan_module_areas_lie_in_the_modules_region() -> None:
    sections = capture_sections(read_capture(FULLHAN))
    start, end = parse_boot_log(sections[1]).layout["modules"]
    assert start is not None and end is not None
    loaded = [entry for entry in parse_vmallocinfo(sections[3]) if entry.caller and "load_module" in entry.caller]
    assert len(loaded) == 8
    assert all(start <= entry.start < entry.end <= end for entry in loaded)


def test_granite2_proc_modules() -> None:
    sections = capture_sections(read_capture(GRANITE2))
    modules = parse_proc_modules(sections[2], GRANITE2)
    assert len(modules) == 26
    galcore = modules[0]
    assert (galcore.name, galcore.size, galcore.refcount, galcore.users) == ("galcore", 161066, 0, ())
    assert (galcore.state, galcore.address, galcore.taints, galcore.permanent) == (
        "Live",
        0xBF27F000,
        "O",
        False,
    )
    ipv6 = modules[1]
    assert (ipv6.refcount, ipv6.users, ipv6.permanent, ipv6.taints) == (20, (), True, "")
    regulator = next(module for module in modules if module.name == "pegmatite_regulator")
    assert regulator.users == ("imagepower", "upc") and regulator.permanent and regulator.refcount == 4
    dmaalloc = next(module for module in modules if module.name == "dmaalloc")
    assert dmaalloc.users == ("laservideo_a0",)
    assert modules[-1].name == "pegmatite_wdt" and modules[-1].address == 0xBF000000
    start, end = parse_boot_log(sections[1]).layout["modules"]
    assert start is not None and end is not None
    assert all(module.address is not None and start <= module.address < end for module in modules)


def test_raspbian_proc_modules() -> None:
    modules = parse_proc_modules(without_shell_prompts(read_capture(RASPBIAN)), RASPBIAN)
    assert len(modules) == 36  # grep -c ' Live '
    by_name = {module.name: module for module in modules}
    assert by_name["configs"].address == 0x7F57F000 and by_name["configs"].size == 49152
    assert by_name["bluetooth"].users == ("bnep", "hci_uart") and by_name["bluetooth"].refcount == 21
    assert by_name["snd_bcm2835"].taints == "C"
    assert by_name["ipv6"].permanent and by_name["ipv6"].refcount == 40 and by_name["ipv6"].users == ()
    assert len(by_name["snd"].users) == 8
    assert all(0x7F000000 <= (module.address or 0) < 0x80000000 for module in modules)


def test_raspbian_shell_prompt_is_reported_when_left_in() -> None:
    from kit.errors import ParseError

    with pytest.raises(ParseError) as caught:
        parse_proc_modules(read_capture(RASPBIAN), RASPBIAN)
    assert caught.value.line == 4 and caught.value.path == RASPBIAN


def test_test_vmalloc_summary_is_not_ktap() -> None:
    document = parse_ktap(read_capture(TEST_VMALLOC), TEST_VMALLOC)
    assert document.results == [] and document.version is None and document.plan is None
    assert not document.truncated
    assert any("Summary: fix_size_alloc_test" in text for _, text in document.unknown_lines)
