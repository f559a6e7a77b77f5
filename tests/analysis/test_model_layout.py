"""ARM layout model: spec §1.5 worked examples, live QEMU facts, vmalloc=/mem= rules, units."""

from __future__ import annotations

import pytest

from analysis.model.banner import layout_json, model_layout
from analysis.model.layout_arm import (
    ArmConfig,
    ArmLayoutInput,
    adjust_lowmem_bounds,
    arm_config_from_kconfig,
    arm_layout,
    early_vmalloc,
)
from analysis.model.units import parse_kernel_version, parse_size
from kit.errors import UserError

MiB = 1 << 20
GiB = 1 << 30


# kernel-model.md §1.5 (1 GiB RAM, VMSPLIT_3G, HIGHMEM; PHYS_OFFSET 0 and 0x40000000), every row:
# (version, cmdline, lowmem limit at P=0, high_memory, VMALLOC_START, VMALLOC_END,
#  VmallocTotal kB, highmem MB)
SPEC_1_5 = [
    ((3, 18, 0), "", 0x2F800000, 0xEF800000, 0xF0000000, 0xFF000000, 245760, 264),
    ((3, 18, 0), "vmalloc=300M", 0x2C400000, 0xEC400000, 0xEC800000, 0xFF000000, 303104, 316),
    ((5, 10, 223), "", 0x30000000, 0xF0000000, 0xF0800000, 0xFF800000, 245760, 256),
    ((5, 10, 223), "vmalloc=300M", 0x2CC00000, 0xECC00000, 0xED000000, 0xFF800000, 303104, 308),
    ((6, 1, 176), "", 0x30000000, 0xF0000000, 0xF0800000, 0xFF800000, 245760, 256),
    ((6, 1, 176), "vmalloc=300M", 0x2C400000, 0xEC400000, 0xEC800000, 0xFF800000, 311296, 316),
    ((6, 12, 95), "", 0x30000000, 0xF0000000, 0xF0800000, 0xFF800000, 245760, 256),
    ((6, 12, 95), "vmalloc=300M", 0x2C400000, 0xEC400000, 0xEC800000, 0xFF800000, 311296, 316),
]


@pytest.mark.parametrize("phys", [0x0, 0x40000000])
@pytest.mark.parametrize(("version", "cmdline", "limit", "high", "vstart", "vend", "total_kb", "high_mb"),
                         SPEC_1_5)
def test_spec_worked_examples(phys: int, version: tuple[int, int, int], cmdline: str, limit: int,
                              high: int, vstart: int, vend: int, total_kb: int, high_mb: int) -> None:
    """mmu.c early_vmalloc + adjust_lowmem_bounds, pgtable.h VMALLOC_START, per era."""
    layout = arm_layout(ArmLayoutInput(version, ((phys, GiB),), cmdline))
    assert layout.arm_lowmem_limit == phys + limit
    assert (layout.high_memory, layout.VMALLOC_START, layout.VMALLOC_END) == (high, vstart, vend)
    assert layout.VmallocTotal_kB == total_kb
    assert layout.lowmem_bytes == high - 0xC0000000
    assert layout.highmem_bytes == high_mb * MiB


# debian-kernels.md "Live layout seen" (5.10/6.1/6.12, armmp and armmp-lpae, -m 1024, RAM at 0x40000000).
@pytest.mark.parametrize("kernel", ["5.10.223", "6.1.176", "6.12.95+deb12-armmp"])
@pytest.mark.parametrize("lpae", [False, True])
def test_live_qemu_virt_1g(kernel: str, lpae: bool) -> None:
    config = ("ARM_LPAE",) if lpae else ()
    layout = model_layout("arm", kernel, "1024M", config=config)
    assert layout_json(layout) == {
        "PAGE_OFFSET": "0xc0000000", "high_memory": "0xf0000000", "VMALLOC_START": "0xf0800000",
        "VMALLOC_END": "0xff800000", "VmallocTotal_kB": 245760, "MODULES_VADDR": "0xbf000000",
        "MODULES_END": "0xbfe00000", "PKMAP_BASE": "0xbfe00000", "FIXADDR_START": "0xffc80000",
        "lowmem_bytes": 768 * MiB, "highmem_bytes": 262144 * 1024,   # HighTotal 262144 kB
    }
    assert layout.LAST_PKMAP == 512


def test_live_qemu_virt_2g_hightotal() -> None:
    """-m 2048: HighTotal 1310720 kB was seen; no boot-time reservation lands in highmem there."""
    assert model_layout("arm", "6.1", "2G").highmem_bytes == 1310720 * 1024


def test_debian_abi_name_without_patch_level_gets_the_backported_fixmap() -> None:
    """5.10.0-32-armmp is 5.10.223: fixmap moved in 5.10.38 (commit 7a1be318f579)."""
    layout = model_layout("arm", "5.10.0-32-armmp", "1G")
    assert layout.FIXADDR_START == 0xFFC80000 and layout.FIXADDR_TOP == 0xFFEFF000
    assert any("5.10.38" in note for note in layout.notes)
    assert arm_layout(ArmLayoutInput((5, 10, 37), ((0x40000000, GiB),))).FIXADDR_START == 0xFFC00000


# mmu.c early_vmalloc clamps: >= 16M; <= VMALLOC_END - (PAGE_OFFSET + 32M) (5.10) or
# VMALLOC_END - (PAGE_OFFSET + 32M + VMALLOC_OFFSET) (6.1+). 3 GiB LPAE RAM so vmalloc= is the limit.
@pytest.mark.parametrize(("version", "arg", "size", "expected_start"), [
    ((5, 10, 223), "1M", 16 * MiB, 0xFF000000),        # hm = VEND - 16M = 0xfe800000 -> 8 MiB area
    ((6, 1, 176), "1M", 16 * MiB, 0xFE800000),         # hm = VEND - 16M - 8M -> 16 MiB area
    ((5, 10, 223), "2G", 984 * MiB, 0xC2800000),       # lowmem 32 MiB, area 976 MiB
    ((6, 1, 176), "2G", 976 * MiB, 0xC2800000),
    ((6, 12, 95), "0x40000000", 976 * MiB, 0xC2800000),
    ((3, 18, 0), "2G", 976 * MiB, 0xC2800000),         # legacy VEND 0xff000000 - 0xc2000000
])
def test_vmalloc_clamps(version: tuple[int, int, int], arg: str, size: int, expected_start: int) -> None:
    vend = 0xFF000000 if version < (4, 0, 0) else 0xFF800000
    assert early_vmalloc(arg, version, 0xC0000000, vend) == size
    layout = arm_layout(ArmLayoutInput(version, ((0x40000000, 3 * GiB),), f"vmalloc={arg}",
                                       config=ArmConfig(lpae=True)))
    assert expected_start == layout.VMALLOC_START
    assert layout.high_memory - layout.PAGE_OFFSET >= 32 * MiB


def test_last_vmalloc_wins() -> None:
    """init/main.c do_early_param runs the handler per occurrence: the last vmalloc= wins."""
    layout = model_layout("arm", "6.1", "1G", cmdline="vmalloc=128M vmalloc=256M")
    assert layout.VmallocTotal_kB == 256 * 1024


def test_mem_at_start_and_page_alignment() -> None:
    """setup.c early_mem/arm_add_memory: mem=size@start, start page-aligned up, size down."""
    layout = arm_layout(ArmLayoutInput((6, 1, 176), ((0x40000000, GiB),),
                                       "mem=100M@0x40000000 mem=0x10000800@0x60000800"))
    # second bank: start 0x60000800 -> 0x60001000; size 0x10000800 - 0x800 = 0x10000000 (page multiple)
    assert layout.banks == ((0x40000000, 100 * MiB), (0x60001000, 0x10000000))


def test_unaligned_first_bank_gets_nomap_head() -> None:
    """adjust_lowmem_bounds: the first bank's head up to the next 2 MiB is MEMBLOCK_NOMAP; lowmem
    (and memblock_limit) still end at the RAM end; the head is not counted as RAM."""
    bounds = adjust_lowmem_bounds([(0x40100000, 63 * MiB)], 0x70000000)
    assert bounds.nomap == ((0x40100000, MiB),)
    assert bounds.arm_lowmem_limit == 0x44000000
    layout = arm_layout(ArmLayoutInput((6, 1, 176), ((0x40100000, 63 * MiB),), phys_offset=0x40000000))
    assert layout.lowmem_bytes == 62 * MiB
    assert layout.high_memory == 0xC4000000


def test_no_highmem_drops_ram_above_memblock_limit() -> None:
    """!HIGHMEM: "Ignoring RAM at" removes [memblock_limit, end); the second adjust_lowmem_bounds
    (setup.c 6.1:1152) then ends lowmem at the PMD-rounded memblock_limit."""
    layout = arm_layout(ArmLayoutInput((6, 1, 176), ((0x40000000, GiB),), "vmalloc=301M",
                                       config=ArmConfig(highmem=False)))
    # vmalloc limit = 0xff800000 - 301M - 8M = 0xec300000 (virt), 1 MiB aligned -> rounded to 2 MiB
    assert layout.high_memory == 0xEC200000
    assert layout.highmem_bytes == 0 and layout.PKMAP_BASE is None
    assert layout.MODULES_END == 0xC0000000


def test_thumb2_and_vmsplit_config() -> None:
    """memory.h: THUMB2_KERNEL puts MODULES_VADDR at PAGE_OFFSET - 8M; Kconfig VMSPLIT_3G_OPT = 0xB0000000."""
    config = arm_config_from_kconfig({"CONFIG_VMSPLIT_3G_OPT": "y", "CONFIG_HIGHMEM": "y",
                                      "CONFIG_THUMB2_KERNEL": "y"})
    layout = arm_layout(ArmLayoutInput((6, 1, 176), ((0x40000000, GiB),), config=config))
    assert (layout.MODULES_VADDR, layout.MODULES_END) == (0xAF800000, 0xAFE00000)
    # spec §1.5 cross-check: VMSPLIT_3G_OPT with 1 GiB gives lowmem 0xb0000000-0xf0000000 (1024 MB)
    assert layout.high_memory == 0xF0000000 and layout.highmem_bytes == 0


def test_512m_cross_check() -> None:
    """spec §1.5: 512 MiB RAM gives vmalloc 0xe0800000 - 0xff800000 (496 MB)."""
    layout = model_layout("arm", "6.1", "512M")
    assert (layout.VMALLOC_START, layout.VmallocTotal_kB) == (0xE0800000, 496 * 1024)


def test_other_arch_is_not_modelled() -> None:
    with pytest.raises(UserError, match="not modelled"):
        model_layout("x86_64", "6.1", "1G")


def test_pre_3_3_arm_needs_the_machines_vmalloc_end() -> None:
    with pytest.raises(UserError, match=r"takes VMALLOC_END from the machine's mach/vmalloc\.h"):
        model_layout("arm", "2.6.35", "256M")


@pytest.mark.parametrize(("text", "value"), [
    ("1G", GiB), ("1024M", GiB), ("300M", 300 * MiB), ("0x40000000", GiB), ("512k", 512 * 1024),
    ("512K", 512 * 1024), ("512MB", 512 * MiB), ("010", 8), ("4096", 4096),
])
def test_parse_size_memparse(text: str, value: int) -> None:
    """lib/cmdline.c memparse: base-0 number, binary suffixes."""
    assert parse_size(text) == value


@pytest.mark.parametrize("text", ["", "G", "1X", "one", "1 G", "-1M", "0x"])
def test_parse_size_rejects_junk(text: str) -> None:
    with pytest.raises(UserError):
        parse_size(text)


@pytest.mark.parametrize(("text", "version"), [
    ("3.18", (3, 18, 0)), ("6.1.0-50-armmp", (6, 1, 0)), ("5.10.223", (5, 10, 223)),
    ("6.12.95+deb12-armmp", (6, 12, 95)), ("4.9.129", (4, 9, 129)),
])
def test_parse_kernel_version(text: str, version: tuple[int, int, int]) -> None:
    assert parse_kernel_version(text) == version


@pytest.mark.parametrize("text", ["", "six", "6", "v6.1", "6.x"])
def test_parse_kernel_version_rejects_junk(text: str) -> None:
    with pytest.raises(UserError):
        parse_kernel_version(text)
