"""ARM module PLT sizing: module_frob_arch_sections (arch/arm/kernel/module-plts.c).

The function is the same in 5.10, 6.1 and 6.12 (only get_module_plt's in_init test changed):
for every SHT_REL section whose target section is executable, the relocations are sorted by
(type, symbol) with the kernel's ``sort()`` and ``count_plts`` counts the branch relocations
(R_ARM_CALL, PC24, JUMP24, THM_CALL, THM_JUMP24) whose symbol is not defined in the target section,
skipping a zero-addend duplicate of the previous entry. Init targets (module_init_layout_section)
count towards ``.init.plt``, the rest towards ``.plt``; both start at ARRAY_SIZE(fixed_plts)
(2 with CONFIG_DYNAMIC_FTRACE: FTRACE_ADDR, MCOUNT_ADDR). The placeholder sections become NOBITS,
SHF_EXECINSTR|SHF_ALLOC, aligned to L1_CACHE_BYTES, of ``round_up(n * PLT_ENT_SIZE,
sizeof(struct plt_entries))`` bytes (asm/module.h: PLT_ENT_STRIDE = L1_CACHE_BYTES,
PLT_ENT_COUNT = L1_CACHE_BYTES / 4, plt_entries = 2 * L1_CACHE_BYTES, PLT_ENT_SIZE = 8).

The order of equal keys after the (unstable) heapsort decides which duplicates are skipped, so
lib/sort.c is replayed exactly; its variant is a per-version table entry.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Literal

from analysis.elf.sections import SHF_ALLOC, SHF_EXECINSTR, SHT_NOBITS, SHT_REL, ModuleElf

R_ARM_PC24, R_ARM_THM_CALL, R_ARM_CALL, R_ARM_JUMP24, R_ARM_THM_JUMP24 = 1, 10, 28, 29, 30
BRANCH_TYPES = frozenset({R_ARM_PC24, R_ARM_THM_CALL, R_ARM_CALL, R_ARM_JUMP24, R_ARM_THM_JUMP24})

SortVariant = Literal["heapsort", "heapsort_two_at_a_time"]
# lib/sort.c sort_r: 5.10 and 6.1 extract one root per round; 6.12 extracts the two largest per
# round ("Extract two largest elements") and compares siblings with "> 0" instead of ">= 0".
SORT_VARIANT: dict[tuple[int, int], SortVariant] = {
    (5, 10): "heapsort",
    (6, 1): "heapsort",
    (6, 12): "heapsort_two_at_a_time",
}

Rel = tuple[int, int]  # (r_offset, r_info)


def _parent(i: int) -> int:
    return (i - 1) // 2


def kernel_sort(items: list[Rel], cmp: Callable[[Rel, Rel], int], variant: SortVariant) -> None:
    """lib/sort.c ``sort_r`` on element indices (bottom-up heapsort), in place."""
    num = len(items)
    a, n, shift = num // 2, num, 0
    if not a:
        return
    while True:
        if a:
            a -= 1 << shift
        elif variant == "heapsort":
            n -= 1
            if not n:
                break
            items[0], items[n] = items[n], items[0]
        elif n > 3:
            n -= 1
            items[0], items[n] = items[n], items[0]
            shift = 1 if cmp(items[1], items[2]) <= 0 else 0
            a = 1 << shift
            n -= 1
            items[a], items[n] = items[n], items[a]
        else:
            break
        _sift_down(items, a, n, cmp, variant)
    if variant == "heapsort_two_at_a_time":
        n -= 1
        items[0], items[n] = items[n], items[0]
        if n == 2 and cmp(items[0], items[1]) > 0:
            items[0], items[1] = items[1], items[0]


def _sift_down(items: list[Rel], a: int, n: int, cmp: Callable[[Rel, Rel], int],
               variant: SortVariant) -> None:
    b = a
    while True:
        c = 2 * b + 1
        d = c + 1
        if d >= n:
            break
        order = cmp(items[c], items[d])
        b = c if (order >= 0 if variant == "heapsort" else order > 0) else d
    if d == n:
        b = c
    while b != a and cmp(items[a], items[b]) >= 0:
        b = _parent(b)
    c = b
    while b != a:
        b = _parent(b)
        items[b], items[c] = items[c], items[b]


def _key(rel: Rel) -> tuple[int, int]:
    return rel[1] & 0xFF, rel[1] >> 8  # (ELF32_R_TYPE, ELF32_R_SYM)


def cmp_rel(x: Rel, y: Rel) -> int:
    """cmp_rel: by type, then symbol index."""
    kx, ky = _key(x), _key(y)
    return (kx > ky) - (kx < ky)


def is_zero_addend(code: bytes, rel: Rel) -> bool:
    """is_zero_addend_relocation: the encoded branch offset is -8 (ARM) / -4 (Thumb)."""
    offset, kind = rel[0], rel[1] & 0xFF
    if kind in (R_ARM_THM_CALL, R_ARM_THM_JUMP24):
        upper, lower = struct.unpack_from("<HH", code, offset)
        return bool((upper & 0x7FF) == 0x7FF and (lower & 0x2FFF) == 0x2FFE)
    (insn,) = struct.unpack_from("<I", code, offset)
    return bool((insn & 0xFFFFFF) == 0xFFFFFE)


def count_plts(rels: list[Rel], code: bytes, symbol_shndx: list[int], target_index: int) -> int:
    """count_plts over relocations already in kernel-sorted order."""
    count = 0
    for i, rel in enumerate(rels):
        if rel[1] & 0xFF not in BRANCH_TYPES:
            continue
        if symbol_shndx[rel[1] >> 8] == target_index:
            continue
        duplicate = i > 0 and cmp_rel(rel, rels[i - 1]) == 0 and is_zero_addend(code, rels[i - 1])
        if not is_zero_addend(code, rel) or not duplicate:
            count += 1
    return count


@dataclass(frozen=True)
class PltCounts:
    core: int
    init: int


def count_module_plts(module: ModuleElf, is_init: Callable[[str], bool], fixed_plts: int,
                      variant: SortVariant) -> PltCounts:
    """The entry counts module_frob_arch_sections sizes ``.plt`` and ``.init.plt`` for."""
    shndx = [shndx for _, shndx in module.symbols()]
    core = init = fixed_plts
    for rel_sec in module.sections[1:]:
        if rel_sec.sh_type != SHT_REL:
            continue
        target = module.sections[rel_sec.info]
        if not target.flags & SHF_EXECINSTR:
            continue
        rels: list[Rel] = list(struct.iter_unpack("<II", rel_sec.data[: len(rel_sec.data) // 8 * 8]))
        kernel_sort(rels, cmp_rel, variant)
        found = count_plts(rels, target.data, shndx, target.index)
        if is_init(target.name):
            init += found
        else:
            core += found
    return PltCounts(core, init)


def plt_section_size(entries: int, l1_cache_bytes: int) -> int:
    """round_up(n * PLT_ENT_SIZE, sizeof(struct plt_entries)); PLT_ENT_SIZE is 8 bytes."""
    chunk = 2 * l1_cache_bytes
    return (entries * 8 + chunk - 1) // chunk * chunk


def frob_arm_plt_sections(module: ModuleElf, counts: PltCounts, l1_cache_bytes: int) -> None:
    """Rewrite the ``.plt``/``.init.plt`` placeholders as module_frob_arch_sections does."""
    sizes: Mapping[str, int] = {".plt": counts.core, ".init.plt": counts.init}
    for shdr in module.sections:
        if shdr.name in sizes:
            shdr.sh_type = SHT_NOBITS
            shdr.flags = SHF_EXECINSTR | SHF_ALLOC
            shdr.addralign = l1_cache_bytes
            shdr.size = plt_section_size(sizes[shdr.name], l1_cache_bytes)
