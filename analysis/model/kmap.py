"""kmap() (pkmap window) and kmap_atomic()/kmap_local_page() (fixmap slots) on ARM HIGHMEM kernels.

pkmap: mm/highmem.c get_next_pkmap_nr, flush_all_zero_pkmaps, map_new_virtual, kmap_high
(5.10:67/163/213/275, 6.1:73/186/233/295, 6.12:73/197/246/308; the same algorithm in all three).
fixmap: 5.10 arch/arm/mm/highmem.c kmap_atomic_high_prot; 6.1/6.12 mm/highmem.c __kmap_local_pfn_prot,
kmap_local_idx_push and kmap_local_calc_idx; address __fix_to_virt(i) = FIXADDR_TOP - i*PAGE_SIZE
(include/asm-generic/fixmap.h:21).
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence

from analysis.model.layout_arm import LAST_PKMAP, PAGE_SIZE, ArmLayout, effective_version
from analysis.model.units import Version, format_version
from analysis.model.versions import ARM_FIXMAP, ARM_KMAP_SLOTS
from kit.errors import UserError


def pkmap_slot(address: int, pkmap_base: int) -> int:
    """The slot nr of PKMAP_ADDR(nr) (asm/highmem.h); a UserError for an address outside the window."""
    offset = address - pkmap_base
    if offset % PAGE_SIZE or not 0 <= offset < LAST_PKMAP * PAGE_SIZE:
        raise UserError(f"0x{address:08x} is not a pkmap address above PKMAP_BASE 0x{pkmap_base:08x}")
    return offset // PAGE_SIZE


class PkmapModel:
    """Predicts the pkmap addresses of successive kmap() calls, starting from an observed first slot.

    `last_pkmap_nr` is global and other kernel users move it, so absolute slots are unknowable: the
    model starts from the slot the first kmap() of a run got. Assumptions (mm/highmem.c): slots after
    it are free (they were flushed at the last wrap and only held mappings survive a flush); slots
    before it were used since the last wrap and are unmapped-but-not-flushed (count 1), so the flush
    at the next wrap (`last_pkmap_nr` back to 0) frees them. Slots held by this model's own kmap()s
    (count >= 2) are skipped.
    """

    def __init__(self, first_slot: int, *, pkmap_base: int = 0xBFE00000,
                 last_pkmap: int = LAST_PKMAP) -> None:
        if not 0 <= first_slot < last_pkmap:
            raise UserError(f"pkmap slot {first_slot} is outside 0..{last_pkmap - 1}")
        self.pkmap_base = pkmap_base
        self.last_pkmap = last_pkmap
        self.last_pkmap_nr = (first_slot - 1) % last_pkmap
        # pkmap_count: 0 free, 1 mapped but unused (flushable), >= 2 held. Slots behind the first one
        # are assumed count 1 (used by someone else since the last flush, then kunmap'ed).
        self.count = [1 if 0 < slot < first_slot else 0 for slot in range(last_pkmap)]
        self.page_slot: dict[Hashable, int] = {}

    @classmethod
    def from_first_address(cls, address: int, *, pkmap_base: int = 0xBFE00000) -> PkmapModel:
        return cls(pkmap_slot(address, pkmap_base), pkmap_base=pkmap_base)

    def address(self, slot: int) -> int:
        """PKMAP_ADDR(nr) = PKMAP_BASE + nr * PAGE_SIZE (asm/highmem.h)."""
        return self.pkmap_base + slot * PAGE_SIZE

    def flush_all_zero_pkmaps(self) -> None:
        """Every slot with count 1 becomes free; its page loses the pkmap address."""
        for slot, count in enumerate(self.count):
            if count == 1:
                self.count[slot] = 0
        self.page_slot = {page: slot for page, slot in self.page_slot.items() if self.count[slot]}

    def map_new_virtual(self) -> int:
        tries = self.last_pkmap
        while True:
            self.last_pkmap_nr = (self.last_pkmap_nr + 1) % self.last_pkmap  # get_next_pkmap_nr
            if self.last_pkmap_nr == 0:
                self.flush_all_zero_pkmaps()
                tries = self.last_pkmap
            if self.count[self.last_pkmap_nr] == 0:
                return self.last_pkmap_nr
            tries -= 1
            if tries == 0:
                raise UserError("all pkmap slots are held: the kernel's kmap() would sleep here")

    def kmap(self, page: Hashable) -> int:
        """kmap_high(page): the page's existing pkmap address if it has one, else a new slot."""
        slot = self.page_slot.get(page)
        if slot is None:
            slot = self.map_new_virtual()
            self.count[slot] = 1
            self.page_slot[page] = slot
        self.count[slot] += 1
        return self.address(slot)

    def kunmap(self, page: Hashable) -> None:
        """kunmap_high(page): drop one reference; at count 1 the mapping stays until the next flush."""
        slot = self.page_slot.get(page)
        if slot is None or self.count[slot] < 2:
            raise UserError(f"kunmap of page {page!r} that is not kmapped")
        self.count[slot] -= 1


def predict_kmap_sequence(first_address: int, pages: int, *, pkmap_base: int = 0xBFE00000,
                          prior: Sequence[int | None] = ()) -> list[int]:
    """Addresses of kmap() on `pages` distinct highmem pages, all held; the first page that had no pkmap
    address (``prior[i]`` falsy) got the new slot at `first_address`.

    ``prior[i]``: page i's pkmap address before the kmap() (page_address(), 0 when none). A page freed
    while its mapping was not yet flushed, then allocated again, still has one (kunmap_high leaves the
    slot at count 1 until flush_all_zero_pkmaps): kmap_high returns it and takes no new slot (mm/highmem.c
    kmap_high, 5.10/6.1/6.12). Fresh guests never show it; boards that ran the kit before do.
    """
    model = PkmapModel.from_first_address(first_address, pkmap_base=pkmap_base)
    for index, address in enumerate(prior):
        if address:
            slot = pkmap_slot(address, pkmap_base)
            model.count[slot] = max(model.count[slot], 1)
            model.page_slot[("page", index)] = slot
    return [model.kmap(("page", index)) for index in range(pages)]


def fixmap_slot_index(version: Version, cpu: int, depth: int, *, debug_kmap_local: bool = False,
                      fix_kmap_begin: int | None = None) -> int:
    """Fixmap index of the `depth`-th nested kmap_atomic/kmap_local (0 = outermost) on `cpu`.

    5.10 and older (per-CPU stack): `FIX_KMAP_BEGIN + type + KM_TYPE_NR * cpu`, type = depth.
    5.11+ (per-task stack, KM_INCR 2 with DEBUG_KMAP_LOCAL): `FIX_KMAP_BEGIN + (depth+1)*KM_INCR - 1
    + KM_MAX_IDX * cpu`, BUG_ON(idx >= KM_MAX_IDX) after the push.
    """
    version = effective_version(version)[0]
    slots = ARM_KMAP_SLOTS.value(version)
    begin = ARM_FIXMAP.value(version).kmap_begin if fix_kmap_begin is None else fix_kmap_begin
    if cpu < 0 or depth < 0:
        raise UserError("cpu and nesting depth must be >= 0")
    if slots.mechanism == "percpu":
        if depth >= slots.per_cpu:
            raise UserError(f"kmap_atomic nesting {depth + 1} exceeds KM_TYPE_NR={slots.per_cpu}")
        return begin + depth + slots.per_cpu * cpu
    per_cpu = slots.per_cpu_debug if debug_kmap_local else slots.per_cpu
    step = slots.step_debug if debug_kmap_local else 1
    pushed = (depth + 1) * step
    if pushed >= per_cpu:
        raise UserError(f"kmap_local nesting {depth + 1} exceeds KM_MAX_IDX={per_cpu}")
    return begin + pushed - 1 + per_cpu * cpu


def kmap_local_address(version: Version, cpu: int, depth: int = 0, *, debug_kmap_local: bool = False) -> int:
    """Virtual address of a kmap_local_page() of a highmem page with no pkmap mapping (6.1+), or of
    kmap_atomic() (any version): __fix_to_virt(idx) = FIXADDR_TOP - idx * PAGE_SIZE."""
    fixmap = ARM_FIXMAP.value(effective_version(version)[0])
    index = fixmap_slot_index(version, cpu, depth, debug_kmap_local=debug_kmap_local)
    return fixmap.end - PAGE_SIZE - index * PAGE_SIZE


def kmap_local_available(version: Version) -> bool:
    """kmap_local_page() exists from 5.11 (mm/highmem.c 6.1:537-582; absent in 5.10)."""
    return ARM_KMAP_SLOTS.value(version).mechanism == "task"


def kmap_atomic_address(version: Version, cpu: int, depth: int = 0, *, pkmap_address: int | None = None,
                        kmap_high_get: bool = False, debug_kmap_local: bool = False) -> int:
    """kmap_atomic() of a highmem page. With ARCH_NEEDS_KMAP_HIGH_GET (asm/highmem.h: unless SMP with
    CPU_TLB_V6 or ARM_ERRATA_798181) a page that already has a pkmap mapping gets that address back
    (5.10 arch/arm/mm/highmem.c kmap_high_get; 6.1 arch_kmap_local_high_get); otherwise a fixmap slot."""
    if kmap_high_get and pkmap_address is not None:
        return pkmap_address
    return kmap_local_address(version, cpu, depth, debug_kmap_local=debug_kmap_local)


def kmap_lowmem(page_address: int) -> int:
    """kmap()/kmap_atomic()/kmap_local_page() of a lowmem page return page_address(page) unchanged
    (include/linux/highmem-internal.h; no pkmap or fixmap state changes)."""
    return page_address


def lowmem_page_address(pfn: int, layout: ArmLayout) -> int:
    """page_address() of a lowmem pfn: __va(pfn << PAGE_SHIFT) = phys - PHYS_OFFSET + PAGE_OFFSET."""
    phys = pfn * PAGE_SIZE
    if not layout.PHYS_OFFSET <= phys < layout.arm_lowmem_limit:
        kernel = format_version(layout.version)
        raise UserError(f"pfn 0x{pfn:x} is not lowmem in this layout (kernel {kernel})")
    return phys - layout.PHYS_OFFSET + layout.PAGE_OFFSET
