"""ARM 32-bit kernel virtual memory layout, computed the way the kernel computes it at boot.

Order of events in `setup_arch()` (arch/arm/kernel/setup.c, 5.10/6.1/6.12 alike):
  1. RAM banks from DT/ATAGs; `mem=` (early_mem) replaces them; `vmalloc=` (early_vmalloc) sets the size.
  2. adjust_lowmem_bounds() -> arm_lowmem_limit, high_memory, memblock_limit.
  3. arm_memblock_init(); without HIGHMEM, RAM above memblock_limit is removed ("Ignoring RAM at").
  4. adjust_lowmem_bounds() again (setup.c 6.1:1149 and 1152), on the possibly reduced memblock.
Everything else (VMALLOC_START, modules, pkmap, fixmap) follows from macros in arch/arm/include/asm.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from analysis.model.units import Version, format_size, format_version, memparse_prefix
from analysis.model.versions import (
    ARM_EARLY_VMALLOC,
    ARM_FIXMAP,
    ARM_LAYOUT_TABLES,
    ARM_VMALLOC_DEFAULT,
    ARM_VMALLOC_END,
    EarlyVmallocStyle,
)
from kit.errors import UserError

PAGE_SIZE = 0x1000
PMD_SIZE = 0x200000          # asm/pgtable-2level.h PMD_SHIFT 21; LPAE pgtable-3level.h the same
SZ_1M = 0x100000
VMALLOC_OFFSET = 8 * SZ_1M    # asm/pgtable.h:50 (all versions)
VMALLOC_DEFAULT_SIZE = 240 * SZ_1M  # arch/arm/mm/mmu.c vmalloc_min / vmalloc_size default
VMALLOC_MIN_SIZE = 16 * SZ_1M       # arch/arm/mm/mmu.c early_vmalloc "vmalloc area too small"
LAST_PKMAP = 512             # asm/highmem.h LAST_PKMAP = PTRS_PER_PTE (512, 2-level and LPAE)
VECTORS_BASE = 0xFFFF0000    # asm/memory.h VECTORS_BASE (high vectors)
ULONG_MAX = 0xFFFFFFFF
PHYS_MASK_SHIFT_LPAE = 40    # asm/pgtable-3level-hwdef.h:74 "40-bit physical address supported"

# CONFIG_PAGE_OFFSET per split, arch/arm/Kconfig (6.1:1101-1118): the "Memory split" choice is the only
# way to set it on an MMU kernel; VMSPLIT_3G_OPT `depends on !ARM_LPAE`.
VMSPLIT_PAGE_OFFSET = {
    "VMSPLIT_3G": 0xC0000000, "VMSPLIT_3G_OPT": 0xB0000000,
    "VMSPLIT_2G": 0x80000000, "VMSPLIT_1G": 0x40000000,
}
VMSPLIT_NOT_WITH_LPAE = frozenset({"VMSPLIT_3G_OPT"})

# The first kernel with one VMALLOC_END for every machine: older ones are not modelled.
ARM_FIRST_MODELLED: Version = min(row.since for row in ARM_VMALLOC_END.rows if row.value is not None)


def vmsplit_choices(lpae: bool) -> dict[str, int]:
    """The VMSPLIT_* choices (and their PAGE_OFFSET) Kconfig offers with or without ARM_LPAE."""
    return {name: value for name, value in VMSPLIT_PAGE_OFFSET.items()
            if not (lpae and name in VMSPLIT_NOT_WITH_LPAE)}


def phys_addr_limit(lpae: bool) -> int:
    """The end of the physical address space: 4 GiB with a 32-bit phys_addr_t (!LPAE, no
    CONFIG_PHYS_ADDR_T_64BIT), 1 TiB with LPAE (40-bit output addresses)."""
    return 1 << (PHYS_MASK_SHIFT_LPAE if lpae else 32)

Bank = tuple[int, int]  # (physical base, size in bytes)


@dataclass(frozen=True)
class ArmConfig:
    """The .config facts the layout depends on (defaults: Debian armmp)."""

    page_offset: int = 0xC0000000
    highmem: bool = True
    thumb2: bool = False
    lpae: bool = False
    vipt_aliasing: bool = False   # cache_is_vipt_aliasing(): like !HIGHMEM (mmu.c adjust_lowmem_bounds)


@dataclass(frozen=True)
class ArmLayoutInput:
    version: Version
    banks: tuple[Bank, ...]
    cmdline: str = ""
    config: ArmConfig = ArmConfig()
    phys_offset: int | None = None   # default: lowest bank base (ARM_PATCH_PHYS_VIRT finds the RAM start)
    vmalloc_end: int | None = None   # a pre-3.3 machine's own VMALLOC_END (mach/vmalloc.h); later: ignored


@dataclass(frozen=True)
class ArmLayout:
    version: Version
    PAGE_OFFSET: int
    PHYS_OFFSET: int
    high_memory: int
    VMALLOC_START: int
    VMALLOC_END: int
    VmallocTotal_kB: int
    MODULES_VADDR: int
    MODULES_END: int
    PKMAP_BASE: int | None          # None without HIGHMEM
    LAST_PKMAP: int
    FIXADDR_START: int
    FIXADDR_END: int
    FIXADDR_TOP: int
    FIX_KMAP_BEGIN: int
    VECTORS_BASE: int
    arm_lowmem_limit: int           # physical
    memblock_limit: int             # physical, PMD aligned
    vmalloc_size_requested: int     # after early_vmalloc clamps
    lowmem_bytes: int               # RAM in ZONE_NORMAL (memblock memory, NOMAP excluded)
    highmem_bytes: int              # RAM in ZONE_HIGHMEM
    banks: tuple[Bank, ...]         # memblock memory after mem= and "Ignoring RAM"
    nomap: tuple[Bank, ...]
    config: ArmConfig
    notes: tuple[str, ...] = field(default=())


# --- reading the .config --------------------------------------------------------------------------

def _enabled(config: Mapping[str, str], name: str) -> bool:
    return config.get(name, config.get("CONFIG_" + name, "n")) in ("y", "m")


def arm_config_from_kconfig(config: Mapping[str, str]) -> ArmConfig:
    """ArmConfig from a .config as a dict ("CONFIG_HIGHMEM" -> "y", "CONFIG_PAGE_OFFSET" -> "0xC0000000").

    Keys may be given with or without the CONFIG_ prefix. PAGE_OFFSET comes from CONFIG_PAGE_OFFSET,
    else from the VMSPLIT_* choice, else 0xC0000000 (the Kconfig default, VMSPLIT_3G).
    """
    raw = config.get("CONFIG_PAGE_OFFSET", config.get("PAGE_OFFSET"))
    if raw is not None:
        page_offset, rest = memparse_prefix(raw.strip())
        if rest:
            raise UserError(f"CONFIG_PAGE_OFFSET={raw!r} is not a number")
    else:
        chosen = [value for name, value in VMSPLIT_PAGE_OFFSET.items() if _enabled(config, name)]
        page_offset = chosen[0] if chosen else VMSPLIT_PAGE_OFFSET["VMSPLIT_3G"]
    return ArmConfig(
        page_offset=page_offset,
        highmem=_enabled(config, "HIGHMEM"),
        thumb2=_enabled(config, "THUMB2_KERNEL"),
        lpae=_enabled(config, "ARM_LPAE"),
    )


# --- command line ---------------------------------------------------------------------------------

def early_params(cmdline: str, name: str) -> list[str]:
    """Values of every `name=` on the command line, in order (init/main.c do_early_param calls the
    handler once per occurrence, so the last one wins for vmalloc= and all of them apply for mem=)."""
    prefix = name + "="
    return [word[len(prefix):] for word in cmdline.split() if word.startswith(prefix)]


def early_vmalloc(arg: str, version: Version, page_offset: int, vmalloc_end: int) -> int:
    """arch/arm/mm/mmu.c early_vmalloc: the clamped vmalloc size (all versions:
    `unsigned long vmalloc_reserve = memparse(arg, NULL)`, so the u64 is cut to 32 bits (vmalloc=4G
    is 0); then >= 16M; maximum `VMALLOC_END - (PAGE_OFFSET + 32M)` with vmalloc_min (5.10 and older)
    or `VMALLOC_END - (PAGE_OFFSET + 32M + VMALLOC_OFFSET)` with vmalloc_size (6.1, 6.12))."""
    size = memparse_prefix(arg)[0] & ULONG_MAX
    size = max(size, VMALLOC_MIN_SIZE)
    style = ARM_EARLY_VMALLOC.value(version)
    reserve = 32 * SZ_1M + (VMALLOC_OFFSET if style == "size" else 0)
    return min(size, vmalloc_end - (page_offset + reserve))


def machine_vmalloc_end(inp: ArmLayoutInput, notes: list[str]) -> int:
    """arch/arm/include/asm/pgtable.h VMALLOC_END from 3.3 on; before, each machine's mach/vmalloc.h: the
    caller gives it (``invoke model --vmalloc-end``, or the capture's printed vmalloc line)."""
    value = ARM_VMALLOC_END.value(inp.version)
    if value is not None:
        return value
    if inp.vmalloc_end is None:
        raise UserError(f"ARM kernel {format_version(inp.version)} takes VMALLOC_END from the machine's "
                        "mach/vmalloc.h: give it (e.g. --vmalloc-end 0xf6000000, or a capture whose layout block "
                        f"prints the vmalloc line); single value from {format_version(ARM_FIRST_MODELLED)} on")
    notes.append(f"VMALLOC_END 0x{inp.vmalloc_end:08x} given (kernel {format_version(inp.version)}: the machine's "
                 "mach/vmalloc.h; its platform may also override VMALLOC_START, which the model does not know)")
    return inp.vmalloc_end


def vmalloc_limit(style: EarlyVmallocStyle, size: int | None, vmalloc_end: int,
                  page_offset: int, phys_offset: int, version: Version = (6, 1, 0)) -> int:
    """Physical address where lowmem must stop (adjust_lowmem_bounds, u64 arithmetic).

    "min" (5.10:1144/1188 and legacy sanity_check_meminfo): `vmalloc_min - PAGE_OFFSET + PHYS_OFFSET`
    with vmalloc_min = VMALLOC_END - 240M - VMALLOC_OFFSET by default, VMALLOC_END - size with vmalloc=.
    "size" (6.1:1208, 6.12): `VMALLOC_END - vmalloc_size - VMALLOC_OFFSET - PAGE_OFFSET + PHYS_OFFSET`.
    """
    if size is None:
        default, with_offset = ARM_VMALLOC_DEFAULT.value(version)
        vmalloc_min = vmalloc_end - default - (VMALLOC_OFFSET if with_offset else 0)
    elif style == "min":
        vmalloc_min = vmalloc_end - size
    else:
        vmalloc_min = vmalloc_end - size - VMALLOC_OFFSET
    return vmalloc_min - page_offset + phys_offset


# --- memory banks ---------------------------------------------------------------------------------

def _merge(banks: Sequence[Bank]) -> list[Bank]:
    """memblock_add merges adjacent and overlapping regions; regions are kept sorted."""
    merged: list[list[int]] = []
    for base, size in sorted(banks):
        if merged and base <= merged[-1][0] + merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], base + size - merged[-1][0])
        else:
            merged.append([base, size])
    return [(base, size) for base, size in merged if size > 0]


def arm_add_memory(start: int, size: int, phys_offset: int, lpae: bool) -> Bank | None:
    """arch/arm/kernel/setup.c arm_add_memory (6.1:753): page-align, clip to 32 bits without
    PHYS_ADDR_T_64BIT (LPAE), drop what lies below PHYS_OFFSET. None if nothing is left."""
    aligned = (start + PAGE_SIZE - 1) & ~(PAGE_SIZE - 1)
    size = 0 if aligned > start + size else size - (aligned - start)
    if not lpae:
        if aligned > ULONG_MAX:
            return None
        if aligned + size > ULONG_MAX:
            size = ULONG_MAX - aligned
    if aligned < phys_offset:
        if aligned + size <= phys_offset:
            return None
        size -= phys_offset - aligned
        aligned = phys_offset
    size &= ~(PAGE_SIZE - 1)
    return (aligned, size) if size else None


def memblock_add(base: int, size: int, lpae: bool) -> Bank | None:
    """DT memory banks reach memblock through memblock_add (drivers/of/fdt.c early_init_dt_add_memory_arch),
    whose memblock_cap_size (mm/memblock.c, 5.10/6.1/6.12) keeps base + size below PHYS_ADDR_MAX: with a
    32-bit phys_addr_t (!LPAE) a bank ending at 4 GiB loses its last byte, so its last page (PFN_DOWN of
    the end) is not RAM. QEMU virt with -m 3072: RAM 0x40000000-0xffffefff, HighMem one page short."""
    phys_addr_max = (1 << 64) - 1 if lpae else ULONG_MAX
    size = min(size, phys_addr_max - base)
    end = (base + size) & ~(PAGE_SIZE - 1)
    return (base, end - base) if end > base else None


def apply_early_mem(banks: Sequence[Bank], cmdline: str, phys_offset: int, lpae: bool) -> list[Bank]:
    """arch/arm/kernel/setup.c early_mem (6.1:819): the first `mem=size[@start]` removes every bank,
    each one then adds [start (default PHYS_OFFSET), +size). ARM's mem= is not the generic memblock cap."""
    args = early_params(cmdline, "mem")
    if not args:
        return list(banks)
    added: list[Bank] = []
    for arg in args:
        size, rest = memparse_prefix(arg)
        start = memparse_prefix(rest[1:])[0] if rest.startswith("@") else phys_offset
        bank = arm_add_memory(start, size, phys_offset, lpae)
        if bank is not None:
            added.append(bank)
    return _merge(added)


# --- adjust_lowmem_bounds -------------------------------------------------------------------------

@dataclass(frozen=True)
class LowmemBounds:
    arm_lowmem_limit: int
    memblock_limit: int
    nomap: tuple[Bank, ...]


def first_bank_nomap(banks: Sequence[Bank]) -> list[Bank]:
    """adjust_lowmem_bounds (6.1:1211-1220, 5.10 alike): a first bank not PMD aligned gets
    [start, round_up(start, 2M)) marked MEMBLOCK_NOMAP."""
    if not banks or banks[0][0] % PMD_SIZE == 0:
        return []
    base, size = banks[0]
    return [(base, min(size, -base % PMD_SIZE))]


def usable_ranges(banks: Sequence[Bank], nomap: Sequence[Bank]) -> list[tuple[int, int]]:
    """for_each_mem_range: memblock memory minus NOMAP regions, as [start, end) pairs."""
    ranges: list[tuple[int, int]] = []
    for base, size in banks:
        start, end = base, base + size
        for hole_base, hole_size in nomap:
            if hole_base <= start < hole_base + hole_size:
                start = min(end, hole_base + hole_size)
        if start < end:
            ranges.append((start, end))
    return ranges


def adjust_lowmem_bounds(banks: Sequence[Bank], limit: int) -> LowmemBounds:
    """arch/arm/mm/mmu.c adjust_lowmem_bounds (5.10:1175, 6.1:1195, 6.12:1196; sanity_check_meminfo
    before 4.12 gives the same bounds): lowmem ends at min(vmalloc limit, end of the last bank that
    starts below it); memblock_limit is the first non-PMD-aligned bank edge, rounded down to 2 MiB."""
    nomap = first_bank_nomap(banks)
    lowmem_limit = 0
    memblock_limit = 0
    for start, end in usable_ranges(banks, nomap):
        if start >= limit:
            continue
        if end > lowmem_limit:
            lowmem_limit = min(limit, end)
        if not memblock_limit:
            if start % PMD_SIZE:
                memblock_limit = start
            elif end % PMD_SIZE:
                memblock_limit = lowmem_limit
    memblock_limit = (memblock_limit or lowmem_limit) & ~(PMD_SIZE - 1)
    return LowmemBounds(lowmem_limit, memblock_limit, tuple(nomap))


def ignore_ram_above(banks: Sequence[Bank], memblock_limit: int) -> list[Bank]:
    """adjust_lowmem_bounds, !HIGHMEM or VIPT aliasing cache: memblock_remove(memblock_limit, end)."""
    kept: list[Bank] = []
    for base, size in banks:
        end = min(base + size, memblock_limit)
        if end > base:
            kept.append((base, end - base))
    return kept


# --- the layout -----------------------------------------------------------------------------------

def modules_range(config: ArmConfig) -> tuple[int, int]:
    """asm/memory.h: MODULES_VADDR = PAGE_OFFSET - 16M (THUMB2_KERNEL: - 8M); MODULES_END =
    PAGE_OFFSET - PMD_SIZE with HIGHMEM (room for pkmap), else PAGE_OFFSET (5.10:44-60, 6.1:55-71)."""
    vaddr = config.page_offset - (8 if config.thumb2 else 16) * SZ_1M
    end = config.page_offset - PMD_SIZE if config.highmem else config.page_offset
    return vaddr, end


def vmalloc_start(high_memory: int) -> int:
    """asm/pgtable.h:51 VMALLOC_START = (high_memory + VMALLOC_OFFSET) & ~(VMALLOC_OFFSET - 1)."""
    return (high_memory + VMALLOC_OFFSET) & ~(VMALLOC_OFFSET - 1)


def _split_bytes(ranges: Sequence[tuple[int, int]], limit: int) -> tuple[int, int]:
    low = sum(max(0, min(end, limit) - start) for start, end in ranges)
    high = sum(max(0, end - max(start, limit)) for start, end in ranges)
    return low, high


def effective_version(version: Version) -> tuple[Version, list[str]]:
    """A version without a stable patch level (X.Y.0, e.g. Debian's 5.10.0-32-armmp, really 5.10.223)
    is taken as the newest stable release a table distinguishes in that series, with a note."""
    notes = []
    for table in ARM_LAYOUT_TABLES:
        backport = table.stable_backport_start(version)
        if backport is not None and backport > version:
            notes.append(f"kernel {format_version(version)} has no stable patch level; assumed >= "
                         f"{format_version(backport)} for {table.name} ({table.row(backport).source})")
            version = backport
    notes += [note for table in ARM_LAYOUT_TABLES if (note := table.uncertainty(version))]
    return version, notes


def _require_lowmem(banks: Sequence[Bank], bounds: LowmemBounds, phys_offset: int, limit: int) -> None:
    """A layout the kernel can boot needs lowmem, and at least one whole 2 MiB section of it below
    memblock_limit: adjust_lowmem_bounds rounds memblock_limit down to PMD_SIZE and
    memblock_set_current_limit() confines the early allocations (page tables) to it."""
    ranges = [(start, end) for start, end in usable_ranges(banks, bounds.nomap) if start < limit]
    if not ranges or bounds.memblock_limit <= ranges[0][0]:
        lowmem = sum(min(end, limit) - start for start, end in ranges)
        raise UserError(f"RAM leaves {format_size(lowmem)} of usable lowmem below 0x{limit:08x} (PHYS_OFFSET "
                        f"0x{phys_offset:08x}), less than the one {format_size(PMD_SIZE)} section (PMD_SIZE) "
                        f"the kernel's early allocations need; give at least {format_size(PMD_SIZE)} of RAM "
                        "at PHYS_OFFSET")


def _show_banks(banks: Sequence[Bank]) -> str:
    return ", ".join(f"{format_size(size)}@0x{base:x}" for base, size in banks)


def _require_order(regions: Sequence[tuple[str, int, int]]) -> None:
    """Every region non-empty, inside the 32-bit address space, each one ending at or below the start
    of the next (the order of Documentation/arm/memory.rst and asm/memory.h)."""
    for (name, start, end), following in zip(regions, [*regions[1:], None], strict=True):
        if not 0 <= start < end <= ULONG_MAX + 1 or (following is not None and end > following[1]):
            raise UserError(f"the model gives an impossible layout: {name} {start:#010x}-{end:#010x}"
                            + (f" runs into {following[0]} at {following[1]:#010x}" if following else "")
                            + "; check PAGE_OFFSET, the RAM banks and vmalloc=")


def arm_layout(inp: ArmLayoutInput) -> ArmLayout:
    """The whole ARM layout for one kernel version, RAM description, command line and config."""
    if not inp.banks:
        raise UserError("no RAM banks given: give at least one (base, size)")
    version, notes = effective_version(inp.version)
    vmalloc_end = machine_vmalloc_end(inp, notes)
    cfg = inp.config
    banks = [b for b in (memblock_add(base, size, cfg.lpae) for base, size in _merge(inp.banks)) if b]
    if not banks:
        raise UserError(f"no whole page of RAM in the banks {_show_banks(inp.banks)} (memblock_add keeps "
                        f"whole pages below {format_size(phys_addr_limit(cfg.lpae))}); give RAM of at least "
                        f"{format_size(PAGE_SIZE)}")
    phys_offset = banks[0][0] if inp.phys_offset is None else inp.phys_offset
    banks = apply_early_mem(banks, inp.cmdline, phys_offset, cfg.lpae)
    if not banks:
        raise UserError(f"no RAM left after mem= in {inp.cmdline!r} (setup.c arm_add_memory drops what "
                        f"lies below PHYS_OFFSET 0x{phys_offset:08x} or is under a page); give "
                        "mem=SIZE[@START] with a SIZE of at least 4K at or above PHYS_OFFSET")
    vmalloc_args = early_params(inp.cmdline, "vmalloc")
    size = None
    if vmalloc_args:
        size = early_vmalloc(vmalloc_args[-1], version, cfg.page_offset, vmalloc_end)
        asked = memparse_prefix(vmalloc_args[-1])[0]
        if asked != size:
            notes.append(f"vmalloc={vmalloc_args[-1]}: early_vmalloc uses {format_size(size)} (mmu.c: "
                         "a 32-bit unsigned long, clamped to at least 16M and to leave 32M of lowmem)")
    style = ARM_EARLY_VMALLOC.value(version)
    limit = vmalloc_limit(style, size, vmalloc_end, cfg.page_offset, phys_offset, version)
    bounds = adjust_lowmem_bounds(banks, limit)
    if not cfg.highmem or cfg.vipt_aliasing:
        banks = ignore_ram_above(banks, bounds.memblock_limit)
        bounds = adjust_lowmem_bounds(banks, limit)
    _require_lowmem(banks, bounds, phys_offset, limit)
    high_memory = bounds.arm_lowmem_limit - phys_offset + cfg.page_offset
    start = vmalloc_start(high_memory)
    fixmap = ARM_FIXMAP.value(version)
    modules_vaddr, modules_end = modules_range(cfg)
    pkmap_base = cfg.page_offset - PMD_SIZE if cfg.highmem else None
    _require_order((
        ("modules", modules_vaddr, modules_end),
        *((("pkmap", pkmap_base, pkmap_base + LAST_PKMAP * PAGE_SIZE),) if pkmap_base is not None else ()),
        ("lowmem", cfg.page_offset, high_memory),
        ("vmalloc", start, vmalloc_end),
        ("fixmap", fixmap.start, fixmap.end),
        ("vector", VECTORS_BASE, VECTORS_BASE + PAGE_SIZE),
    ))
    lowmem_bytes, highmem_bytes = _split_bytes(usable_ranges(banks, bounds.nomap), bounds.arm_lowmem_limit)
    return ArmLayout(
        version=inp.version, PAGE_OFFSET=cfg.page_offset, PHYS_OFFSET=phys_offset, high_memory=high_memory,
        VMALLOC_START=start, VMALLOC_END=vmalloc_end, VmallocTotal_kB=(vmalloc_end - start) >> 10,
        MODULES_VADDR=modules_vaddr, MODULES_END=modules_end,
        PKMAP_BASE=pkmap_base, LAST_PKMAP=LAST_PKMAP,
        FIXADDR_START=fixmap.start, FIXADDR_END=fixmap.end, FIXADDR_TOP=fixmap.end - PAGE_SIZE,
        FIX_KMAP_BEGIN=fixmap.kmap_begin, VECTORS_BASE=VECTORS_BASE,
        arm_lowmem_limit=bounds.arm_lowmem_limit, memblock_limit=bounds.memblock_limit,
        vmalloc_size_requested=ARM_VMALLOC_DEFAULT.value(version)[0] if size is None else size,
        lowmem_bytes=lowmem_bytes, highmem_bytes=highmem_bytes if cfg.highmem else 0,
        banks=tuple(banks), nomap=bounds.nomap, config=cfg, notes=tuple(notes),
    )
