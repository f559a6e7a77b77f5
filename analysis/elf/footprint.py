"""Module memory footprint: where the loader puts every section of a .ko, and how big each region is.

Follows shared/reference/kernel-model.md §3.2-3.4, read from 5.10 kernel/module.c (layout_sections
2477, layout_symtab 2748, layout_and_allocate 3561), 6.1 kernel/module/main.c (layout_sections 1436,
kallsyms.c layout_symtab 110) and 6.12 kernel/module/main.c (__layout_sections 1538,
module_memory_alloc 1194, move_module 2254; kallsyms.c layout_symtab 113).
Version differences are rows of ``LAYOUT_RULES``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from analysis.elf.kallsyms import CoreSymbols, core_symbols
from analysis.elf.loader import read_module_bytes
from analysis.elf.plts import (
    SORT_VARIANT,
    PltCounts,
    count_module_plts,
    frob_arm_plt_sections,
)
from analysis.elf.sections import (
    SHF_ALLOC,
    SHF_EXECINSTR,
    SHF_RO_AFTER_INIT,
    SHF_WRITE,
    ModuleElf,
    Shdr,
    load_module_elf,
)
from kit.errors import ParseError, UserError

PAGE_SIZE = 4096
_IsInit = Callable[[str], bool]

# layout_sections masks (required flags, forbidden flags); ARCH_SHF_SMALL is 0 on arm/x86/arm64.
MASKS: tuple[tuple[int, int], ...] = (
    (SHF_EXECINSTR | SHF_ALLOC, 0),  # m0 text
    (SHF_ALLOC, SHF_WRITE),  # m1 rodata
    (SHF_RO_AFTER_INIT | SHF_ALLOC, 0),  # m2 ro_after_init
    (SHF_WRITE | SHF_ALLOC, 0),  # m3 data, bss, .gnu.linkonce.this_module
    (SHF_ALLOC, 0),  # m4 leftovers
)

# 6.12 enum mod_mem_type order (include/linux/module.h) = move_module allocation order.
MEM_TYPES = ("text", "data", "rodata", "ro_after_init", "init_text", "init_data", "init_rodata")
CORE_PASS_TYPE = ("text", "rodata", "ro_after_init", "data", "data")  # core_m_to_mem_type
INIT_PASS_TYPE = ("init_text", "init_rodata", None, "init_data", "init_data")  # init_m_to_mem_type


@dataclass(frozen=True)
class LayoutRules:
    """One kernel version's module layout."""

    version: tuple[int, int]
    regions: Literal["core_init", "mem_types"]
    # Option that makes debug_align/strict_align PAGE_ALIGN after passes m0, m1, m2, m4 and the symtab:
    # 5.10 debug_align: CONFIG_ARCH_HAS_STRICT_MODULE_RWX (module.c:76); 6.1 strict_align:
    # CONFIG_STRICT_MODULE_RWX (internal.h:34); 6.12 none (module_memory_alloc page-aligns each type).
    pass_align_option: str | None
    page_align_each_region: bool


LAYOUT_RULES: dict[tuple[int, int], LayoutRules] = {
    (5, 10): LayoutRules((5, 10), "core_init", "CONFIG_ARCH_HAS_STRICT_MODULE_RWX", False),
    (6, 1): LayoutRules((6, 1), "core_init", "CONFIG_STRICT_MODULE_RWX", False),
    (6, 12): LayoutRules((6, 12), "mem_types", None, True),
}


@dataclass(frozen=True)
class SectionPlacement:
    """An allocated section: ``region`` base + ``offset`` is its address (/sys/module/M/sections)."""

    name: str
    index: int
    region: str
    offset: int
    size: int

    @property
    def listed_in_sysfs(self) -> bool:
        """add_sect_attrs skips sect_empty() sections: not SHF_ALLOC or size 0."""
        return self.size != 0


@dataclass(frozen=True)
class Region:
    """One module_alloc/execmem_alloc allocation: ``size`` as the kernel records it."""

    name: str
    size: int
    is_init: bool

    @property
    def pages(self) -> int:
        return (self.size + PAGE_SIZE - 1) // PAGE_SIZE

    @property
    def vmalloc_size(self) -> int:
        """The vmallocinfo size column: PAGE_ALIGN(size) plus the guard page."""
        return self.pages * PAGE_SIZE + PAGE_SIZE


@dataclass(frozen=True)
class ExpectedVmallocLine:
    region: str
    size: int
    pages: int
    flags: frozenset[str] = frozenset({"vmalloc"})


@dataclass(frozen=True)
class Footprint:
    """The loader's view of one module on one kernel."""

    version: tuple[int, int, int]
    regions: tuple[Region, ...]  # in allocation order, empty ones included
    sections: tuple[SectionPlacement, ...]  # section-header order
    plts: PltCounts | None
    symbols: CoreSymbols
    this_module_size: int

    @property
    def live_size(self) -> int:
        """/proc/modules size once Live: init sizes are zeroed by do_init_module."""
        return sum(r.size for r in self.regions if not r.is_init)

    def region(self, name: str) -> Region:
        for region in self.regions:
            if region.name == name:
                return region
        raise UserError(f"no module region {name!r}; regions are {[r.name for r in self.regions]}")

    def vmalloc_lines(self, include_init: bool = False) -> list[ExpectedVmallocLine]:
        """The vmallocinfo lines of this module's memory, in allocation order (empty regions skipped)."""
        return [ExpectedVmallocLine(r.name, r.vmalloc_size, r.pages) for r in self.regions
                if r.size and (include_init or not r.is_init)]

    def section_addresses(self, bases: Mapping[str, int]) -> dict[str, int]:
        """/sys/module/M/sections: name -> address, for the regions whose base is given."""
        return {s.name: bases[s.region] + s.offset for s in self.sections
                if s.listed_in_sysfs and s.region in bases}


def predict_footprint(ko: Path, version: tuple[int, int, int], config: Mapping[str, str]) -> Footprint:
    """Predict the module memory layout of ``ko`` on kernel ``version`` built with ``config``."""
    rules = layout_rules_for(version)
    module = load_module_elf(read_module_bytes(ko), str(ko))
    return layout_module(module, version, rules, config)


def layout_rules_for(version: tuple[int, ...]) -> LayoutRules:
    key = (version[0], version[1])
    if key not in LAYOUT_RULES:
        known = ", ".join(f"{a}.{b}" for a, b in LAYOUT_RULES)
        raise UserError(f"no module layout model for kernel {key[0]}.{key[1]}; known: {known}")
    return LAYOUT_RULES[key]


def enabled(config: Mapping[str, str], option: str) -> bool:
    return config.get(option, "n") in ("y", "m")


def is_init_section(name: str, machine: str, module_unload: bool) -> bool:
    """module_init_layout_section: module_init_section, plus module_exit_section without MODULE_UNLOAD.

    ARM overrides both (arch/arm/kernel/module.c 5.10:57-69) to include .ARM.extab/.ARM.exidx.init*/exit*.
    """
    prefixes = [".init"]
    if not module_unload:
        prefixes.append(".exit")
    if machine == "EM_ARM":
        prefixes += [f".ARM.{kind}{p}" for p in list(prefixes) for kind in ("extab", "exidx")]
    return name.startswith(tuple(prefixes))


@dataclass
class _Layout:
    """Mutable tally while laying out: region -> size, section index -> (region, offset)."""

    sizes: dict[str, int]
    placed: dict[int, tuple[str, int]] = field(default_factory=dict)

    def place(self, shdr: Shdr, region: str) -> None:
        """get_offset / module_get_offset_and_type: ALIGN(size, sh_addralign ?: 1), then add sh_size."""
        align = shdr.addralign or 1
        offset = (self.sizes[region] + align - 1) // align * align
        self.sizes[region] = offset + shdr.size
        self.placed[shdr.index] = (region, offset)

    def align(self, region: str, align: int) -> None:
        self.sizes[region] = (self.sizes[region] + align - 1) // align * align


def layout_module(module: ModuleElf, version: tuple[int, int, int], rules: LayoutRules,
                  config: Mapping[str, str]) -> Footprint:
    """layout_and_allocate: arch frob (ARM PLTs), layout_sections, layout_symtab, region alignment."""
    unload = enabled(config, "CONFIG_MODULE_UNLOAD")

    def is_init(name: str) -> bool:
        return is_init_section(name, module.machine, unload)

    plts = None
    if module.machine == "EM_ARM" and enabled(config, "CONFIG_ARM_MODULE_PLTS"):
        l1 = 1 << l1_cache_shift(config)
        fixed = 2 if enabled(config, "CONFIG_DYNAMIC_FTRACE") else 0
        plts = count_module_plts(module, is_init, fixed, SORT_VARIANT[rules.version])
        frob_arm_plt_sections(module, plts, l1)
    if rules.regions == "core_init":
        layout, symbols = _layout_core_init(module, rules, config, is_init)
        names = ["core", "init"]
    else:
        layout, symbols = _layout_mem_types(module, config, is_init)
        names = list(MEM_TYPES)
    if rules.page_align_each_region:
        for name in names:
            layout.align(name, PAGE_SIZE)
    regions = tuple(Region(n, layout.sizes[n], n.startswith("init")) for n in names)
    sections = tuple(SectionPlacement(s.name, s.index, *layout.placed[s.index], s.size)
                     for s in module.sections if s.flags & SHF_ALLOC and s.index in layout.placed)
    this_module = module.find_sec(".gnu.linkonce.this_module")
    return Footprint(version, regions, sections, plts, symbols,
                     module.sections[this_module].size if this_module else 0)


def _unplaced_match(layout: _Layout, shdr: Shdr, mask: tuple[int, int]) -> bool:
    """The layout_sections test: flags match the pass and sh_entsize is still ~0UL (not placed)."""
    return (shdr.flags & mask[0]) == mask[0] and not shdr.flags & mask[1] and shdr.index not in layout.placed


def _layout_core_init(module: ModuleElf, rules: LayoutRules, config: Mapping[str, str],
                      is_init: _IsInit) -> tuple[_Layout, CoreSymbols]:
    """5.10/6.1 layout_sections + layout_symtab (core_layout, init_layout)."""
    assert rules.pass_align_option is not None
    page = PAGE_SIZE if enabled(config, rules.pass_align_option) else 1
    layout = _Layout({"core": 0, "init": 0})
    for region, want_init, aligned_passes in (("core", False, (0, 1, 2, 4)), ("init", True, (0, 1, 4))):
        for m, mask in enumerate(MASKS):
            for shdr in module.sections:
                if _unplaced_match(layout, shdr, mask) and is_init(shdr.name) == want_init:
                    layout.place(shdr, region)
            if m in aligned_passes:
                layout.align(region, page)
    symbols = _layout_symtab(module, layout, config, "core", "init")
    layout.align("core", page)
    layout.align("init", page)
    return layout, symbols


def _layout_mem_types(module: ModuleElf, config: Mapping[str, str],
                      is_init: _IsInit) -> tuple[_Layout, CoreSymbols]:
    """6.12 __layout_sections (core then init) + layout_symtab; no alignment between passes."""
    layout = _Layout(dict.fromkeys(MEM_TYPES, 0))
    for want_init, pass_types in ((False, CORE_PASS_TYPE), (True, INIT_PASS_TYPE)):
        for mask, region in zip(MASKS, pass_types, strict=True):
            for shdr in module.sections:
                if _unplaced_match(layout, shdr, mask) and is_init(shdr.name) == want_init:
                    if region is None:  # WARN_ON_ONCE(type == MOD_INVALID): left for a later pass
                        continue
                    layout.place(shdr, region)
    symbols = _layout_symtab(module, layout, config, "data", "init_data")
    return layout, symbols


def _layout_symtab(module: ModuleElf, layout: _Layout, config: Mapping[str, str], core: str,
                   init: str) -> CoreSymbols:
    """layout_symtab: full .symtab/.strtab to the end of init, the kept core symbols to ``core``."""
    pointer = module.elfclass // 8
    symsect = module.symtab()
    strsect = module.sections[symsect.link]
    symsect.flags |= SHF_ALLOC
    layout.place(symsect, init)
    init_regions = {"init", "init_text", "init_data", "init_rodata"}
    symbols = core_symbols(module, lambda shndx: layout.placed.get(shndx, ("", 0))[0] in init_regions,
                           enabled(config, "CONFIG_KALLSYMS_ALL"))
    sym_size = 16 if module.elfclass == 32 else 24
    layout.align(core, symsect.addralign or 1)
    layout.sizes[core] += symbols.count * sym_size + symbols.strtab_size + symbols.count
    strsect.flags |= SHF_ALLOC
    layout.place(strsect, init)
    layout.align(init, pointer)  # __alignof__(struct mod_kallsyms)
    layout.sizes[init] += 4 * pointer + symbols.total_symbols  # sizeof(mod_kallsyms) + init typetab
    return symbols


def l1_cache_shift(config: Mapping[str, str]) -> int:
    """CONFIG_ARM_L1_CACHE_SHIFT (arch/arm/mm/Kconfig: 5 or 6 by the CPU, 6 when unset)."""
    text = config.get("CONFIG_ARM_L1_CACHE_SHIFT", "6")
    if not (text.isascii() and text.isdigit() and len(text) <= 2):
        raise ParseError("config", None, f"CONFIG_ARM_L1_CACHE_SHIFT={text[:40]!r} is not a cache line shift (5, 6)")
    return int(text)
