"""x86_64, arm64 and x86-32 layout invariants (spec §5-6). Values or NotModelled(reason), never a guess.

x86_64: arch/x86/include/asm/pgtable_64_types.h (VMALLOC_SIZE_TB), page_64_types.h, arch/x86/mm/kaslr.c.
arm64:  arch/arm64/include/asm/memory.h, pgtable.h (VA_BITS=48, 4K pages, no KASAN).
x86-32: arch/x86/include/asm/pgtable_32_areas.h, pgtable_32_types.h (MAXMEM), arch/x86/mm/pgtable_32.c
        parse_vmalloc, arch/x86/mm/init_32.c (max_low_pfn).
"""

from __future__ import annotations

from dataclasses import dataclass

from analysis.model.units import Version, format_version, memparse_prefix

GiB = 1 << 30
TiB = 1 << 40
SZ_1M = 1 << 20


@dataclass(frozen=True)
class NotModelled:
    reason: str


# --- x86_64 ---------------------------------------------------------------------------------------

# VMALLOC_SIZE_TB: 32 TiB (4-level) / 12800 TiB (5-level), VMALLOC_END = VMALLOC_START + size - 1
# (pgtable_64_types.h 5.10:123-142; 6.1/6.12 the same sizes). /proc/meminfo prints
# (VMALLOC_END - VMALLOC_START) >> 10 (fs/proc/meminfo.c), so the inclusive end costs one byte.
X86_64_VMALLOC_SIZE_TB = {4: 32, 5: 12800}
X86_64_DEFAULT_VMALLOC_START = {4: 0xFFFFC90000000000, 5: 0xFFA0000000000000}


def x86_64_vmalloc_total_kb(paging_levels: int = 4, *, kmsan: bool = False) -> int | NotModelled:
    """VmallocTotal in kB for 5.10/6.1/6.12, KASLR or not."""
    if kmsan:
        return NotModelled("KMSAN splits the vmalloc area (a quarter each): not modelled")
    if paging_levels not in X86_64_VMALLOC_SIZE_TB:
        return NotModelled(f"x86_64 has 4- or 5-level paging, not {paging_levels}")
    return ((X86_64_VMALLOC_SIZE_TB[paging_levels] * TiB) - 1) >> 10


def x86_64_vmalloc_start(paging_levels: int = 4, *, randomize_memory: bool = True) -> int | NotModelled:
    """VMALLOC_START: fixed without CONFIG_RANDOMIZE_MEMORY, else vmalloc_base (random)."""
    if randomize_memory:
        return NotModelled("vmalloc_base is randomised by kernel_randomize_memory(); check alignment only")
    return X86_64_DEFAULT_VMALLOC_START.get(paging_levels, NotModelled(f"{paging_levels}-level paging"))


def x86_64_vmalloc_base_aligned(vmalloc_base: int) -> bool:
    """arch/x86/mm/kaslr.c kernel_randomize_memory: each region start moves by a multiple of PUD_SIZE,
    so vmalloc_base is 1 GiB aligned."""
    return vmalloc_base % GiB == 0


def x86_64_module_range(*, kaslr: bool = True, debug_kmap_local_force_map: bool = False) -> tuple[int, int]:
    """MODULES_VADDR = __START_KERNEL_map + KERNEL_IMAGE_SIZE (1 GiB with RANDOMIZE_BASE, else 512 MiB);
    MODULES_END = 0xffffffffff000000 (0xfffffffffe000000 with DEBUG_KMAP_LOCAL_FORCE_MAP, 6.1+)."""
    start_kernel_map = 0xFFFFFFFF80000000
    vaddr = start_kernel_map + (GiB if kaslr else GiB // 2)
    end = 0xFFFFFFFFFE000000 if debug_kmap_local_force_map else 0xFFFFFFFFFF000000
    return vaddr, end


def x86_64_module_load_offset_ok(address: int, *, kaslr: bool = True) -> bool:
    """With KASLR module loads start at MODULES_VADDR + k*4096, 1 <= k <= 1024, fixed per boot
    (5.10 arch/x86/kernel/module.c get_module_load_offset; 6.12 arch/x86/mm/init.c execmem_arch_setup):
    every module address is at or above MODULES_VADDR + 4096 and below MODULES_END."""
    vaddr, end = x86_64_module_range(kaslr=kaslr)
    low = vaddr + (4096 if kaslr else 0)
    return low <= address < end


# --- arm64 (VA_BITS=48, 4K pages, no KASAN) --------------------------------------------------------

@dataclass(frozen=True)
class Arm64Layout:
    MODULES_VADDR: int
    MODULES_END: int
    VMALLOC_START: int
    VMALLOC_END: int
    VmallocTotal_kB: int


# Spec §5.2, from arch/arm64/include/asm/memory.h and pgtable.h of each tree.
_ARM64_48BIT: dict[tuple[int, int], tuple[int, int, int, int]] = {
    (5, 10): (0xFFFF800008000000, 0xFFFF800010000000, 0xFFFF800010000000, 0xFFFFFDFFBFFF0000),
    (6, 1): (0xFFFF800000000000, 0xFFFF800008000000, 0xFFFF800008000000, 0xFFFFFBFFF0000000),
    (6, 12): (0xFFFF800000000000, 0xFFFF800080000000, 0xFFFF800080000000, 0xFFFFFDFFBF800000),
}


def arm64_layout(version: Version, *, va_bits: int = 48, kasan: bool = False) -> Arm64Layout | NotModelled:
    series = version[:2]
    if va_bits != 48 or kasan:
        return NotModelled("arm64 is modelled for VA_BITS=48, 4K pages, no KASAN only")
    if series not in _ARM64_48BIT:
        return NotModelled(f"arm64 {format_version(version)}: only 5.10, 6.1 and 6.12 were read")
    mod_start, mod_end, start, end = _ARM64_48BIT[series]
    return Arm64Layout(mod_start, mod_end, start, end, (end - start) >> 10)


# --- x86-32 ---------------------------------------------------------------------------------------

X86_32_VMALLOC_OFFSET = 8 * SZ_1M        # pgtable_32_areas.h VMALLOC_OFFSET
X86_32_DEFAULT_VMALLOC_RESERVE = 128 * SZ_1M  # arch/x86/mm/pgtable_32.c __VMALLOC_RESERVE


@dataclass(frozen=True)
class X86_32Layout:
    PAGE_OFFSET: int
    high_memory: int
    VMALLOC_START: int
    VMALLOC_END: int
    lowmem_bytes: int
    highmem_bytes: int
    vmalloc_reserve: int


def x86_32_vmalloc_reserve(cmdline: str) -> int:
    """arch/x86/mm/pgtable_32.c parse_vmalloc: `__VMALLOC_RESERVE = memparse(arg) + VMALLOC_OFFSET`
    (the last vmalloc= wins); default 128 MiB."""
    args = [word[len("vmalloc="):] for word in cmdline.split() if word.startswith("vmalloc=")]
    if not args:
        return X86_32_DEFAULT_VMALLOC_RESERVE
    return memparse_prefix(args[-1])[0] + X86_32_VMALLOC_OFFSET


def x86_32_layout(vmalloc_end: int | None, ram_end: int, cmdline: str = "", *,
                  page_offset: int = 0xC0000000, highmem: bool = True) -> X86_32Layout | NotModelled:
    """x86-32 lowmem/vmalloc split. VMALLOC_END = PKMAP_BASE - 2*PAGE_SIZE (HIGHMEM) depends on the
    fixmap size (NR_CPUS, config), so it must be given, e.g. read from a boot log.

    MAXMEM = VMALLOC_END - PAGE_OFFSET - __VMALLOC_RESERVE (pgtable_32_types.h); lowmem ends at
    min(MAXMEM, end of RAM) (init_32.c highmem_pfn_init/lowmem_pfn_init);
    VMALLOC_START = high_memory + VMALLOC_OFFSET, NOT rounded (pgtable_32_areas.h), unlike ARM.
    """
    if vmalloc_end is None:
        return NotModelled("x86-32 VMALLOC_END depends on the fixmap size (NR_CPUS, config): give it")
    reserve = x86_32_vmalloc_reserve(cmdline)
    maxmem = vmalloc_end - page_offset - reserve
    lowmem = min(maxmem, ram_end)
    high_memory = page_offset + lowmem
    return X86_32Layout(page_offset, high_memory, high_memory + X86_32_VMALLOC_OFFSET, vmalloc_end,
                        lowmem, max(0, ram_end - lowmem) if highmem else 0, reserve)

