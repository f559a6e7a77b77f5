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


def test_x86_64_kaslr_module_base_is_at_least_one_page_above_modules_vaddr() -> None:
    # 5.10 arch/x86/kernel/module.c get_module_load_offset: k in 1..1024 pages above MODULES_VADDR
    from analysis.model.other_arches import x86_64_module_load_offset_ok

    assert not x86_64_module_load_offset_ok(0xFFFFFFFFC0000000)
    assert x86_64_module_load_offset_ok(0xFFFFFFFFC0001000)
    assert not x86_64_module_load_offset_ok(0xFFFFFFFFFF000000)
    assert x86_64_module_load_offset_ok(0xFFFFFFFFA0000000, kaslr=False)
