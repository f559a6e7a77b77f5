"""ARM layout blocks of real boot logs, reproduced from RAM, command line, version and config.

Each capture (tests/data/model/, copied with its provenance header) prints the kernel's own
"Virtual kernel memory layout:" block; the test renders the model with format_layout_banner
(arch/arm/mm/init.c mem_init format) and compares line by line with what the board printed.
"""

from __future__ import annotations

import re
from pathlib import Path

from analysis.model.banner import format_layout_banner
from analysis.model.layout_arm import ArmConfig, ArmLayout, ArmLayoutInput, arm_layout

DATA = Path(__file__).parent.parent / "data" / "model"
MiB = 1 << 20
BANNER_LINE = re.compile(r"^\s*(vector|fixmap|vmalloc|lowmem|pkmap|modules)\s*:\s*0x[0-9a-f]+ - 0x[0-9a-f]+")


def captured_banner(name: str) -> dict[str, str]:
    """The layout lines of a capture, keyed by region, normalised to the kernel's own spacing."""
    lines: dict[str, str] = {}
    for raw in (DATA / name).read_text().splitlines():
        text = re.sub(r"^[>\s]*(<\d>)?(\[\s*\d+\.\d+\])?", "", raw).rstrip()
        match = BANNER_LINE.match(text)
        if match:
            lines[match.group(1)] = "    " + text.strip().replace("vector :", "vector  :")
    assert lines, f"{name}: no layout block found"
    return lines


def modelled_banner(layout: ArmLayout, *, include_vector: bool = True) -> dict[str, str]:
    text = format_layout_banner(layout, include_vector=include_vector)
    return {line.split(":")[0].strip(): line for line in text.splitlines()[1:]}


def test_granite2_3_18_1gib_at_0_legacy_default() -> None:
    """3.18, 1 GiB at 0, HIGHMEM: legacy VMALLOC_END 0xff000000, lowmem 760 MB (vmalloc_min default
    VMALLOC_END - 240M - 8M; mmu.c sanity_check_meminfo), generic 2 MiB fixmap."""
    layout = arm_layout(ArmLayoutInput((3, 18, 0), ((0, 1024 * MiB),)))
    assert modelled_banner(layout) == captured_banner("arm-marvell-granite2-1gb-3.18-boot-and-modules.txt")
    assert layout.highmem_bytes == 270336 * 1024   # "270336K highmem" in the same log


def test_allwinner_3_4_256mb_no_highmem() -> None:
    """3.4.39, 256 MB at 0x40000000 (fb_base=0x41b00000 lies in it), no HIGHMEM (no pkmap line,
    modules up to PAGE_OFFSET), 3.x fixmap 0xfff00000-0xfffe0000."""
    layout = arm_layout(ArmLayoutInput((3, 4, 39), ((0x40000000, 256 * MiB),),
                                       config=ArmConfig(highmem=False)))
    assert modelled_banner(layout) == captured_banner("arm-allwinner-sun8i-256mb-3.4.39.txt")


def test_vexpress_4_9_vmsplit2g_512mb() -> None:
    """4.9.240 vexpress-a9 (RAM at 0x60000000), VMSPLIT_2G, no HIGHMEM: vmalloc = all above lowmem."""
    layout = arm_layout(ArmLayoutInput((4, 9, 240), ((0x60000000, 512 * MiB),), "console=ttyAMA0",
                                       config=ArmConfig(page_offset=0x80000000, highmem=False)))
    assert modelled_banner(layout) == captured_banner("arm-qemu-vexpress-a9-512mb-4.9.240-vmsplit2g.txt")


def test_fullhan_4_9_mem_36m_replaces_the_banks() -> None:
    """4.9.129 with mem=36M: ARM's early_mem (arch/arm/kernel/setup.c) removes the firmware banks and
    adds [PHYS_OFFSET, +36M). The board's DRAM (0xa0000000, media memory from 0xa2400000 = +36M) is
    larger; lowmem shrinks to 36 MB and vmalloc grows to 976 MB (VmallocTotal 999424 kB in meminfo)."""
    layout = arm_layout(ArmLayoutInput(
        (4, 9, 129), ((0xA0000000, 128 * MiB),), "mem=36M console=ttyS0,115200 root=/dev/mtdblock2",
        config=ArmConfig(highmem=False, vipt_aliasing=True)))
    name = "arm-fullhan-fh8856v200-36mb-4.9.129-boot-meminfo-vmallocinfo.txt"
    assert modelled_banner(layout) == captured_banner(name)
    assert "VmallocTotal:     999424 kB" in (DATA / name).read_text()
    assert layout.VmallocTotal_kB == 999424


def test_kasan_5_4_vmsplit2g_lowmem_spans_memory_holes() -> None:
    """5.4.24 vendor tree, VMSPLIT_2G, HIGHMEM. "Memory: .../922624K" (901 MiB) but lowmem is 1008 MiB:
    the DRAM span ends 1008 MiB above PHYS_OFFSET and 107 MiB of it are holes (DT no-map regions are
    memblock_remove'd in 5.4, so they count in neither total). high_memory follows the end of the
    last bank, not the RAM total. The hole placement below is illustrative; only the span matters.
    Upstream stopped printing the block in 5.1 (commit 1c31d4e96b8c); this vendor tree still prints it,
    without the vector line."""
    banks = ((0x80000000, 800 * MiB), (0x80000000 + 907 * MiB, 101 * MiB))
    layout = arm_layout(ArmLayoutInput((5, 4, 24), banks, config=ArmConfig(page_offset=0x80000000)))
    assert modelled_banner(layout, include_vector=False) == captured_banner(
        "arm-kasan-dev-5.4.24-vmsplit2g-900mb.txt")
    assert layout.lowmem_bytes == 922624 * 1024 and layout.highmem_bytes == 0   # "0K highmem"


def test_florentrevest_4_x_unaligned_lowmem_end() -> None:
    """4.x watch, HIGHMEM, 3G: lowmem ends at 0xdfead000 (not even 2 MiB aligned) because the last
    memblock bank ends there; VMALLOC_START = ALIGN(high_memory + 8M, 8M) = 0xe0000000. RAM total
    457396K is below the span: 74.5 MiB of holes (firmware carve-outs), placement illustrative.
    The exact 4.x release is not in the log; 4.9 is used (VMALLOC_END 0xff800000 in the log)."""
    total, span = 457396 * 1024, 0x1FEAD000
    hole = span - total
    banks = ((0x0, 0x10000000), (0x10000000 + hole, total - 0x10000000))
    layout = arm_layout(ArmLayoutInput((4, 9, 0), banks))
    assert modelled_banner(layout) == captured_banner("gh-FlorentRevest-linux-1-arm-highmem-pkmap-512mb.txt")


def test_technicolor_4_1_vendor_modules_area_is_not_upstream() -> None:
    """4.1-era Broadcom BSP, 256 MB at 0, HIGHMEM. Everything matches the 4.1 model (VMALLOC_END
    0xff000000, 3 MiB fixmap) except the modules line: the vendor moved MODULES_VADDR down to
    0xbec00000 (18 MB). Upstream asm/memory.h has PAGE_OFFSET - 16M; the model keeps upstream."""
    layout = arm_layout(ArmLayoutInput((4, 1, 0), ((0x0, 256 * MiB),)))
    captured = captured_banner("gh-hack-technicolor-233-bcm63138-256mb-modules-18mb.txt")
    modelled = modelled_banner(layout)
    assert {k: v for k, v in modelled.items() if k != "modules"} == \
        {k: v for k, v in captured.items() if k != "modules"}
    assert "0xbec00000 - 0xbfe00000" in captured["modules"]
    assert modelled["modules"] == "    modules : 0xbf000000 - 0xbfe00000   (  14 MB)"
