"""Unit and property tests of analysis.model.allocator, each rule citing mm/vmalloc.c."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from analysis.model.allocator import (
    PAGE_SIZE,
    Area,
    FreeMap,
    VmallocModel,
    VmallocRequest,
    capacity,
    ioremap_align,
    lazy_max_pages,
    rules_for,
)
from kit.errors import UserError

P = PAGE_SIZE
VSTART, VEND = 0xF0800000, 0xFF800000


def model(version: tuple[int, int], busy: Sequence[tuple[int, int]] = (),
          lazy: Sequence[tuple[int, int]] = ()) -> VmallocModel:
    areas = [Area(s, e) for s, e in busy] + [Area(s, e, "unpurged") for s, e in lazy]
    return VmallocModel.from_snapshot(areas, VSTART, VEND, rules_for(version))


def test_page_align_and_guard() -> None:
    """__vmalloc_node_range PAGE_ALIGNs; __get_vm_area_node adds a guard page unless VM_NO_GUARD."""
    assert VmallocRequest(100).va_size() == 2 * P
    assert VmallocRequest(5 * P + 1).va_size() == 7 * P
    assert VmallocRequest(3 * P, no_guard=True).va_size() == 3 * P


def test_ioremap_alignment_uses_the_size_before_the_guard() -> None:
    """__get_vm_area_node: 1 << clamp(get_count_order_long(size), PAGE_SHIFT, IOREMAP_MAX_ORDER)."""
    assert ioremap_align(P) == P
    assert ioremap_align(2 * P) == 2 * P  # with the guard (3 pages) it would have been 4 pages
    assert ioremap_align(0x30000) == 0x40000
    assert ioremap_align(64 << 20) == 1 << 19  # IOREMAP_MAX_ORDER = 19 on SMP/LPAE
    assert ioremap_align(64 << 20, ioremap_max_order=24) == 1 << 24


def test_lazy_max_pages() -> None:
    """lazy_max_pages(): fls(num_online_cpus()) * 32 MiB / PAGE_SIZE."""
    assert [lazy_max_pages(n) for n in (1, 2, 3, 4, 8)] == [8192, 16384, 16384, 24576, 32768]


def test_lowest_first_fit_and_split() -> None:
    """find_vmap_lowest_match: the lowest block that fits; adjust_va_to_fit_type keeps both remainders."""
    m = model((6, 1), busy=[(VSTART + 2 * P, VSTART + 10 * P)])
    assert m.alloc(VmallocRequest(3 * P)) is not None  # 4 pages do not fit in the 2-page hole
    assert m.free.intervals()[0] == (VSTART, VSTART + 2 * P)
    small = m.alloc(VmallocRequest(P))
    assert small is not None and small.start == VSTART


def test_nested_page_array_above_1024_pages_on_32_bit() -> None:
    """__vmalloc_area_node: nr_pages * sizeof(void *) > PAGE_SIZE -> the array is vmalloc'ed after."""
    m = model((6, 12))
    at_limit = m.alloc(VmallocRequest(1024 * P))
    over = m.alloc(VmallocRequest(1025 * P))
    assert at_limit is not None and at_limit.pages_array is None
    assert over is not None and over.pages_array is not None
    assert over.pages_array.start == over.end and over.pages_array.size == 3 * P
    m64 = VmallocModel(FreeMap(VSTART, VEND, [(VSTART, VEND)]), rules_for((6, 12)), pointer_size=8)
    placed = m64.alloc(VmallocRequest(513 * P))
    assert placed is not None and placed.pages_array is not None  # > 512 pages on 64-bit


def test_lazy_free_is_not_reused_until_purge_on_failure() -> None:
    """free_vmap_area_noflush defers; alloc_vmap_area purges once on failure and retries."""
    free = FreeMap(VSTART, VSTART + 10 * P, [(VSTART, VSTART + 10 * P)])
    m = VmallocModel(free, rules_for((5, 10)))
    first = m.alloc(VmallocRequest(4 * P, vm_alloc=False))
    assert first is not None
    m.free_area(first)
    second = m.alloc(VmallocRequest(4 * P, vm_alloc=False))
    assert second is not None and second.start == VSTART + 5 * P and m.purges == 0
    third = m.alloc(VmallocRequest(4 * P, vm_alloc=False))  # only the lazy area is left: purge
    assert third is not None and third.start == VSTART and m.purges == 1


def test_purge_when_lazy_pages_exceed_lazy_max_pages() -> None:
    m = model((6, 1))
    areas = [m.alloc(VmallocRequest(1023 * P)) for _ in range(9)]  # 1024 VA pages each
    for area in areas[:8]:
        assert area is not None
        m.free_area(area)
    assert m.purges == 0 and m.lazy_pages == 8192  # not above lazy_max_pages(1)
    assert areas[8] is not None
    m.free_area(areas[8])
    assert m.purges == 1 and m.lazy_pages == 0


def test_510_prunes_with_size_plus_align_but_61_only_above_page() -> None:
    """find_vmap_lowest_match length: 5.10 always size + align - 1; 6.1 only when align > PAGE_SIZE."""
    busy = [(VSTART + 2 * P, VSTART + 3 * P)]  # a 2-page hole at VSTART
    ioremap = VmallocRequest(P, ioremap=True, vm_alloc=False)  # 2 pages of VA, align 4 KiB
    assert model((6, 1), busy).candidates(ioremap.va_size(), ioremap.effective_align()) == (VSTART,)
    options = model((5, 10), busy).candidates(ioremap.va_size(), ioremap.effective_align())
    assert options == (VSTART + 3 * P, VSTART)  # model's choice first, the exact hole allowed


def test_replay_rejects_an_address_first_fit_cannot_give() -> None:
    m = model((6, 1))
    with pytest.raises(UserError):
        m.alloc(VmallocRequest(P), at=VSTART + 8 * P)


def test_restricted_snapshot_is_a_user_error() -> None:
    with pytest.raises(UserError):
        FreeMap.from_snapshot([Area(0, 0), Area(0, 0)], 0, VEND)


def test_unknown_version() -> None:
    with pytest.raises(UserError):
        rules_for((4, 19))


def test_capacity_is_fast_for_many_allocations() -> None:
    """60k one-page vmaps over the whole 240 MiB area, with per-block arithmetic."""
    free = FreeMap(VSTART, VEND, [(VSTART, VEND)])
    (small,) = capacity(free, (1,), rules_for((6, 1)))
    assert small.count == (VEND - VSTART) // (2 * P) and small.last == VEND - 2 * P


intervals = st.lists(st.tuples(st.integers(0, 400), st.integers(1, 40)), max_size=25)
requests = st.lists(st.tuples(st.integers(1, 40 * P), st.sampled_from([1, P, 4 * P, 16 * P]),
                              st.booleans()), min_size=1, max_size=40)


def busy_from(spec: list[tuple[int, int]]) -> list[Area]:
    out, cursor = [], VSTART
    for gap, pages in spec:
        start = cursor + gap * P
        out.append(Area(start, start + pages * P))
        cursor = start + pages * P
    return [a for a in out if a.end <= VSTART + 2048 * P]


@settings(max_examples=150, deadline=None)
@given(intervals, requests, st.sampled_from([(5, 10), (6, 1), (6, 12)]))
def test_placements_never_overlap_stay_in_range_and_are_aligned(
        busy: list[tuple[int, int]], reqs: list[tuple[int, int, bool]], version: tuple[int, int]) -> None:
    areas = busy_from(busy)
    m = VmallocModel.from_snapshot(areas, VSTART, VSTART + 2048 * P, rules_for(version))
    taken = [(a.start, a.end) for a in areas]
    for size, align, ioremap in reqs:
        request = VmallocRequest(size, align, ioremap=ioremap, vm_alloc=not ioremap)
        placed = m.alloc(request)
        if placed is None:
            continue
        for p in (placed, placed.pages_array):
            if p is None:
                continue
            assert p.start >= VSTART and p.end <= VSTART + 2048 * P
            assert all(p.end <= s or e <= p.start for s, e in taken)
            taken.append((p.start, p.end))
        assert placed.start % request.effective_align() == 0
        assert placed.size == request.va_size()


@settings(max_examples=150, deadline=None)
@given(intervals, st.lists(st.integers(1, 64), min_size=1, max_size=3), st.sampled_from([(5, 10), (6, 1)]))
def test_capacity_equals_one_by_one_simulation(busy: list[tuple[int, int]], chunks: list[int],
                                              version: tuple[int, int]) -> None:
    end = VSTART + 2048 * P
    areas = busy_from(busy)
    free = FreeMap.from_snapshot(areas, VSTART, end)
    phases = capacity(free, chunks, rules_for(version))
    m = VmallocModel(free.copy(), rules_for(version))
    for pages, phase in zip(chunks, phases, strict=True):
        starts = []
        while (p := m.alloc(VmallocRequest(pages * P, vm_alloc=False))) is not None:
            starts.append(p.start)
        assert (phase.count, phase.first, phase.last) == (len(starts), starts[0] if starts else None,
                                                          starts[-1] if starts else None)
