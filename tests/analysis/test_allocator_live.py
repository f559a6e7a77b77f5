"""The allocator model against kh5alloc's real allocations (tests/data/live/src/kh5alloc/kh5alloc.c).

The module calls vm_unmap_aliases(), makes the requests below (printing each address), and then
fills the vmalloc area with vmap() (256-page chunks, then 1-page chunks) before releasing the fill.
The free map at that time is the busy lines of the snapshots around insmod minus the module's own
areas (callers inside the module print as raw 0xbf... addresses); a line in "before" but not in
"during" (a process stack freed meanwhile) is kept busy, since it was live while insmod ran.
"""

from __future__ import annotations

import pytest

from analysis.model.allocator import (
    PAGE_SIZE,
    FreeMap,
    Placement,
    VmallocModel,
    VmallocRequest,
    capacity,
    rules_for,
)
from analysis.parsers.vmallocinfo import VmallocEntry
from tests.analysis import _live

SEQUENCE: list[tuple[str, VmallocRequest]] = [
    ("subpage", VmallocRequest(100)),
    ("several", VmallocRequest(5 * PAGE_SIZE + 1)),
    ("freed", VmallocRequest(2 * PAGE_SIZE)),
    ("big", VmallocRequest(1025 * PAGE_SIZE)),  # 4100-byte page array: vmalloc'ed (" vpages")
    ("vzalloc", VmallocRequest(3 * PAGE_SIZE)),
    ("user", VmallocRequest(3 * PAGE_SIZE, align=4 * PAGE_SIZE)),  # vmalloc_user: SHMLBA on ARM
    ("uart", VmallocRequest(0x1000, ioremap=True, vm_alloc=False)),
    ("large", VmallocRequest(0x30000, ioremap=True, vm_alloc=False)),  # 256 KiB aligned
]
AFTER_FREE: list[tuple[str, VmallocRequest]] = [
    ("after_free", VmallocRequest(PAGE_SIZE)),  # must not reuse "freed": it is only lazily freed
    ("sixtyfour", VmallocRequest(64 * PAGE_SIZE)),
]


def own(entry: VmallocEntry) -> bool:
    return bool(entry.caller and entry.caller.startswith("0xbf"))


def busy_at_insmod(version: str) -> list[VmallocEntry]:
    before = _live.vmallocinfo(version, "kh5alloc", "before")
    during = _live.vmallocinfo(version, "kh5alloc", "during")
    starts = {e.start for e in during}
    return [e for e in during if not own(e)] + [e for e in before if e.start not in starts]


def replay(version: str) -> tuple[dict[str, int], int, VmallocModel]:
    """Model every request; where the model allows several addresses, follow the observed one."""
    seen = _live.dmesg_fields(version, "seq")
    model = VmallocModel.from_snapshot(busy_at_insmod(version), _live.vmalloc_start(version),
                                       _live.VMALLOC_END, rules_for(_live.VERSIONS[version]))
    predicted: dict[str, int] = {}
    placements: dict[str, Placement | None] = {}
    ambiguous = 0
    for name, request in SEQUENCE + AFTER_FREE:
        if name == "after_free":
            freed = placements["freed"]
            assert freed is not None
            model.free_area(freed)
        options = model.candidates(request.va_size(), request.effective_align())
        predicted[name] = options[0]
        ambiguous += len(options) > 1
        assert seen[name] in options, (name, hex(seen[name]), [hex(o) for o in options])
        placements[name] = model.alloc(request, at=seen[name])
    return predicted, ambiguous, model


@pytest.mark.parametrize("version", list(_live.VERSIONS))
def test_every_address_is_a_first_fit_candidate(version: str) -> None:
    replay(version)


@pytest.mark.parametrize("version", ["6.1", "6.12"])
def test_exact_first_fit_on_6x(version: str) -> None:
    """6.1+ prune by size only for align <= PAGE_SIZE: the model's single answer is the kernel's."""
    predicted, ambiguous, _ = replay(version)
    assert ambiguous == 0
    assert predicted == {k: v for k, v in _live.dmesg_fields(version, "seq").items() if k in predicted}


def test_510_prunes_page_aligned_ioremap_by_size_plus_align() -> None:
    """5.10 find_vmap_lowest_match uses length = size + align - 1 for every request: the 1-page ioremap
    (align 4 KiB) has several candidates and the kernel took a lower exact-size hole on its search path."""
    predicted, ambiguous, _ = replay("5.10")
    seen = _live.dmesg_fields("5.10", "seq")
    assert ambiguous >= 1
    assert seen["uart"] < predicted["uart"]
    assert all(predicted[k] == seen[k] for k in ("subpage", "several", "freed", "big", "vzalloc"))


def test_nested_page_array_of_big_is_vmalloced_with_the_same_caller() -> None:
    """__vmalloc_area_node: 1025 pointers = 4100 bytes > PAGE_SIZE -> its own 2-page (+guard) area."""
    for version in _live.VERSIONS:
        during = _live.vmallocinfo(version, "kh5alloc", "during")
        big = next(e for e in during if e.start == _live.dmesg_fields(version, "seq")["big"])
        arrays = [e for e in during if e.caller == big.caller and e is not big]
        assert "vpages" in big.flags and [(a.size, a.pages) for a in arrays] == [(3 * PAGE_SIZE, 2)]


@pytest.mark.parametrize("version", list(_live.VERSIONS))
def test_capacity_matches_the_vmap_fill(version: str) -> None:
    seen = _live.dmesg_fields(version, "seq")
    fill = _live.dmesg_fields(version, "fill")
    before = _live.vmallocinfo(version, "kh5alloc", "before")
    during = _live.vmallocinfo(version, "kh5alloc", "during")
    starts = {e.start for e in during}
    busy = during + [e for e in before if e.start not in starts]
    free = FreeMap.from_snapshot(busy, _live.vmalloc_start(version), _live.VMALLOC_END)
    freed = (seen["freed"], seen["freed"] + 3 * PAGE_SIZE)  # lazily freed: usable after the first failure
    free.reserve(*freed)
    big, small = capacity(free, (256, 1), rules_for(_live.VERSIONS[version]), lazy=[freed])
    assert (big.count, big.first, big.last) == (fill["big_count"], fill["big_first"], fill["big_last"])
    assert (small.count, small.first, small.last) == (fill["small_count"], fill["small_first"],
                                                      fill["small_last"])
