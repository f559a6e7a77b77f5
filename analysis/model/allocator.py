"""The vmalloc address allocator (mm/vmalloc.c), as a pure model over a free map.

The kernel keeps the *free* virtual ranges in an augmented rbtree and serves every request with the
lowest-address block that fits (``find_vmap_lowest_match``). This model keeps the same free ranges as
a sorted list of ``[start, end)`` intervals clipped to ``[vstart, vend)``, rebuilt from a
/proc/vmallocinfo snapshot, and replays requests on it. Spec: shared/reference/kernel-model.md §2.

Version differences are data (``ALLOCATOR_RULES``), each row citing the functions it was read from.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol

from kit.errors import UserError

PAGE_SIZE = 4096
PAGE_SHIFT = 12
MIB = 1 << 20

Kind = Literal["area", "vm_map_ram", "unpurged"]
SearchLength = Literal["always", "align_above_page"]


class AreaLike(Protocol):
    """What the model needs from a parsed vmallocinfo line (``analysis.parsers.VmallocEntry`` fits)."""

    @property
    def start(self) -> int: ...

    @property
    def end(self) -> int: ...

    @property
    def kind(self) -> str: ...


@dataclass(frozen=True)
class Area:
    """A plain (start, end, kind) triple, for callers without a parsed entry."""

    start: int
    end: int
    kind: str = "area"


@dataclass(frozen=True)
class AllocatorRules:
    """How one kernel version searches and frees; each field cites mm/vmalloc.c."""

    version: tuple[int, int]
    # find_vmap_lowest_match(): subtree pruning length = size + align - 1.
    #   5.10:855 always; 6.1:1264 / 6.12:1500 only if align > PAGE_SIZE and vend - vstart != size
    #   (the adjust_search_size test in __alloc_vmap_area 6.1:1562, 6.12:1815).
    search_length: SearchLength
    # free_vmap_area_noflush() (5.10:1411, 6.1:1881, 6.12:2365): what the lazy list looks like.
    lazy_list: Literal["lifo", "sorted_merged", "sorted"]
    # ... and whether crossing lazy_max_pages() purges at once (5.10 try_purge_vmap_area_lazy) or
    # schedules drain_vmap_work (6.1, 6.12). The model purges at once in both cases.
    purge_is_synchronous: bool


ALLOCATOR_RULES: dict[tuple[int, int], AllocatorRules] = {
    (5, 10): AllocatorRules((5, 10), "always", "lifo", True),
    (6, 1): AllocatorRules((6, 1), "align_above_page", "sorted_merged", False),
    (6, 12): AllocatorRules((6, 12), "align_above_page", "sorted", False),
}


def rules_for(version: Sequence[int]) -> AllocatorRules:
    """The allocator rules of kernel ``version`` (major, minor[, patch])."""
    key = (version[0], version[1])
    if key not in ALLOCATOR_RULES:
        known = ", ".join(f"{a}.{b}" for a, b in ALLOCATOR_RULES)
        raise UserError(f"no vmalloc allocator model for kernel {key[0]}.{key[1]}; known: {known}")
    return ALLOCATOR_RULES[key]


def page_align(size: int) -> int:
    """PAGE_ALIGN (include/linux/mm.h)."""
    return (size + PAGE_SIZE - 1) & ~(PAGE_SIZE - 1)


def align_up(value: int, align: int) -> int:
    """ALIGN for a power-of-two ``align``."""
    return (value + align - 1) & ~(align - 1)


def get_count_order(size: int) -> int:
    """get_count_order_long (include/linux/bitops.h): ceil(log2(size)), size > 0."""
    return (size - 1).bit_length()


def ioremap_align(size: int, ioremap_max_order: int = 19) -> int:
    """__get_vm_area_node (5.10:2056, 6.1:2545, 6.12:3168): alignment of a VM_IOREMAP area.

    ``1 << clamp(get_count_order_long(size), PAGE_SHIFT, IOREMAP_MAX_ORDER)`` on the page-aligned size,
    before the guard page is added. IOREMAP_MAX_ORDER is 19 on ARM SMP/LPAE, 24 on UP non-LPAE.
    """
    return 1 << max(PAGE_SHIFT, min(get_count_order(size), ioremap_max_order))


# ARM IOREMAP_MAX_ORDER: 24 only on !SMP && !LPAE (asm/memory.h 5.10:78), otherwise the generic
# 7 + PAGE_SHIFT (include/linux/vmalloc.h 5.10:47-48; the same in 6.1 and 6.12).
IOREMAP_MAX_ORDER_UP, IOREMAP_MAX_ORDER_SMP = 24, 19


def arm_ioremap_max_order(config: Mapping[str, str]) -> tuple[int, str]:
    """IOREMAP_MAX_ORDER of an ARM kernel from its .config, and why; without SMP in the config, the
    weaker (smaller) bound."""
    smp, lpae = config.get("CONFIG_SMP"), config.get("CONFIG_ARM_LPAE")
    if smp == "n" and lpae != "y":
        return IOREMAP_MAX_ORDER_UP, "IOREMAP_MAX_ORDER 24 (!SMP, !LPAE)"
    known = smp is not None
    return IOREMAP_MAX_ORDER_SMP, "IOREMAP_MAX_ORDER 19" + ("" if known else " (SMP unknown: the weaker bound)")


def lazy_max_pages(ncpus: int) -> int:
    """lazy_max_pages() (5.10:1293, 6.1:1770, 6.12:2102): fls(num_online_cpus()) * 32 MiB / PAGE_SIZE."""
    return ncpus.bit_length() * (32 * MIB // PAGE_SIZE)


@dataclass(frozen=True)
class VmallocRequest:
    """One ``__get_vm_area_node`` / ``__vmalloc_node_range`` request.

    ``size`` is what the caller asked for (bytes); ``vm_alloc`` marks a vmalloc()-family request whose
    page array may itself be vmalloc'ed (``__vmalloc_area_node``); vmap()/ioremap() have no array.
    """

    size: int
    align: int = 1
    ioremap: bool = False
    no_guard: bool = False
    vm_alloc: bool = True
    ioremap_max_order: int = 19

    def __post_init__(self) -> None:
        if self.size <= 0 or self.align <= 0 or self.align & (self.align - 1):
            raise UserError(f"bad vmalloc request size={self.size} align={self.align}: need size > 0, "
                            "align a power of two")

    @property
    def nr_pages(self) -> int:
        return page_align(self.size) // PAGE_SIZE

    def effective_align(self) -> int:
        """The alignment handed to alloc_vmap_area (ioremap rule of __get_vm_area_node)."""
        if self.ioremap:
            return ioremap_align(page_align(self.size), self.ioremap_max_order)
        return self.align

    def va_size(self) -> int:
        """vm->size: PAGE_ALIGN(size) plus the guard page unless VM_NO_GUARD."""
        return page_align(self.size) + (0 if self.no_guard else PAGE_SIZE)


@dataclass(frozen=True)
class Placement:
    """Where one request landed: ``[start, end)`` is the whole VA (vmallocinfo's range)."""

    start: int
    end: int
    nr_pages: int
    pages_array: Placement | None = None  # the nested vmalloc'ed page array (" vpages")

    @property
    def size(self) -> int:
        return self.end - self.start


def nested_pages_array(nr_pages: int, pointer_size: int) -> VmallocRequest | None:
    """__vmalloc_area_node (5.10:2479, 6.1:3111, 6.12:3704): array > PAGE_SIZE is vmalloc'ed (align 1)."""
    array_size = nr_pages * pointer_size
    if array_size <= PAGE_SIZE:
        return None
    return VmallocRequest(array_size, 1)


class FreeMap:
    """Disjoint, sorted free ``[start, end)`` intervals inside ``[vstart, vend)``."""

    def __init__(self, vstart: int, vend: int, intervals: Iterable[tuple[int, int]] = ()) -> None:
        self.vstart, self.vend = vstart, vend
        self.starts: list[int] = []
        self.ends: list[int] = []
        for start, end in sorted(intervals):
            self._append_merged(max(start, vstart), min(end, vend))

    def _append_merged(self, start: int, end: int) -> None:
        if start >= end:
            return
        if self.ends and self.ends[-1] >= start:
            self.ends[-1] = max(self.ends[-1], end)
        else:
            self.starts.append(start)
            self.ends.append(end)

    @classmethod
    def from_snapshot(cls, entries: Iterable[AreaLike], vstart: int, vend: int) -> FreeMap:
        """The complement of every listed range (busy areas, vm_map_ram blocks and unpurged areas)."""
        listed = [(e.start, e.end) for e in entries]
        for start, end in listed:
            if end <= start:
                raise UserError(f"vmallocinfo range 0x{start:x}-0x{end:x} is empty or restricted; "
                                "read /proc/vmallocinfo as root with kptr_restrict=1")
        busy = sorted((s, e) for s, e in listed if e > vstart and s < vend)
        free: list[tuple[int, int]] = []
        cursor = vstart
        for start, end in busy:
            if start > cursor:
                free.append((cursor, start))
            cursor = max(cursor, end)
        if cursor < vend:
            free.append((cursor, vend))
        return cls(vstart, vend, free)

    def intervals(self) -> list[tuple[int, int]]:
        return list(zip(self.starts, self.ends, strict=True))

    def copy(self) -> FreeMap:
        return FreeMap(self.vstart, self.vend, self.intervals())

    def total(self) -> int:
        return sum(e - s for s, e in zip(self.starts, self.ends, strict=True))

    def find(self, size: int, align: int, min_len: int) -> int | None:
        """Lowest aligned start of a block with length >= ``min_len`` into which ``size`` fits."""
        for start, end in zip(self.starts, self.ends, strict=True):
            nva = align_up(start, align)
            if end - start >= min_len and nva + size <= end:
                return nva
        return None

    def fits(self, size: int, align: int) -> list[int]:
        """The aligned start of every block ``size`` fits into, lowest first."""
        out = []
        for start, end in zip(self.starts, self.ends, strict=True):
            nva = align_up(start, align)
            if nva + size <= end:
                out.append(nva)
        return out

    def reserve(self, start: int, end: int) -> None:
        """Cut ``[start, end)`` out of the block containing it (FL/LE/RE/NE fit, adjust_va_to_fit_type)."""
        i = bisect.bisect_right(self.starts, start) - 1
        if i < 0 or self.ends[i] < end:
            raise UserError(f"0x{start:x}-0x{end:x} is not free")
        block_start, block_end = self.starts[i], self.ends[i]
        del self.starts[i], self.ends[i]
        for s, e in ((end, block_end), (block_start, start)):
            if s < e:
                self.starts.insert(i, s)
                self.ends.insert(i, e)

    def release(self, start: int, end: int) -> None:
        """Merge ``[start, end)`` back (merge_or_add_vmap_area)."""
        start, end = max(start, self.vstart), min(end, self.vend)
        if start >= end:
            return
        i = bisect.bisect_left(self.starts, start)
        if (i < len(self.starts) and self.starts[i] < end) or (i > 0 and self.ends[i - 1] > start):
            raise UserError(f"0x{start:x}-0x{end:x} overlaps a free block")
        self.starts.insert(i, start)
        self.ends.insert(i, end)
        if i + 1 < len(self.starts) and self.starts[i + 1] == end:
            self.ends[i] = self.ends.pop(i + 1)
            del self.starts[i + 1]
        if i > 0 and self.ends[i - 1] == start:
            self.ends[i - 1] = self.ends.pop(i)
            del self.starts[i]


def search_length(rules: AllocatorRules, size: int, align: int, vstart: int, vend: int) -> int:
    """The ``length`` find_vmap_lowest_match prunes subtrees with (see AllocatorRules.search_length).

    With ``length > size`` the kernel's answer is the lowest block of at least ``length`` bytes, unless
    a smaller block that still fits lies on the rbtree search path; the model cannot see the tree's
    shape, so it returns the lowest block of at least ``length`` (kernel-model.md §2.2).
    """
    if rules.search_length == "always":
        return size + align - 1
    if align > PAGE_SIZE and vend - vstart != size:
        return size + align - 1
    return size


@dataclass
class VmallocModel:
    """The allocator state: a free map, the lazily freed areas and the lazy page count."""

    free: FreeMap
    rules: AllocatorRules
    ncpus: int = 1
    pointer_size: int = 4
    lazy: list[tuple[int, int]] = field(default_factory=list)
    purges: int = 0

    @classmethod
    def from_snapshot(cls, entries: Iterable[AreaLike], vstart: int, vend: int, rules: AllocatorRules,
                      ncpus: int = 1, pointer_size: int = 4) -> VmallocModel:
        """Busy lines make the free map; ``unpurged`` lines become the lazy list (freed at a purge)."""
        listed = list(entries)
        lazy = [(e.start, e.end) for e in listed if e.kind == "unpurged"]
        return cls(FreeMap.from_snapshot(listed, vstart, vend), rules, ncpus, pointer_size, lazy)

    @property
    def lazy_pages(self) -> int:
        return sum(end - start for start, end in self.lazy) // PAGE_SIZE

    def purge(self) -> None:
        """__purge_vmap_area_lazy: every lazily freed area goes back to the free tree."""
        for start, end in sorted(self.lazy):
            self.free.release(start, end)
        self.lazy.clear()
        self.purges += 1

    def candidates(self, size: int, align: int) -> tuple[int, ...]:
        """Every start the kernel may pick for this request now, the model's choice first.

        With ``length == size`` (align <= PAGE_SIZE on 6.1+, align 1 on 5.10) find_vmap_lowest_match is
        exactly "lowest fitting block": one candidate. With a longer pruning length the kernel returns
        the lowest block of >= ``length`` bytes (the model's choice) unless a lower block that still fits
        lies on the rbtree search path; those lower fits are the other candidates.
        """
        length = search_length(self.rules, size, align, self.free.vstart, self.free.vend)
        fits = self.free.fits(size, align)
        if length == size:
            return tuple(fits[:1])
        chosen = self.free.find(size, align, length)
        if chosen is None:  # only the tree's root is checked: any fitting block, or failure
            return tuple(fits)
        return (chosen, *(nva for nva in fits if nva < chosen))

    def alloc_va(self, size: int, align: int, at: int | None = None) -> int | None:
        """alloc_vmap_area: first fit; on failure purge once and retry (the ``overflow`` path).

        ``at`` replays an observed placement; it must be one of ``candidates``.
        """
        for attempt in range(2):
            options = self.candidates(size, align)
            if options:
                start = options[0] if at is None else at
                if start not in options:
                    raise UserError(f"0x{start:x} is not a first-fit candidate for a {size}-byte area "
                                    f"(align {align}); the model allows {[hex(o) for o in options]}")
                self.free.reserve(start, start + size)
                return start
            if attempt == 0 and self.lazy:
                self.purge()
            else:
                break
        return None

    def alloc(self, request: VmallocRequest, at: int | None = None,
              array_at: int | None = None) -> Placement | None:
        """__vmalloc_node_range / __get_vm_area_node: the area, then the nested page array if any.

        ``at``/``array_at`` replay observed addresses where the model has several candidates.
        """
        start = self.alloc_va(request.va_size(), request.effective_align(), at)
        if start is None:
            return None
        nested = None
        array = nested_pages_array(request.nr_pages, self.pointer_size) if request.vm_alloc else None
        if array is not None:
            nested = self.alloc(array, array_at)
            if nested is None:
                self.free_area(Placement(start, start + request.va_size(), 0))
                return None
        return Placement(start, start + request.va_size(), request.nr_pages, nested)

    def free_area(self, placement: Placement) -> None:
        """vfree/vunmap -> free_vmap_area_noflush: lazy until a purge (the array is freed first)."""
        if placement.pages_array is not None:
            self.free_area(placement.pages_array)
        self.lazy.append((placement.start, placement.end))
        if self.lazy_pages > lazy_max_pages(self.ncpus):
            self.purge()


@dataclass(frozen=True)
class FillPhase:
    """One phase of a fill loop: how many chunks fitted and the first/last start address."""

    chunk_pages: int
    count: int
    first: int | None
    last: int | None


def _fill_block(start: int, end: int, size: int, align: int, min_len: int
                ) -> tuple[int, int, list[tuple[int, int]]]:
    """Consecutive first-fit allocations in one block: (count, first start, blocks left over)."""
    nva = align_up(start, align)
    step = align_up(size, align)
    if end - start < min_len or nva + size > end:
        return 0, nva, [(start, end)]
    # the k-th further allocation (k >= 1) needs nva + k*step + size <= end and, with a pruning
    # length above size, the remainder [nva + (k-1)*step + size, end) to be at least min_len long
    more_fit = (end - nva - size) // step
    more_len = (end - nva - size - min_len) // step + 1
    count = 1 + max(0, min(more_fit, more_len))
    left = [(start, nva)] if nva > start else []
    if step > size:
        left += [(nva + k * step + size, nva + (k + 1) * step) for k in range(count - 1)]
    left.append((nva + (count - 1) * step + size, end))
    return count, nva, [(s, e) for s, e in left if s < e]


def capacity(free: FreeMap, chunk_pages: Sequence[int], rules: AllocatorRules,
             lazy: Sequence[tuple[int, int]] = (), align: int = 1, guard: bool = True) -> list[FillPhase]:
    """Simulate ``vmap`` of ``chunk_pages[0]``-page chunks until failure, then the next size, and so on.

    Per-block arithmetic (not one allocation at a time): with first fit and no frees, one size fills
    the blocks in address order. On the first failure the lazy areas are purged and the phase goes on
    (alloc_vmap_area's retry); the input map is not modified.
    """
    blocks = free.intervals()
    pending = list(lazy)
    phases = []
    for pages in chunk_pages:
        size = pages * PAGE_SIZE + (PAGE_SIZE if guard else 0)
        min_len = search_length(rules, size, align, free.vstart, free.vend)
        count, first, last = 0, None, None
        while True:
            new_blocks: list[tuple[int, int]] = []
            for start, end in blocks:
                n, nva, left = _fill_block(start, end, size, align, min_len)
                if n:
                    step = align_up(size, align)
                    first = nva if first is None else first
                    last = nva + (n - 1) * step
                    count += n
                new_blocks += left
            blocks = new_blocks
            if not pending:
                break
            merged = FreeMap(free.vstart, free.vend, blocks)
            for start, end in pending:
                merged.release(start, end)
            pending = []
            blocks = merged.intervals()
        phases.append(FillPhase(pages, count, first, last))
    return phases
