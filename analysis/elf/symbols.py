"""Where a module's own symbols land: the section they belong to and their offset in it (pyelftools)."""

from __future__ import annotations

import io
from pathlib import Path

from elftools.common.exceptions import ELFError
from elftools.elf.elffile import ELFFile
from elftools.elf.sections import SymbolTableSection

from analysis.elf.loader import read_module_bytes
from kit.errors import ParseError


def defined_symbols(ko: Path) -> dict[str, tuple[int, int]]:
    """Symbol name -> (section header index, st_value) for every symbol defined in a section of ``ko``.

    In a relocatable .ko, st_value is the offset inside the section (ELF gABI, "Symbol Values").
    """
    try:
        elf = ELFFile(io.BytesIO(read_module_bytes(ko)))
        symtab = elf.get_section_by_name(".symtab")
    except ELFError as err:
        raise ParseError(str(ko), None, f"not a readable ELF module: {err}") from err
    if not isinstance(symtab, SymbolTableSection):
        raise ParseError(str(ko), None, "no .symtab: stripped with --strip-all? ship with --strip-debug only")
    found: dict[str, tuple[int, int]] = {}
    for symbol in symtab.iter_symbols():
        index = symbol["st_shndx"]
        if symbol.name and isinstance(index, int) and index > 0:
            found.setdefault(symbol.name, (index, symbol["st_value"]))
    return found
