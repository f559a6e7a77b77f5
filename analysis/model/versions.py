"""Kernel eras as data: which value a layout rule has in which kernel version.

Each table is a list of rows; the row that applies to a version is the last one whose `since` is
<= the version. A row cites where the value comes from. Where the exact first release is not known,
`bracket` gives the interval proven by real trees or boot logs (last version seen with the old value,
first version seen with the new one); a version strictly inside it gets a note in the model output.

Trees read for the "verified" rows: Debian linux-source / linux-headers 5.10.223, 6.1.176, 6.12.95
(arch/arm/include/asm/{pgtable,fixmap,highmem,memory}.h, arch/arm/mm/mmu.c, mm/highmem.c).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Generic, Literal, TypeVar

from analysis.model.units import Version, format_version
from kit.errors import UserError

T = TypeVar("T")


@dataclass(frozen=True)
class Row(Generic[T]):
    since: Version
    value: T
    source: str
    bracket: tuple[Version, Version] | None = None  # (last seen with old value, first seen with this)


@dataclass(frozen=True)
class VersionTable(Generic[T]):
    name: str
    rows: tuple[Row[T], ...]

    def row(self, version: Version) -> Row[T]:
        chosen = [row for row in self.rows if row.since <= version]
        if not chosen:
            raise UserError(f"{self.name}: no data for kernel {format_version(version)}; give a kernel "
                            f"version from {format_version(self.rows[0].since)} on")
        return chosen[-1]

    def value(self, version: Version) -> T:
        return self.row(version).value

    def uncertainty(self, version: Version) -> str | None:
        """A note when `version` lies where the table's boundary is only bracketed, not known."""
        for row in self.rows:
            if row.bracket is None:
                continue
            older, newer = row.bracket
            if older < version < newer:
                chosen = self.row(version)
                shown = f"0x{chosen.value:08x}" if isinstance(chosen.value, int) else repr(chosen.value)
                return (f"{self.name}: kernel {format_version(version)} lies between "
                        f"{format_version(older)} and {format_version(newer)}, where the change "
                        f"happened at an unverified release; assumed {shown} ({chosen.source})")
        return None

    def stable_backport_start(self, version: Version) -> Version | None:
        """The start of a row inside this version's stable series (e.g. the 5.10.38 backport) when the
        version carries no patch level (patch 0, as in Debian ABI names like 5.10.0-32-armmp)."""
        starts = [row.since for row in self.rows
                  if version[2] == 0 and row.since[:2] == version[:2] and row.since[2] > 0]
        return max(starts) if starts else None


# --- ARM VMALLOC_END ------------------------------------------------------------------------------
# arch/arm/include/asm/pgtable.h `#define VMALLOC_END`. Before the per-machine mach/vmalloc.h
# headers were removed, each platform had its own value: not modelled (None).
ARM_VMALLOC_END: VersionTable[int | None] = VersionTable("ARM VMALLOC_END", (
    Row((2, 6, 0), None, "per-machine arch/arm/mach-*/include/mach/vmalloc.h: not modelled"),
    # Single value introduced with the iotable-in-vmalloc work, commit 0536bdf33faf ("ARM: move
    # iotable mappings within the vmalloc region", Nicolas Pitre; cited in the 2021 RMK thread below).
    # Its first release is not verified here; the 3.4.39 Allwinner boot log shows 0xff000000.
    Row((3, 3, 0), 0xFF000000, "asm/pgtable.h VMALLOC_END (3.x: 3.4.39, 3.18 boot logs)",
        bracket=((3, 0, 0), (3, 4, 39))),
    # The commit that moved it to 0xff800000 was NOT found (searched the code/issues corpora for the
    # diff and the subject); boot logs bracket it: 3.18 (granite2) has 0xff000000, 4.9.129 and
    # 4.9.240 have 0xff800000. A 4.1-era vendor BSP still shows 0xff000000. 5.10/6.1/6.12 read.
    Row((4, 2, 0), 0xFF800000, "asm/pgtable.h:52 VMALLOC_END (5.10, 6.1, 6.12); change commit unverified",
        bracket=((3, 18, 0), (4, 9, 129))),
))

# --- ARM default vmalloc reservation -------------------------------------------------------------------
# arch/arm/mm/mmu.c, the lowmem limit when no vmalloc= is given: (size, whether VMALLOC_OFFSET is added).
# 2.6 .. 3.2: `static void * __initdata vmalloc_min = (void *)(VMALLOC_END - SZ_128M);` ("the default is
# 128m", the early_vmalloc comment; read in several copies of 2.6.3x/3.0-era mmu.c). 5.10 has
# `VMALLOC_END - (240 << 20) - VMALLOC_OFFSET`, 6.1/6.12 vmalloc_size = 240 MiB plus VMALLOC_OFFSET in
# adjust_lowmem_bounds. The change to 240 MiB is taken to come with 0536bdf33faf (iotable mappings moved into
# the vmalloc area, the same release as the single VMALLOC_END below); that release is not verified here.
ARM_VMALLOC_DEFAULT: VersionTable[tuple[int, bool]] = VersionTable("ARM default vmalloc reservation", (
    Row((2, 6, 0), (128 << 20, False), "mmu.c vmalloc_min = VMALLOC_END - SZ_128M (2.6, 3.0-3.2)"),
    Row((3, 3, 0), (240 << 20, True), "mmu.c VMALLOC_END - 240M - VMALLOC_OFFSET (5.10; 6.1/6.12 vmalloc_size)",
        bracket=((3, 0, 0), (3, 4, 39))),
))

# --- ARM PHYS_OFFSET alignment (CONFIG_ARM_PATCH_PHYS_VIRT) ------------------------------------------
# head.S computes PHYS_OFFSET from where the image runs and patches PHYS_OFFSET - PAGE_OFFSET into the
# __pv_table stubs; a displacement that is not aligned stops the boot (`bne __error` / deadloop).
# 5.10 arch/arm/kernel/head.S __fixup_pv_table `teq r3, r6, lsl #24 @ must be 16MiB aligned` (Kconfig
# ARM_PATCH_PHYS_VIRT: "the base of physical memory is at a 16MB boundary"); 6.1/6.12
# arch/arm/kernel/phys2virt.S:42 `teq r3, r0, lsl #21 @ must be 2 MiB aligned` after Ard Biesheuvel's
# "[PATCH v2 10/10] ARM: p2v: reduce p2v alignment requirement to 2 MiB" (Message-Id
# 20200921154117.757-11-ardb@kernel.org, 2020-09-21). Merge release not verified here; 5.11 assumed.
ARM_P2V_ALIGN: VersionTable[int] = VersionTable("ARM PHYS_OFFSET alignment", (
    Row((2, 6, 0), 16 << 20, "arch/arm/kernel/head.S __fixup_pv_table (5.10)"),
    Row((5, 11, 0), 2 << 20, "arch/arm/kernel/phys2virt.S __fixup_pv_table (6.1, 6.12)",
        bracket=((5, 10, 223), (6, 1, 0))),
))

# --- ARM early_vmalloc / adjust_lowmem_bounds style ------------------------------------------------
# "min":  arch/arm/mm/mmu.c early_vmalloc sets `vmalloc_min = VMALLOC_END - size` (the 8 MiB
#         VMALLOC_OFFSET only in the static default `VMALLOC_END - 240M - VMALLOC_OFFSET`), and
#         adjust_lowmem_bounds (sanity_check_meminfo before it) uses `vmalloc_min - PAGE_OFFSET + PHYS_OFFSET`
#         (5.10 mmu.c:1144-1188; same shape in 3.x/4.x).
# "size": early_vmalloc stores `vmalloc_size`; adjust_lowmem_bounds uses
#         `VMALLOC_END - vmalloc_size - VMALLOC_OFFSET - PAGE_OFFSET + PHYS_OFFSET`; the max is
#         `VMALLOC_END - (PAGE_OFFSET + 32M + VMALLOC_OFFSET)` (6.1 mmu.c:1163-1208, 6.12 mmu.c:1164-1209).
# Upstream: Russell King's series replying to Yanfei Xu's vmalloc= report, "[PATCH v2 3/6] ARM: change
# vmalloc_min to vmalloc_start" (Message-Id E1lmZSw-0005TI-0s@rmk-PC.armlinux.org.uk, 2021-05-28:
# moves VMALLOC_OFFSET out of the default into adjust_lowmem_bounds and into the vmalloc= maximum)
# and "[PATCH v2 4/6] ARM: change vmalloc_start to vmalloc_size" (E1lmZT1-0005Te-4i@...). The merge
# commit hashes and release were not verified here; 5.10 has the old code, 6.1 the new. 5.14 assumed.
EarlyVmallocStyle = Literal["min", "size"]
ARM_EARLY_VMALLOC: VersionTable[EarlyVmallocStyle] = VersionTable("ARM early_vmalloc", (
    Row((2, 6, 0), "min", "arch/arm/mm/mmu.c early_vmalloc: vmalloc_min (5.10:1144-1171)"),
    Row((5, 14, 0), "size", "arch/arm/mm/mmu.c early_vmalloc: vmalloc_size (6.1:1163-1191); "
        "RMK series 'ARM: change vmalloc_min to vmalloc_start' (May 2021)",
        bracket=((5, 10, 223), (6, 1, 0))),
))


@dataclass(frozen=True)
class FixmapEra:
    start: int            # FIXADDR_START
    end: int              # FIXADDR_END (FIXADDR_TOP = end - PAGE_SIZE)
    kmap_begin: int       # FIX_KMAP_BEGIN index (1 once FIX_EARLYCON_MEM_BASE took index 0)


# arch/arm/include/asm/fixmap.h.
ARM_FIXMAP: VersionTable[FixmapEra] = VersionTable("ARM fixmap", (
    # 3.x private fixmap.h: FIXADDR_START 0xfff00000, FIXADDR_END 0xfffe0000, FIX_KMAP_BEGIN 0
    # (3.4.39 boot log "fixmap : 0xfff00000 - 0xfffe0000 ( 896 kB)").
    Row((2, 6, 0), FixmapEra(0xFFF00000, 0xFFFE0000, 0), "asm/fixmap.h (3.x): 0xfff00000-0xfffe0000"),
    # asm-generic/fixmap.h based header: 0xffc00000-0xffe00000 (granite2 3.18 boot log "2048 kB").
    # Release of the switch not verified (bracketed by the 3.4.39 and 3.18 logs).
    Row((3, 17, 0), FixmapEra(0xFFC00000, 0xFFE00000, 0), "asm/fixmap.h generic-fixmap (3.18 boot log)",
        bracket=((3, 4, 39), (3, 18, 0))),
    # 3 MiB with FIX_EARLYCON_MEM_BASE = 0, FIX_KMAP_BEGIN = 1 (boot logs 4.9.129, 4.9.240, 5.4.24
    # "fixmap : 0xffc00000 - 0xfff00000 (3072 kB)"); release of the change not verified.
    Row((4, 1, 0), FixmapEra(0xFFC00000, 0xFFF00000, 1), "asm/fixmap.h 3 MiB + earlycon slot (4.9 boot logs)",
        bracket=((3, 18, 0), (4, 9, 129))),
    # commit 7a1be318f5795cb66fa0dc86b3ace427fe68057f "ARM: 9012/1: move device tree mapping out of
    # linear region" (Ard Biesheuvel; FDT at 0xff800000, fixmap starts 512 KiB higher), backported to
    # 5.10 stable ("[PATCH stable 5.10 2/3]", Florian Fainelli, 2021-05-09; in 5.10.38 per the spec).
    # Read in 5.10.223 / 6.1 / 6.12 asm/fixmap.h:5-7, enum index 13-17.
    Row((5, 10, 38), FixmapEra(0xFFC80000, 0xFFF00000, 1), "asm/fixmap.h:5-7 after commit 7a1be318f579"),
))


@dataclass(frozen=True)
class KmapSlots:
    mechanism: Literal["percpu", "task"]   # who owns the fixmap slot stack
    per_cpu: int                           # KM_TYPE_NR (percpu) or KM_MAX_IDX (task)
    per_cpu_debug: int                     # the same with CONFIG_DEBUG_KMAP_LOCAL
    step_debug: int                        # KM_INCR with CONFIG_DEBUG_KMAP_LOCAL (1 otherwise)


# 5.10: arch/arm/include/asm/kmap_types.h:8 KM_TYPE_NR 16, arch/arm/mm/highmem.c kmap_atomic_high_prot
#       `type = kmap_atomic_idx_push(); idx = FIX_KMAP_BEGIN + type + KM_TYPE_NR * smp_processor_id()`.
# 6.1/6.12: include/asm-generic/kmap_size.h:7-9 KM_MAX_IDX 16 (33 with DEBUG_KMAP_LOCAL), KM_INCR 2 with
#       it; mm/highmem.c kmap_local_idx_push `current->kmap_ctrl.idx += KM_INCR; return idx - 1` and
#       kmap_local_calc_idx `idx + KM_MAX_IDX * smp_processor_id()`. kmap_local_page() appeared in 5.11.
ARM_KMAP_SLOTS: VersionTable[KmapSlots] = VersionTable("ARM kmap_atomic/kmap_local slots", (
    Row((2, 6, 0), KmapSlots("percpu", 16, 16, 1), "asm/kmap_types.h KM_TYPE_NR (5.10:8)"),
    Row((5, 11, 0), KmapSlots("task", 16, 33, 2), "asm-generic/kmap_size.h KM_MAX_IDX (6.1:7-9)"),
))

# Module memory layout (spec §3.2): 5.10 kernel/module.c layout_sections (debug_align = PAGE_ALIGN iff
# ARCH_HAS_STRICT_MODULE_RWX); 6.1 kernel/module/main.c (strict_align iff STRICT_MODULE_RWX);
# 6.12 kernel/module/main.c __layout_sections with mod->mem[type]. Boundaries between the three trees
# are not verified (6.4 for mod->mem is assumed).
ModuleLayoutStyle = Literal["debug_align", "strict_align", "mod_mem"]
MODULE_LAYOUT: VersionTable[ModuleLayoutStyle] = VersionTable("module layout", (
    Row((2, 6, 0), "debug_align", "kernel/module.c layout_sections (5.10:2477)"),
    Row((6, 0, 0), "strict_align", "kernel/module/main.c layout_sections (6.1:1436)",
        bracket=((5, 10, 223), (6, 1, 0))),
    Row((6, 4, 0), "mod_mem", "kernel/module/main.c __layout_sections (6.12:1538)",
        bracket=((6, 1, 192), (6, 12, 0))),
))

# Lazy purge list (spec §2.3): 5.10 llist LIFO (mm/vmalloc.c free_vmap_area_noflush 5.10:1411),
# 6.1 address-sorted and merged (6.1:1881), 6.12 per-node sorted (6.12:2411). Boundaries unverified.
LazyPurgeStyle = Literal["llist_lifo", "sorted_merged", "per_node_sorted"]
LAZY_PURGE: VersionTable[LazyPurgeStyle] = VersionTable("vmalloc lazy purge", (
    Row((2, 6, 0), "llist_lifo", "mm/vmalloc.c free_vmap_area_noflush (5.10:1411)"),
    Row((5, 11, 0), "sorted_merged", "mm/vmalloc.c free_vmap_area_noflush (6.1:1881)",
        bracket=((5, 10, 223), (6, 1, 0))),
    Row((6, 9, 0), "per_node_sorted", "mm/vmalloc.c free_vmap_area_noflush (6.12:2411)",
        bracket=((6, 1, 192), (6, 12, 0))),
))

# The "Virtual kernel memory layout:" block of arch/arm/mm/init.c mem_init, removed by commit
# 1c31d4e96b8c "ARM: 8820/1: mm: Stop printing the virtual memory layout" (v5.1 per the spec; the
# commit is cited by Kees Cook, 2020-02-29, and YueHaibing's init.c cleanup). Vendor trees may keep it.
ARM_PRINTS_LAYOUT_BANNER: VersionTable[bool] = VersionTable("ARM layout banner", (
    Row((2, 6, 0), True, "arch/arm/mm/init.c mem_init pr_notice (4.x)"),
    Row((5, 1, 0), False, "removed by commit 1c31d4e96b8c (ARM: 8820/1)"),
))

ARM_LAYOUT_TABLES: tuple[VersionTable[Any], ...] = (ARM_VMALLOC_END, ARM_EARLY_VMALLOC, ARM_FIXMAP)
