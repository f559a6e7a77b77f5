"""pkmap slot sequence (mm/highmem.c map_new_virtual/flush_all_zero_pkmaps/kmap_high) and fixmap
kmap_atomic/kmap_local addresses (spec §4.2-4.3)."""

from __future__ import annotations

import pytest

from analysis.model.banner import model_layout
from analysis.model.kmap import (
    PkmapModel,
    kmap_atomic_address,
    kmap_local_address,
    kmap_local_available,
    kmap_lowmem,
    lowmem_page_address,
    predict_kmap_sequence,
)
from kit.errors import UserError

BASE = 0xBFE00000


def test_pristine_boot_sequence_starts_at_slot_1() -> None:
    """last_pkmap_nr starts at 0 and is incremented before use: slots 1, 2, 3 ..."""
    model = PkmapModel(1)
    assert [model.kmap(n) for n in range(3)] == [0xBFE01000, 0xBFE02000, 0xBFE03000]


def test_wrap_flushes_and_uses_slot_0_then_unmapped_slots() -> None:
    """At the wrap (last_pkmap_nr back to 0) flush_all_zero_pkmaps frees count-1 slots; slot 0 first."""
    assert predict_kmap_sequence(BASE + 510 * 4096, 4) == [
        BASE + 510 * 4096, BASE + 511 * 4096, BASE + 0, BASE + 4096]


def test_held_slots_are_skipped_after_wrap() -> None:
    model = PkmapModel(1)
    held = [model.kmap(("held", n)) for n in range(3)]          # slots 1..3, held (count 2)
    for n in range(508):                                        # slots 4..511, then unmapped
        model.kmap(("tmp", n))
        model.kunmap(("tmp", n))
    assert model.kmap("after-wrap") == BASE                     # slot 0 after the flush
    assert model.kmap("next") == BASE + 4 * 4096                # 1..3 still held: skipped
    assert held == [BASE + 4096, BASE + 2 * 4096, BASE + 3 * 4096]


def test_rekmap_returns_same_address_held_or_unmapped_not_flushed() -> None:
    """kmap_high: page_address(page) still set -> same address, count incremented."""
    model = PkmapModel(7)
    first = model.kmap("page0")
    model.kmap("page1")
    assert model.kmap("page0") == first
    model.kunmap("page0")
    model.kunmap("page0")            # count back to 1: mapped, not flushed
    assert model.kmap("page0") == first


def test_all_slots_held_would_sleep() -> None:
    model = PkmapModel(1)
    for n in range(512):
        model.kmap(n)
    with pytest.raises(UserError, match="sleep"):
        model.kmap("one too many")


def test_kunmap_of_unmapped_page_is_an_error() -> None:
    with pytest.raises(UserError):
        PkmapModel(1).kunmap("never")


def test_bad_first_address_is_rejected() -> None:
    with pytest.raises(UserError):
        PkmapModel.from_first_address(0xC0000000)


@pytest.mark.parametrize(("version", "cpu", "depth", "debug", "address"), [
    ((6, 1, 176), 0, 0, False, 0xFFEFE000),   # FIXADDR_TOP 0xffeff000 - FIX_KMAP_BEGIN(1)*4K
    ((6, 1, 176), 0, 1, False, 0xFFEFD000),   # nested
    ((6, 1, 176), 1, 0, False, 0xFFEEE000),   # CPU1: + KM_MAX_IDX(16) slots
    ((6, 12, 95), 0, 0, True, 0xFFEFD000),    # DEBUG_KMAP_LOCAL: KM_INCR 2 -> idx 1
    ((6, 12, 95), 1, 0, True, 0xFFEFD000 - 33 * 4096),  # KM_MAX_IDX 33 per CPU
    ((5, 10, 223), 0, 0, False, 0xFFEFE000),  # kmap_atomic_high_prot, KM_TYPE_NR 16
    ((5, 10, 223), 1, 2, False, 0xFFEFE000 - (16 + 2) * 4096),
    ((4, 9, 0), 0, 0, False, 0xFFEFE000),     # 3 MiB fixmap era: FIXADDR_END 0xfff00000, index 1
    ((3, 18, 0), 0, 0, False, 0xFFDFF000),    # generic 2 MiB fixmap: FIXADDR_TOP 0xffdff000, index 0
])
def test_fixmap_kmap_addresses(version: tuple[int, int, int], cpu: int, depth: int, debug: bool,
                               address: int) -> None:
    assert kmap_local_address(version, cpu, depth, debug_kmap_local=debug) == address


def test_fixmap_nesting_overflow() -> None:
    """kmap_local_idx_push BUG_ON(idx >= KM_MAX_IDX); kmap_atomic_idx_push KM_TYPE_NR."""
    assert kmap_local_address((6, 1, 176), 0, 14) == 0xFFEFE000 - 14 * 4096
    with pytest.raises(UserError):
        kmap_local_address((6, 1, 176), 0, 15)
    with pytest.raises(UserError):
        kmap_local_address((5, 10, 223), 0, 16)


def test_kmap_local_exists_from_5_11() -> None:
    assert not kmap_local_available((5, 10, 223))
    assert kmap_local_available((6, 1, 176)) and kmap_local_available((6, 12, 95))


def test_kmap_atomic_reuses_pkmap_with_kmap_high_get() -> None:
    """ARCH_NEEDS_KMAP_HIGH_GET: a page with a pkmap mapping gets its pkmap address back."""
    assert kmap_atomic_address((6, 1, 176), 0, pkmap_address=BASE + 4096, kmap_high_get=True) == BASE + 4096
    assert kmap_atomic_address((6, 1, 176), 0, pkmap_address=BASE + 4096) == 0xFFEFE000


def test_kmap_of_lowmem_is_the_linear_address() -> None:
    layout = model_layout("arm", "6.1", "1G")
    linear = lowmem_page_address(0x40123, layout)
    assert linear == 0xC0123000
    assert kmap_lowmem(linear) == linear
    with pytest.raises(UserError):
        lowmem_page_address(0x70000, layout)    # 0x70000000 = arm_lowmem_limit: highmem


def test_a_page_with_an_unflushed_mapping_gets_it_back_and_takes_no_slot() -> None:
    """Seen on a board that ran the kit twice: page 4 had been kmapped (slot 7) by the first run, freed
    with its mapping unflushed, and allocated again; kmap_high returned slot 7, the next page slot 13."""
    base = 0xBFE00000
    prior = [0, 0, 0, 0, base + 7 * 4096, 0, 0, 0]
    got = predict_kmap_sequence(base + 9 * 4096, 8, pkmap_base=base, prior=prior)
    assert [(a - base) // 4096 for a in got] == [9, 10, 11, 12, 7, 13, 14, 15]
    # without the prior mapping, page 4 would have taken slot 13
    assert (predict_kmap_sequence(base + 9 * 4096, 8, pkmap_base=base)[4] - base) // 4096 == 13


def test_the_anchor_page_must_take_a_slot_no_other_page_holds() -> None:
    from analysis.verify.families import _anchor_slot_check

    window = (0xBFE00000, 0xC0000000)
    assert _anchor_slot_check("k.0.addr", 0xBFE0A000, [None, 0xBFE07000], window).status == "pass"
    assert _anchor_slot_check("k.0.addr", 0xBFE07000, [None, 0xBFE07000], window).status == "fail"  # held
    assert _anchor_slot_check("k.0.addr", 0xBFE0A800, [None], window).status == "fail"  # not a whole slot
    assert _anchor_slot_check("k.0.addr", 0xF0000000, [None], window).status == "fail"  # outside PKMAP
    assert _anchor_slot_check("k.0.addr", None, [None], window).status == "fail"
