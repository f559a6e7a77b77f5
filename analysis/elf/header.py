"""What kind of ELF file a byte string is (``e_ident``, ``e_type``, ``e_machine``), and a module's ``.modinfo``.

Read by hand from the ELF header (System V gABI, include/uapi/linux/elf.h): enough to tell a kernel
module for the right machine from an executable, a shared object or a module of another architecture,
before pyelftools parses the section table.
"""

from __future__ import annotations

import io
import struct
from collections.abc import Mapping
from dataclasses import dataclass

from elftools.common.exceptions import ELFError
from elftools.elf.elffile import ELFFile

from kit.errors import ParseError

ELF_MAGIC = b"\x7fELF"
ELFCLASS32, ELFCLASS64 = 1, 2
ELFDATA2LSB, ELFDATA2MSB = 1, 2
ET_REL = 1  # a relocatable object: what a .ko is

ET_NAMES: Mapping[int, str] = {
    0: "ELF file of no type (ET_NONE)",
    1: "relocatable object (ET_REL)",
    2: "executable (ET_EXEC)",
    3: "shared object or PIE executable (ET_DYN)",
    4: "core dump (ET_CORE)",
}

# e_machine values (include/uapi/linux/elf-em.h) and how people call the architecture.
EM_NAMES: Mapping[int, str] = {
    2: "SPARC",
    3: "x86 (i386)",
    8: "MIPS",
    20: "PowerPC",
    21: "PowerPC64",
    22: "s390",
    40: "ARM",
    42: "SuperH",
    43: "SPARC64",
    62: "x86-64",
    183: "arm64 (AArch64)",
    243: "RISC-V",
    258: "LoongArch",
}


@dataclass(frozen=True)
class ElfKind:
    """What the modules of an architecture are: machine, word size, byte order."""

    machine: int
    bits: int  # 32 or 64
    little_endian: bool

    def describe(self) -> str:
        name = EM_NAMES.get(self.machine, f"e_machine {self.machine}")
        order = "little-endian" if self.little_endian else "big-endian"
        return f"{self.bits}-bit {order} {name}"


# The kit's architecture names (Target.arch, target.toml ``arch``) -> the ELF kind of their modules.
ARCH_ELF: Mapping[str, ElfKind] = {
    "arm": ElfKind(machine=40, bits=32, little_endian=True),
    "arm64": ElfKind(machine=183, bits=64, little_endian=True),
    "x86_64": ElfKind(machine=62, bits=64, little_endian=True),
    "x86": ElfKind(machine=3, bits=32, little_endian=True),
}


@dataclass(frozen=True)
class ElfHeader:
    kind: ElfKind
    e_type: int

    @property
    def type_name(self) -> str:
        return ET_NAMES.get(self.e_type, f"ELF file of type {self.e_type:#x}")


def read_elf_header(raw: bytes) -> ElfHeader | None:
    """The header of an ELF image; None when ``raw`` has no ELF magic, a valid class and byte order,
    or is too short to hold ``e_type`` and ``e_machine``."""
    if len(raw) < 20 or not raw.startswith(ELF_MAGIC):
        return None
    elfclass, data = raw[4], raw[5]
    if elfclass not in (ELFCLASS32, ELFCLASS64) or data not in (ELFDATA2LSB, ELFDATA2MSB):
        return None
    little = data == ELFDATA2LSB
    e_type, e_machine = struct.unpack_from("<HH" if little else ">HH", raw, 16)
    return ElfHeader(ElfKind(e_machine, 32 if elfclass == ELFCLASS32 else 64, little), e_type)


def read_modinfo(raw: bytes, path: str) -> dict[str, str] | None:
    """``key=value`` entries of the ``.modinfo`` section (first value of a key); None when there is no
    such section. ParseError when the section table cannot be read (a truncated file)."""
    try:
        section = ELFFile(io.BytesIO(raw)).get_section_by_name(".modinfo")
        data = section.data() if section is not None else None
    except (ELFError, struct.error, ValueError) as err:
        raise ParseError(path, None, f"damaged ELF file ({err}): copy it again") from err
    if data is None:
        return None
    info: dict[str, str] = {}
    for entry in bytes(data).split(b"\0"):
        key, sep, value = entry.partition(b"=")
        if sep:
            info.setdefault(key.decode(errors="replace"), value.decode(errors="replace"))
    return info
