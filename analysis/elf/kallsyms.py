"""Core kallsyms sizing: layout_symtab / is_core_symbol.

5.10 kernel/module.c:2715-2796, 6.1 kernel/module/kallsyms.c:73-159, 6.12 kernel/module/kallsyms.c:78-163
(identical rule): symbol 0 plus every named symbol defined in an SHF_ALLOC, non-init section that is
executable (any allocated section with CONFIG_KALLSYMS_ALL, which also keeps .data..percpu symbols)
is copied to the core part; livepatch modules keep every symbol. Each kept symbol costs
sizeof(ElfN_Sym), its name plus NUL in the strtab, and one typetab byte.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from analysis.elf.sections import SHF_ALLOC, SHF_EXECINSTR, ModuleElf

SHN_UNDEF = 0


@dataclass(frozen=True)
class CoreSymbols:
    count: int         # ndst
    strtab_size: int   # sum of strlen(name) + 1
    total_symbols: int  # nsrc, for the init typetab


def core_symbols(module: ModuleElf, in_init: Callable[[int], bool], kallsyms_all: bool) -> CoreSymbols:
    """Count what layout_symtab keeps; ``in_init(shndx)`` says if a section was laid out in init."""
    symtab = module.symtab()
    symbols = module.symbols()
    livepatch = "livepatch" in module.modinfo
    count = strtab = 0
    for i, (st_name, shndx) in enumerate(symbols):
        if i == 0 or livepatch or _is_core_symbol(module, st_name, shndx, in_init, kallsyms_all):
            strtab += len(module.string_at(symtab.link, st_name)) + 1
            count += 1
    return CoreSymbols(count, strtab, len(symbols))


def _is_core_symbol(module: ModuleElf, st_name: int, shndx: int, in_init: Callable[[int], bool],
                    kallsyms_all: bool) -> bool:
    if shndx == SHN_UNDEF or shndx >= len(module.sections) or not st_name:
        return False
    if kallsyms_all and shndx == module.pcpu_index:
        return True
    flags = module.sections[shndx].flags
    if not flags & SHF_ALLOC or (not kallsyms_all and not flags & SHF_EXECINSTR):
        return False
    return not in_init(shndx)
