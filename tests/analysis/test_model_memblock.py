"""RAM that reaches the 4 GiB line on a kernel with a 32-bit phys_addr_t (seen on QEMU virt -m 3072)."""

from __future__ import annotations

from analysis.model.banner import model_layout
from analysis.model.layout_arm import memblock_add


def test_memblock_cap_size_drops_the_last_page_below_4g() -> None:
    # mm/memblock.c memblock_cap_size: size = min(size, PHYS_ADDR_MAX - base) -> end 0xffffffff, PFN_DOWN
    assert memblock_add(0x40000000, 0xC0000000, lpae=False) == (0x40000000, 0xBFFFF000)
    assert memblock_add(0x40000000, 0xC0000000, lpae=True) == (0x40000000, 0xC0000000)
    assert memblock_add(0x40000000, 0x40000000, lpae=False) == (0x40000000, 0x40000000)


def test_3g_guest_has_one_page_less_highmem() -> None:
    # boot log of arm-5.10 -m 3072: "HighMem [mem 0x0000000070000000-0x00000000ffffefff]",
    # /proc/meminfo HighTotal 2359292 kB = (0xfffff000 - 0x70000000) / 1024
    layout = model_layout("arm", "5.10.223", "3G")
    assert layout.highmem_bytes == 0xFFFFF000 - 0x70000000
    assert layout.highmem_bytes // 1024 == 2359292
