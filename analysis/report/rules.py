"""Each number of the ARM layout with the rule that produced it (analysis/model/layout_arm.py, which cites
the kernel: arch/arm/include/asm/{memory,pgtable,fixmap,highmem}.h and arch/arm/mm/mmu.c)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from analysis.model.layout_arm import (
    LAST_PKMAP,
    PAGE_SIZE,
    PMD_SIZE,
    VMALLOC_DEFAULT_SIZE,
    VMALLOC_OFFSET,
    ArmLayout,
    early_params,
    effective_version,
    vmalloc_limit,
)
from analysis.model.versions import ARM_EARLY_VMALLOC, ARM_FIXMAP, ARM_VMALLOC_END
from analysis.parsers import VmallocEntry
from analysis.report.fmt import addr, human

GUARD_RULE = ("Each vmallocinfo area is one page larger than asked: mm/vmalloc.c __get_vm_area_node adds "
              "PAGE_SIZE (a guard page, left unmapped so an overrun faults) unless the caller passes "
              "VM_NO_GUARD; a pages=N area prints (N + 1) x 4 KiB (areas made elsewhere, static iotable maps and "
              "percpu chunks, have none). "
              "Kernels 5.10, 6.1 and 6.12 (__get_vm_area_node at 5.10:2056, 6.1:2545, 6.12:3168, as "
              "analysis/model/allocator.py cites it); 2.6-era kernels added it unconditionally "
              "(\"We always allocate a guard page\").")


@dataclass(frozen=True)
class RuleLine:
    name: str
    value: int
    shown: str      # the value as printed (hex address, size or kB)
    rule: str       # how the kernel derives it, with the inputs' values


def _line(name: str, value: int, rule: str) -> RuleLine:
    return RuleLine(name, value, addr(value), rule)


def _limit_rule(layout: ArmLayout, cmdline: str) -> RuleLine:
    version = effective_version(layout.version)[0]
    style = ARM_EARLY_VMALLOC.value(version)
    asked = early_params(cmdline, "vmalloc")
    size = layout.vmalloc_size_requested if asked else None
    limit = vmalloc_limit(style, size, layout.VMALLOC_END, layout.PAGE_OFFSET, layout.PHYS_OFFSET)
    minus = "VMALLOC_END - size" if style == "min" and asked else "VMALLOC_END - size - VMALLOC_OFFSET"
    ram_end = max(base + size for base, size in layout.banks)
    return _line("arm_lowmem_limit", layout.arm_lowmem_limit,
                 f"min(vmalloc limit {addr(limit)} = {minus} - PAGE_OFFSET + PHYS_OFFSET, end of RAM "
                 f"{addr(ram_end)}) (mmu.c adjust_lowmem_bounds; physical)")


def _size_rule(layout: ArmLayout, cmdline: str) -> RuleLine:
    asked = early_params(cmdline, "vmalloc")
    how = (f"vmalloc={asked[-1]} clamped by mmu.c early_vmalloc to >= 16 MiB and to leave 32 MiB of lowmem"
           if asked else f"the default {human(VMALLOC_DEFAULT_SIZE)} (mmu.c; no vmalloc= on the command line)")
    size = layout.vmalloc_size_requested
    return RuleLine("vmalloc size asked", size, human(size), how)


def layout_rules(layout: ArmLayout, cmdline: str = "") -> list[RuleLine]:
    """One line per layout number, in the order the kernel derives them."""
    version = effective_version(layout.version)[0]
    lay = layout
    split = next((name for name, value in (("VMSPLIT_3G", 0xC0000000), ("VMSPLIT_2G", 0x80000000),
                                           ("VMSPLIT_1G", 0x40000000), ("VMSPLIT_3G_OPT", 0xB0000000))
                  if value == lay.PAGE_OFFSET), "CONFIG_PAGE_OFFSET")
    mod_step = 8 if lay.config.thumb2 else 16
    rules = [
        _line("PAGE_OFFSET", lay.PAGE_OFFSET, f"CONFIG_PAGE_OFFSET ({split}, arch/arm/Kconfig memory split)"),
        _line("PHYS_OFFSET", lay.PHYS_OFFSET, "start of RAM: the lowest memory bank (ARM_PATCH_PHYS_VIRT)"),
        _size_rule(lay, cmdline),
        _limit_rule(lay, cmdline),
        _line("high_memory", lay.high_memory, f"arm_lowmem_limit {addr(lay.arm_lowmem_limit)} - PHYS_OFFSET "
              f"{addr(lay.PHYS_OFFSET)} + PAGE_OFFSET {addr(lay.PAGE_OFFSET)} (__va of the lowmem limit)"),
        _line("VMALLOC_START", lay.VMALLOC_START, f"(high_memory {addr(lay.high_memory)} + "
              f"{human(VMALLOC_OFFSET)}) & ~({human(VMALLOC_OFFSET)} - 1) (asm/pgtable.h VMALLOC_OFFSET)"),
        _line("VMALLOC_END", lay.VMALLOC_END, f"constant: {ARM_VMALLOC_END.row(version).source}"),
        RuleLine("VmallocTotal", lay.VmallocTotal_kB, f"{lay.VmallocTotal_kB} kB",
                 f"(VMALLOC_END - VMALLOC_START) >> 10 = {human(lay.VMALLOC_END - lay.VMALLOC_START)} "
                 "(fs/proc/meminfo.c)"),
        _line("MODULES_VADDR", lay.MODULES_VADDR, f"PAGE_OFFSET - {mod_step} MiB (asm/memory.h"
              + (", THUMB2_KERNEL)" if lay.config.thumb2 else ")")),
        _line("MODULES_END", lay.MODULES_END, f"PAGE_OFFSET - PMD_SIZE ({human(PMD_SIZE)}): room for pkmap "
              "(asm/memory.h, HIGHMEM)" if lay.config.highmem else "PAGE_OFFSET (asm/memory.h, no HIGHMEM)"),
    ]
    if lay.PKMAP_BASE is not None:
        rules += [
            _line("PKMAP_BASE", lay.PKMAP_BASE, f"PAGE_OFFSET - PMD_SIZE ({human(PMD_SIZE)}) (asm/highmem.h)"),
            _line("pkmap end", lay.PKMAP_BASE + LAST_PKMAP * PAGE_SIZE,
                  f"PKMAP_BASE + LAST_PKMAP {LAST_PKMAP} x PAGE_SIZE (PTRS_PER_PTE pages)"),
        ]
    fixmap = ARM_FIXMAP.row(version).source
    rules += [
        _line("FIXADDR_START", lay.FIXADDR_START, f"constant: {fixmap}"),
        _line("FIXADDR_END", lay.FIXADDR_END, f"constant: {fixmap}"),
        _line("FIXADDR_TOP", lay.FIXADDR_TOP, "FIXADDR_END - PAGE_SIZE (asm/fixmap.h)"),
        _line("VECTORS_BASE", lay.VECTORS_BASE, "constant: high vectors (asm/memory.h)"),
        RuleLine("lowmem", lay.lowmem_bytes, human(lay.lowmem_bytes),
                 f"RAM below arm_lowmem_limit {addr(lay.arm_lowmem_limit)}, mapped at PAGE_OFFSET (ZONE_NORMAL)"),
        RuleLine("highmem", lay.highmem_bytes, human(lay.highmem_bytes),
                 "RAM above arm_lowmem_limit (ZONE_HIGHMEM, reached through pkmap/fixmap)"
                 if lay.config.highmem else "0: no CONFIG_HIGHMEM (RAM above the limit is ignored)"),
    ]
    return rules


def guard_count(entries: Sequence[VmallocEntry]) -> tuple[int, int]:
    """(areas with pages=N whose size is (N + 1) pages, areas with pages=N)."""
    counted = [e for e in entries if e.pages is not None]
    return sum(e.size == (e.pages + 1) * PAGE_SIZE for e in counted if e.pages is not None), len(counted)
