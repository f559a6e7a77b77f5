"""The section headers of a module as the loader rewrites them before layout.

Kernel steps modelled (5.10 kernel/module.c, 6.1/6.12 kernel/module/main.c):
* ``rewrite_section_headers`` (5.10:3188-3189): ``.modinfo`` and ``__versions`` lose SHF_ALLOC;
* ``layout_and_allocate`` (5.10:3583-3601, 6.1 main.c, 6.12:2401-2416): ``.data..percpu`` loses
  SHF_ALLOC, ``.data..ro_after_init`` and ``__jump_table`` gain SHF_RO_AFTER_INIT.
``find_sec`` only finds SHF_ALLOC sections and returns the first match.
"""

from __future__ import annotations

import io
import struct
from dataclasses import dataclass
from typing import Any

from elftools.common.exceptions import ELFError
from elftools.elf.elffile import ELFFile

from kit.errors import ParseError

SHF_WRITE = 0x1
SHF_ALLOC = 0x2
SHF_EXECINSTR = 0x4
SHF_RO_AFTER_INIT = 0x00200000  # include/uapi/linux/elf.h
SHT_SYMTAB = 2
SHT_STRTAB = 3
SHT_REL = 9
SHT_NOBITS = 8


@dataclass
class Shdr:
    """One section header, mutable like the loader's copy (``info->sechdrs``)."""

    index: int
    name: str
    sh_type: int
    flags: int
    size: int
    addralign: int
    link: int
    info: int
    data: bytes

    @property
    def alloc(self) -> bool:
        return bool(self.flags & SHF_ALLOC)


@dataclass(frozen=True)
class ModuleElf:
    """The parts of a .ko the loader looks at."""

    path: str
    elfclass: int  # 32 or 64
    little_endian: bool
    machine: str
    sections: list[Shdr]
    modinfo: dict[str, str]
    pcpu_index: int = 0  # index.pcpu, found before .data..percpu loses SHF_ALLOC

    def find_sec(self, name: str) -> int:
        """find_sec(): index of the first SHF_ALLOC section called ``name``, else 0."""
        for shdr in self.sections[1:]:
            if shdr.alloc and shdr.name == name:
                return shdr.index
        return 0

    def symtab(self) -> Shdr:
        for shdr in self.sections:
            if shdr.sh_type == SHT_SYMTAB:
                return shdr
        raise ParseError(self.path, None, "module has no symbol table; was it stripped with --strip-all?")

    def symbols(self) -> list[tuple[int, int]]:
        """(st_name, st_shndx) of every symbol, in table order."""
        sym = self.symtab()
        order = "<" if self.little_endian else ">"
        if self.elfclass == 32:
            fmt, entsize, name_at, shndx_at = order + "IIIBBH", 16, 0, 5
        else:
            fmt, entsize, name_at, shndx_at = order + "IBBHQQ", 24, 0, 3
        return [(fields[name_at], fields[shndx_at])
                for fields in struct.iter_unpack(fmt, sym.data[: len(sym.data) // entsize * entsize])]

    def string_at(self, strtab_index: int, offset: int) -> bytes:
        data = self.sections[strtab_index].data
        end = data.index(b"\0", offset)
        return data[offset:end]


def load_module_elf(raw: bytes, path: str) -> ModuleElf:
    """Parse the ELF and apply the loader's flag rewrites."""
    try:
        elf = ELFFile(io.BytesIO(raw))
        sections = [_shdr(i, sec) for i, sec in enumerate(elf.iter_sections())]
        elfclass, little, machine = elf.elfclass, elf.little_endian, elf["e_machine"]
    except (ELFError, struct.error, ValueError) as err:
        raise ParseError(path, None, f"not a valid ELF module: {err}") from err
    module = ModuleElf(path, elfclass, little, machine, sections, {})
    modinfo_index = module.find_sec(".modinfo")
    info = _modinfo(sections[modinfo_index].data) if modinfo_index else {}
    module = ModuleElf(path, elfclass, little, machine, sections, info, module.find_sec(".data..percpu"))
    _rewrite_flags(module)
    return module


def _shdr(index: int, section: Any) -> Shdr:
    header = section.header
    data = b"" if header["sh_type"] == "SHT_NOBITS" or index == 0 else section.data()
    return Shdr(index, section.name, _type_number(header["sh_type"]), header["sh_flags"], header["sh_size"],
                header["sh_addralign"], header["sh_link"], header["sh_info"], data)


_TYPES = {"SHT_SYMTAB": SHT_SYMTAB, "SHT_STRTAB": SHT_STRTAB, "SHT_REL": SHT_REL, "SHT_NOBITS": SHT_NOBITS}


def _type_number(sh_type: Any) -> int:
    if isinstance(sh_type, int):
        return sh_type
    return _TYPES.get(str(sh_type), -1)


def _modinfo(data: bytes) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in data.split(b"\0"):
        key, sep, value = item.partition(b"=")
        if sep:
            out.setdefault(key.decode(errors="replace"), value.decode(errors="replace"))
    return out


def _rewrite_flags(module: ModuleElf) -> None:
    for name in ("__versions", ".modinfo", ".data..percpu"):
        index = module.find_sec(name)
        if index:
            module.sections[index].flags &= ~SHF_ALLOC
    for name in (".data..ro_after_init", "__jump_table"):
        index = module.find_sec(name)
        if index:
            module.sections[index].flags |= SHF_RO_AFTER_INIT
