"""model_layout's inputs (issue 12 row 7): bad ones give one UserError line naming the valid range, good
ones give a layout whose regions are all non-empty and in the kernel's order (Documentation/arm/memory.rst).
"""

from __future__ import annotations

import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from analysis.model.banner import format_layout_banner, model_layout
from analysis.model.layout_arm import ArmLayout
from kit.errors import UserError

KiB, MiB, GiB = 1 << 10, 1 << 20, 1 << 30
QEMU_BASE = 0x40000000
VMALLOC_END_6_1 = 0xFF800000      # asm/pgtable.h:52 (5.10, 6.1, 6.12)
DEFAULT_LIMIT_6_1 = VMALLOC_END_6_1 - 240 * MiB - 8 * MiB   # mmu.c vmalloc_size default + VMALLOC_OFFSET


def one_line_error(*args: object, **kwargs: object) -> str:
    with pytest.raises(UserError) as caught:
        model_layout(*args, **kwargs)  # type: ignore[arg-type]
    message = str(caught.value)
    assert message and "\n" not in message
    return message


# --- the four commands ----------------------------------------------------------------------

@pytest.mark.parametrize("ram", ["0", "1", 0, 1, "4097", 2 * MiB - 4 * KiB, -GiB])
def test_ram_below_one_pmd_or_not_whole_pages_is_refused_with_the_range(ram: str | int) -> None:
    message = one_line_error("arm", "6.1", ram)
    assert "multiple of 4K" in message and "at least 2M" in message


def test_ram_base_that_is_no_phys_offset_is_refused() -> None:
    message = one_line_error("arm", "6.1", "1G", ram_base="0xffffffff")
    assert "not a multiple of 2M" in message and "0xffe00000" in message
    assert "0x100000000" not in message            # no suggestion outside the 32-bit physical space


@pytest.mark.parametrize("offset", ["0x1", "0", "0xbf000000", "0x100000000", 0xC0000001])
def test_page_offset_must_be_a_vmsplit_choice(offset: str | int) -> None:
    message = one_line_error("arm", "6.1", "1G", page_offset=offset)
    for value, name in ((0x40000000, "VMSPLIT_1G"), (0x80000000, "VMSPLIT_2G"),
                        (0xB0000000, "VMSPLIT_3G_OPT"), (0xC0000000, "VMSPLIT_3G")):
        assert f"0x{value:08x} ({name})" in message


# --- the valid ranges, at their edges ------------------------------------------------------------------

def test_smallest_ram_is_one_pmd_section_of_lowmem() -> None:
    layout = model_layout("arm", "6.1", 2 * MiB)
    assert layout.lowmem_bytes == 2 * MiB and layout.highmem_bytes == 0
    assert layout.high_memory == 0xC0000000 + 2 * MiB


def test_ram_may_end_exactly_at_4g_without_lpae_but_not_beyond() -> None:
    ((base, size),) = model_layout("arm", "6.1", "3G").banks
    assert base + size == (1 << 32) - 4 * KiB      # memblock_cap_size drops the last page
    message = one_line_error("arm", "6.1", 3 * GiB + 4 * KiB)
    assert "beyond the 4G" in message and "at most 3G" in message and "ARM_LPAE" in message


def test_lpae_reaches_above_4g_up_to_1t() -> None:
    layout = model_layout("arm", "6.1", "4G", config=["ARM_LPAE"])
    assert layout.highmem_bytes == QEMU_BASE + 4 * GiB - (QEMU_BASE + DEFAULT_LIMIT_6_1 - 0xC0000000)
    high = model_layout("arm", "6.1", "2G", ram_base=(1 << 40) - 2 * GiB, config=["ARM_LPAE"])
    assert (1 << 40) - 2 * GiB == high.PHYS_OFFSET
    assert "beyond the 1T" in one_line_error("arm", "6.1", "4G", ram_base=(1 << 40) - 2 * GiB,
                                              config=["ARM_LPAE"])
    assert "below 0x10000000000" in one_line_error("arm", "6.1", "1G", ram_base=1 << 40, config=["ARM_LPAE"])
    assert "below 0x100000000" in one_line_error("arm", "6.1", "1G", ram_base=1 << 32)


@pytest.mark.parametrize(("kernel", "good", "bad", "align"), [
    ("5.10.223", 0x41000000, 0x40200000, "16M"),   # head.S: must be 16MiB aligned
    ("6.1", 0x40200000, 0x40100000, "2M"),         # phys2virt.S: must be 2 MiB aligned
    ("6.12.95", 0x40200000, 0x40001000, "2M"),
])
def test_ram_base_is_phys_offset_and_aligned_as_the_kernel_patches_it(kernel: str, good: int, bad: int,
                                                                      align: str) -> None:
    assert good == model_layout("arm", kernel, "512M", ram_base=good).PHYS_OFFSET
    assert f"not a multiple of {align}" in one_line_error("arm", kernel, "512M", ram_base=bad)


def test_without_patch_phys_virt_a_page_aligned_base_is_enough() -> None:
    layout = model_layout("arm", "6.1", "512M", ram_base=0x40001000, config=["!ARM_PATCH_PHYS_VIRT"])
    assert layout.PHYS_OFFSET == 0x40001000
    assert "multiple of 4K" in one_line_error("arm", "6.1", "512M", ram_base=0x40000800,
                                              config=["!ARM_PATCH_PHYS_VIRT"])


@pytest.mark.parametrize(("offset", "lpae"), [(0x40000000, False), (0x80000000, False), (0xB0000000, False),
                                              (0xC0000000, False), (0x40000000, True), (0xC0000000, True)])
def test_every_vmsplit_lays_out(offset: int, lpae: bool) -> None:
    layout = model_layout("arm", "6.1", "1G", ram_base=0, page_offset=hex(offset),
                          config=["ARM_LPAE"] if lpae else [])
    assert offset == layout.PAGE_OFFSET
    assert (offset - 16 * MiB, offset - 2 * MiB) == (layout.MODULES_VADDR, layout.PKMAP_BASE)


def test_vmsplit_3g_opt_needs_no_lpae() -> None:
    message = one_line_error("arm", "6.1", "1G", page_offset=0xB0000000, config=["ARM_LPAE"])
    assert "VMSPLIT_3G_OPT needs !ARM_LPAE" in message and "0xb0000000 (" not in message
    assert "needs !ARM_LPAE" in one_line_error("arm", "6.1", "1G", config=["ARM_LPAE", "VMSPLIT_3G_OPT"])


@pytest.mark.parametrize("kernel", ["2.6.35", "3.2.99"])
def test_kernels_before_one_vmalloc_end_need_the_machines(kernel: str) -> None:
    assert "give it (e.g. --vmalloc-end 0xf6000000" in one_line_error("arm", kernel, "1G")


@pytest.mark.parametrize("kernel", ["1.0", "0.0.1", "2.4.37"])
def test_kernels_before_2_6_are_not_modelled(kernel: str) -> None:
    assert "the model starts at 2.6" in one_line_error("arm", kernel, "1G")


def test_a_legacy_kernel_reserves_128m_with_the_machines_vmalloc_end() -> None:
    """2.6/3.0-3.2 mmu.c: vmalloc_min = VMALLOC_END - SZ_128M, no VMALLOC_OFFSET; 3.3 on: 240M + 8M. With
    1 GiB at 0x30000000 and a machine VMALLOC_END of 0xf6000000 (s3c2410's mach/vmalloc.h): lowmem stops at
    0xf6000000 - 128M = 0xee000000, VMALLOC_START = 0xee000000 + 8M; on 3.4 (VMALLOC_END 0xff000000) at
    0xff000000 - 248M = 0xef800000."""
    old = model_layout("arm", "2.6.35", "1G", ram_base="0x30000000", vmalloc_end="0xf6000000")
    assert (old.high_memory, old.VMALLOC_START, old.VMALLOC_END) == (0xEE000000, 0xEE800000, 0xF6000000)
    assert any("VMALLOC_END 0xf6000000 given" in note for note in old.notes)
    new = model_layout("arm", "3.4", "1G", ram_base="0x30000000", vmalloc_end="0xf6000000")  # ignored from 3.3
    assert (new.high_memory, new.VMALLOC_END) == (0xEF800000, 0xFF000000)


@pytest.mark.parametrize("kernel", ["", "6", "six", "6.1 rc", "v6.1"])
def test_kernel_text_must_be_a_version(kernel: str) -> None:
    assert "not a kernel version" in one_line_error("arm", kernel, "1G")


# --- config words ------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("words", "expected"), [
    (["HIGHMEN"], "not an option the model reads"),
    (["HIGHMEM=maybe"], "is a bool"),
    (["VMSPLIT_2G", "VMSPLIT_1G"], "both choose the memory split"),
    (["!VMSPLIT_3G"], "the memory split is a choice"),
    (["PAGE_OFFSET"], "give PAGE_OFFSET a value"),
    (["PAGE_OFFSET=lots"], "PAGE_OFFSET is not a number"),
    (["PAGE_OFFSET=0x80000000", "VMSPLIT_1G"], "PAGE_OFFSET given with different values"),
    (["PAGE_OFFSET=0x90000000"], "not one an ARM kernel can have"),
])
def test_config_words_are_checked(words: list[str], expected: str) -> None:
    assert expected in one_line_error("arm", "6.1", "1G", config=words)


def test_page_offset_and_a_different_split_conflict_but_the_same_one_does_not() -> None:
    assert "different values" in one_line_error("arm", "6.1", "1G", page_offset="0x80000000",
                                                 config=["VMSPLIT_1G"])
    agreed = model_layout("arm", "6.1", "1G", page_offset="0x80000000", config=["CONFIG_VMSPLIT_2G=y"])
    assert agreed.PAGE_OFFSET == 0x80000000


def test_known_config_words_keep_working() -> None:
    layout = model_layout("arm", "6.1", "1G", config=["no-HIGHMEM", "THUMB2_KERNEL", "CONFIG_ARM_LPAE=n"])
    assert layout.PKMAP_BASE is None and 0xC0000000 - 8 * MiB == layout.MODULES_VADDR
    assert not layout.config.lpae and not layout.config.highmem and layout.config.thumb2


# --- the command line --------------------------------------------------------------------------------------

@pytest.mark.parametrize("cmdline", ["vmalloc=300X", "vmalloc=", "vmalloc=M", "vmalloc=0x", "mem=lots",
                                     "mem=512M@", "mem=512M@0x4000000q", "mem=512MB@0x40000000", "mem=",
                                     "vmalloc=300M vmalloc=big"])
def test_vmalloc_and_mem_values_must_parse(cmdline: str) -> None:
    assert "on the command line is not" in one_line_error("arm", "6.1", "1G", cmdline=cmdline)


def test_vmalloc_follows_the_kernels_32_bit_unsigned_long_and_its_clamps() -> None:
    """mmu.c early_vmalloc: `unsigned long vmalloc_reserve = memparse(arg, NULL)` on a 32-bit kernel, then
    at least 16M; 6.1's maximum is VMALLOC_END - (PAGE_OFFSET + 32M + 8M)."""
    wrapped = model_layout("arm", "6.1", "3G", cmdline="vmalloc=4G")   # 4G is 0 in 32 bits
    assert wrapped.vmalloc_size_requested == 16 * MiB
    assert wrapped.high_memory == VMALLOC_END_6_1 - 16 * MiB - 8 * MiB
    assert any("vmalloc=4G" in note and "16M" in note for note in wrapped.notes)
    plus = model_layout("arm", "6.1", "3G", cmdline=f"vmalloc={(4 << 10) + 300}M")
    assert plus.vmalloc_size_requested == 300 * MiB
    big = model_layout("arm", "6.1", "3G", cmdline="vmalloc=3G")
    assert big.vmalloc_size_requested == VMALLOC_END_6_1 - (0xC0000000 + 32 * MiB + 8 * MiB)
    assert big.high_memory == 0xC0000000 + 32 * MiB
    assert model_layout("arm", "6.1", "1G", cmdline="vmalloc=300MB").vmalloc_size_requested == 300 * MiB


@pytest.mark.parametrize("cmdline", ["mem=4k", "mem=2044K", "mem=100M@0x80000000", "mem=0",
                                     "mem=100M@0x10000000"])
def test_mem_that_leaves_no_pmd_of_lowmem_is_refused(cmdline: str) -> None:
    one_line_error("arm", "6.1", "1G", cmdline=cmdline)


def test_mem_is_trimmed_like_arm_add_memory() -> None:
    """setup.c arm_add_memory: start rounded up to a page, the part below PHYS_OFFSET dropped."""
    layout = model_layout("arm", "6.1", "1G", cmdline="mem=64M@0x3e000000")
    assert layout.banks == ((QEMU_BASE, 32 * MiB),)


# --- no input gives a negative size or an end below a start -------------------------------------------

BANNER_LINE = re.compile(r"^    (\w+) *: 0x([0-9a-f]{8}) - 0x([0-9a-f]{8})   \( *(\d+) (kB|MB)\)$")


def assert_ordered(layout: ArmLayout) -> None:
    regions = [("modules", layout.MODULES_VADDR, layout.MODULES_END)]
    if layout.PKMAP_BASE is not None:
        regions.append(("pkmap", layout.PKMAP_BASE, layout.PKMAP_BASE + layout.LAST_PKMAP * 4096))
    regions += [("lowmem", layout.PAGE_OFFSET, layout.high_memory),
                ("vmalloc", layout.VMALLOC_START, layout.VMALLOC_END),
                ("fixmap", layout.FIXADDR_START, layout.FIXADDR_END),
                ("vector", layout.VECTORS_BASE, layout.VECTORS_BASE + 4096)]
    for (name, start, end), (_, next_start, _) in zip(regions, [*regions[1:], ("top", 1 << 32, 0)],
                                                      strict=True):
        assert 0 <= start < end <= next_start, (name, hex(start), hex(end), hex(next_start))
    assert 0 < layout.VMALLOC_START - layout.high_memory <= 8 * MiB     # pgtable.h VMALLOC_START rounding
    assert layout.VmallocTotal_kB * 1024 == layout.VMALLOC_END - layout.VMALLOC_START
    assert layout.high_memory - layout.PAGE_OFFSET >= 2 * MiB
    assert layout.lowmem_bytes > 0 and layout.highmem_bytes >= 0
    assert layout.lowmem_bytes + layout.highmem_bytes <= sum(size for _, size in layout.banks)
    shown = format_layout_banner(layout).splitlines()
    assert shown[0] == "Virtual kernel memory layout:"
    for line in shown[1:]:
        match = BANNER_LINE.match(line)
        assert match, line
        start, end, size = int(match.group(2), 16), int(match.group(3), 16), int(match.group(4))
        assert start < end and size == (end - start) >> (10 if match.group(5) == "kB" else 20) and size > 0


SIZES = st.one_of(
    st.integers(min_value=-GiB, max_value=6 * GiB),
    st.integers(min_value=0, max_value=1536).map(lambda mib: mib * MiB),
    st.sampled_from([0, 1, 4095, 4096, 2 * MiB - 4096, 2 * MiB, 32 * MiB, 3 * GiB, 4 * GiB]),
    st.text(alphabet="0123456789xXabcdefkKmMgGB-@ ", max_size=8),
)
BASES = st.one_of(
    st.none(),
    st.integers(min_value=-1, max_value=(1 << 41)),
    st.integers(min_value=0, max_value=2048).map(lambda mib: mib * MiB),
    st.sampled_from([0, 0x1000, 0x200000, 0x1000000, 0x40000000, 0x80000000, 0xFFFFFFFF, 0xFFE00000]),
)
OFFSETS = st.one_of(
    st.none(),
    st.sampled_from([0x40000000, 0x80000000, 0xB0000000, 0xC0000000, 0, 1, 0xBF000000, 0xFFFFFFFF]),
    st.integers(min_value=0, max_value=1 << 33),
)
CMDLINE_WORDS = st.one_of(
    st.builds(lambda size, unit: f"vmalloc={size}{unit}", st.integers(0, 1 << 33),
              st.sampled_from(["", "K", "M", "G"])),
    st.builds(lambda size, unit, start: f"mem={size}{unit}" + (f"@{start:#x}" if start is not None else ""),
              st.integers(0, 4096), st.sampled_from(["", "K", "M", "G"]),
              st.none() | st.integers(0, 1 << 33)),
    st.sampled_from(["vmalloc=junk", "mem=", "console=ttyAMA0", "mem=1G@", "quiet"]),
)
CONFIG_WORDS = st.lists(st.sampled_from(["HIGHMEM", "!HIGHMEM", "ARM_LPAE", "THUMB2_KERNEL", "VMSPLIT_2G",
                                         "VMSPLIT_1G", "VMSPLIT_3G_OPT", "!ARM_PATCH_PHYS_VIRT",
                                         "PAGE_OFFSET=0x80000000", "HIGHMEN"]), max_size=3, unique=True)
KERNELS = st.one_of(
    st.sampled_from(["3.18", "4.9.129", "5.10.0-32-armmp", "5.10.37", "5.10.223", "6.1", "6.12.95", "2.6.35"]),
    st.builds(lambda a, b, c: f"{a}.{b}.{c}", st.integers(0, 9), st.integers(0, 20), st.integers(0, 300)),
    st.text(max_size=6),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(kernel=KERNELS, ram=SIZES, ram_base=BASES, page_offset=OFFSETS,
       cmdline=st.lists(CMDLINE_WORDS, max_size=3).map(" ".join), config=CONFIG_WORDS)
def test_any_input_gives_one_line_of_user_error_or_an_ordered_layout(
        kernel: str, ram: int | str, ram_base: int | None, page_offset: int | None, cmdline: str,
        config: list[str]) -> None:
    try:
        layout = model_layout("arm", kernel, ram, ram_base, cmdline, page_offset, config)
    except UserError as err:
        assert str(err) and "\n" not in str(err)
        return
    assert_ordered(layout)


# Inputs a person could mean: most of them lay out, so the ordering above is exercised on many layouts.
PLAUSIBLE_KERNELS = st.one_of(
    st.sampled_from(["3.4.39", "3.18", "4.9.129", "5.4.24", "5.10.0-32-armmp", "5.10.37", "5.10.223", "6.1",
                     "6.1.0-50-armmp", "6.12.95+deb12-armmp"]),
    st.builds(lambda a, b, c: f"{a}.{b}.{c}", st.integers(3, 7), st.integers(0, 20), st.integers(0, 300)),
)
PLAUSIBLE_RAM = st.one_of(st.integers(512, 1 << 20).map(lambda pages: pages * 4096),
                          st.integers(1, 4096).map(lambda mib: mib * MiB))
PLAUSIBLE_BASE = st.one_of(st.none(), st.integers(0, 255).map(lambda n: n * 16 * MiB),
                           st.integers(0, 2047).map(lambda n: n * 2 * MiB))
PLAUSIBLE_CMDLINE = st.lists(st.one_of(
    st.builds(lambda mib: f"vmalloc={mib}M", st.integers(0, 5000)),
    st.builds(lambda size: f"vmalloc={size:#x}", st.integers(0, 1 << 33)),
    st.builds(lambda mib, start: f"mem={mib}M" + (f"@{start:#x}" if start is not None else ""),
              st.integers(0, 3072), st.none() | st.integers(0, 1 << 32)),
), max_size=2).map(" ".join)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(kernel=PLAUSIBLE_KERNELS, ram=PLAUSIBLE_RAM, ram_base=PLAUSIBLE_BASE,
       page_offset=st.none() | st.sampled_from([0x40000000, 0x80000000, 0xB0000000, 0xC0000000]),
       cmdline=PLAUSIBLE_CMDLINE,
       config=st.lists(st.sampled_from(["!HIGHMEM", "ARM_LPAE", "THUMB2_KERNEL", "!ARM_PATCH_PHYS_VIRT"]),
                       max_size=3, unique=True))
def test_plausible_inputs_lay_out_in_order_or_say_why(
        kernel: str, ram: int, ram_base: int | None, page_offset: int | None, cmdline: str,
        config: list[str]) -> None:
    try:
        layout = model_layout("arm", kernel, ram, ram_base, cmdline, page_offset, config)
    except UserError as err:
        assert str(err) and "\n" not in str(err)
        return
    assert_ordered(layout)
