"""x86_64 / arm64 / x86-32 invariants (spec §5-6) and the two x86-32 boot logs."""

from __future__ import annotations

from pathlib import Path

from analysis.model.other_arches import (
    Arm64Layout,
    NotModelled,
    X86_32Layout,
    arm64_layout,
    x86_32_layout,
    x86_64_module_range,
    x86_64_vmalloc_base_aligned,
    x86_64_vmalloc_start,
    x86_64_vmalloc_total_kb,
)

DATA = Path(__file__).parent.parent / "data" / "model"
MiB = 1 << 20


def test_x86_64_vmalloc_total() -> None:
    """pgtable_64_types.h VMALLOC_SIZE_TB 32 / 12800, inclusive end (spec §5.1 figures)."""
    assert x86_64_vmalloc_total_kb(4) == 34359738367
    assert x86_64_vmalloc_total_kb(5) == 13743895347199
    assert isinstance(x86_64_vmalloc_total_kb(4, kmsan=True), NotModelled)


def test_x86_64_kaslr_is_not_guessed() -> None:
    assert isinstance(x86_64_vmalloc_start(randomize_memory=True), NotModelled)
    assert x86_64_vmalloc_start(4, randomize_memory=False) == 0xFFFFC90000000000
    assert x86_64_vmalloc_base_aligned(0xFFFFB48000000000)
    assert not x86_64_vmalloc_base_aligned(0xFFFFB48000200000)
    assert x86_64_module_range(kaslr=True) == (0xFFFFFFFFC0000000, 0xFFFFFFFFFF000000)
    assert x86_64_module_range(kaslr=False) == (0xFFFFFFFFA0000000, 0xFFFFFFFFFF000000)


def test_arm64_vmalloc_totals() -> None:
    """spec §5.2 table, VA_BITS=48."""
    totals = {}
    for version in [(5, 10, 223), (6, 1, 176), (6, 12, 95)]:
        layout = arm64_layout(version)
        assert isinstance(layout, Arm64Layout)
        totals[version[:2]] = layout.VmallocTotal_kB
    assert totals == {(5, 10): 135290159040, (6, 1): 133143592960, (6, 12): 135288315904}
    assert isinstance(arm64_layout((6, 6, 0)), NotModelled)
    assert isinstance(arm64_layout((6, 1, 0), va_bits=39), NotModelled)


def test_x86_32_default_reserve_2_6_32() -> None:
    """Ubuntu 2.6.32, 1.5 GB, no vmalloc=: __VMALLOC_RESERVE 128M; VMALLOC_END 0xff7fe000 from the log;
    lowmem 0xc0000000-0xf77fe000, vmalloc 0xf7ffe000 (high_memory + 8M, unrounded)."""
    text = (DATA / "x86-32-ubuntu-2.6.32-1.5gb-highmem.txt").read_text()
    assert "vmalloc : 0xf7ffe000 - 0xff7fe000" in text and "lowmem  : 0xc0000000 - 0xf77fe000" in text
    layout = x86_32_layout(0xFF7FE000, 0x5FFF0 * 4096, "ro quiet splash")  # HighMem (377fe:5fff0)
    assert isinstance(layout, X86_32Layout)
    assert (layout.high_memory, layout.VMALLOC_START) == (0xF77FE000, 0xF7FFE000)
    assert (layout.VMALLOC_END - layout.VMALLOC_START) >> 20 == 120


def test_x86_32_vmalloc_512mb_3_8() -> None:
    """Ubuntu 3.8, 2 GB, vmalloc=512MB: parse_vmalloc -> reserve 520M; vmalloc exactly 512 MB."""
    text = (DATA / "x86-32-ubuntu-3.8.0-2gb-vmalloc512MB-cmdline.txt").read_text()
    assert "vmalloc : 0xdfbfe000 - 0xffbfe000" in text and "lowmem  : 0xc0000000 - 0xdf3fe000" in text
    layout = x86_32_layout(0xFFBFE000, 0x7FFF0 * 4096, "ro quiet splash vmalloc=512MB vt.handoff=7")
    assert isinstance(layout, X86_32Layout)
    assert (layout.high_memory, layout.VMALLOC_START) == (0xDF3FE000, 0xDFBFE000)
    assert layout.VMALLOC_END - layout.VMALLOC_START == 0x20000000   # 512 MiB
    assert layout.high_memory - layout.PAGE_OFFSET == 0x1F3FE000   # "(0001f3fe:0007fff0)"


def test_x86_32_without_vmalloc_end_is_not_modelled() -> None:
    assert isinstance(x86_32_layout(None, 1 << 30), NotModelled)
