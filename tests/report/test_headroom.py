"""Headroom numbers against values read by eye from the captures (hex arithmetic done by hand)."""

from __future__ import annotations

from pathlib import Path

import pytest

from analysis.report.headroom import Headroom, Hole, Window, free_holes, headroom, headroom_lines, verdict_headroom
from analysis.report.snapshot import Snapshot, pick_snapshot
from analysis.verify.verify import verify_bundle
from tests.report._data import FULLHAN, HASHED, RPI, RUN_5_10, RUN_6_1, MiB, fullhan_snapshot_only, verdict


def _headroom(path: Path) -> Headroom:
    return verdict_headroom(verdict(path))


def test_fullhan_board_vmalloc_headroom() -> None:
    """FH8856, mem=36M: vmalloc 0xc2800000-0xff800000 (layout block). The areas end at 0xc60b5000
    (n_tty_open), the static iotable maps start at 0xfe000000: that is the largest free block."""
    h = _headroom(FULLHAN)
    assert h.vmalloc is not None and (h.vmalloc.start, h.vmalloc.end) == (0xC2800000, 0xFF800000)
    assert h.meminfo_total_kb == 999424
    assert h.largest == Hole(0xC60B5000, 0xFE000000 - 0xC60B5000)
    assert h.largest.size == 0x37F4B000
    assert h.holes is not None
    assert h.holes[0] == Hole(0xC2800000, 0x4000)                 # first area at 0xc2804000
    assert h.holes[-1] == Hole(0xFE0E4000, 0xFF800000 - 0xFE0E4000)  # after the last iotable map
    # the areas do not overlap: used is the plain sum of the sizes of the lines at or above 0xc2800000
    sizes = [int(line.split()[1]) for line in (FULLHAN / "vmallocinfo.txt").read_text().splitlines()
             if line.startswith("0x") and int(line[2:10], 16) >= 0xC2800000]
    assert h.used == sum(sizes) and len(sizes) == 89
    assert h.free == 976 * MiB - sum(sizes)
    assert h.fragmentation == pytest.approx(1 - 0x37F4B000 / (976 * MiB - sum(sizes)))


def test_fullhan_modules_and_split() -> None:
    """Eight load_module lines, 0xbf000000 to 0xbf0dc000; no HIGHMEM: modules end at PAGE_OFFSET."""
    h = _headroom(FULLHAN)
    assert h.modules == Window(0xBF000000, 0xC0000000, "the layout model")
    assert h.modules_extent is not None
    assert (h.modules_extent.start, h.modules_extent.end) == (0xBF000000, 0xBF0DC000)
    assert h.modules_used == 16384 + 20480 + 151552 + 86016 + 126976 + 167936 + 81920 + 90112
    assert h.modules_left == 0xC0000000 - 0xBF0DC000
    assert (h.lowmem, h.highmem) == (36 * MiB, 0)


def test_fullhan_what_if_keeps_vmalloc_start_because_mem_limits_lowmem() -> None:
    """mem=36M leaves lowmem far below any vmalloc= limit: VMALLOC_START stays 0xc2800000."""
    h = _headroom(FULLHAN)
    assert [w.arg for w in h.what_if] == ["128M", "256M", "384M", "480M"]
    assert {(w.vmalloc_start, w.vmalloc_size, w.lowmem) for w in h.what_if} == {(0xC2800000, 976 * MiB, 36 * MiB)}


def test_qemu_6_1_run_uses_the_last_runs_during_snapshot() -> None:
    """kit_alloc ran last (status.txt); its during snapshot ends with the 32 x 68 KiB loop at 0xf0bbc000,
    then pci_reserve_io at 0xfee00000: the largest free block lies between them."""
    h = _headroom(RUN_6_1)
    assert h.snapshot is not None and h.snapshot.startswith("vmallocinfo/kit_alloc.during.txt")
    assert h.largest == Hole(0xF0BBC000, 0xFEE00000 - 0xF0BBC000)
    assert h.meminfo_total_kb == 245760 and h.vmalloc is not None and h.vmalloc.size == 245760 << 10
    # kit_alloc's two load_module lines: 0xbf000000-0xbf005000 and 0xbf005000-0xbf00a000
    assert h.modules_extent is not None and (h.modules_extent.start, h.modules_extent.end) == (0xBF000000, 0xBF00A000)
    assert h.modules_left == 0xBFE00000 - 0xBF00A000
    assert (h.lowmem, h.highmem) == (768 * MiB, 256 * MiB)


def test_what_if_differs_between_the_5_10_and_6_1_rules() -> None:
    """vmalloc=256M. 6.1 (vmalloc_size): limit 0xff800000 - 256M - 8M = 0xef000000, VMALLOC_START
    0xef800000, lowmem 752 MiB. 5.10 (vmalloc_min = VMALLOC_END - size): high_memory 0xef800000,
    VMALLOC_START (0xef800000 + 8M) & ~(8M - 1) = 0xf0000000, 248 MiB, lowmem 760 MiB."""
    new = {w.arg: w for w in _headroom(RUN_6_1).what_if}["256M"]
    old = {w.arg: w for w in _headroom(RUN_5_10).what_if}["256M"]
    assert (new.vmalloc_start, new.vmalloc_size, new.lowmem, new.highmem) == (0xEF800000, 256 * MiB, 752 * MiB,
                                                                              272 * MiB)
    assert (old.vmalloc_start, old.vmalloc_size, old.lowmem) == (0xF0000000, 248 * MiB, 760 * MiB)


def test_free_holes_counts_the_window_edges() -> None:
    from analysis.parsers import parse_vmallocinfo
    entries = parse_vmallocinfo("0x1000-0x3000 8192 a pages=1 vmalloc\n0x5000-0x6000 4096 b\n")
    assert free_holes(entries, Window(0x0, 0x8000, "t")) == (Hole(0x0, 0x1000), Hole(0x3000, 0x2000),
                                                            Hole(0x6000, 0x2000))


def test_partial_capture_without_layout(tmp_path: Path) -> None:
    v = verify_bundle(fullhan_snapshot_only(tmp_path))
    assert v.context.layout is None
    h = headroom(v.context, pick_snapshot(v.bundle), v.bundle.meminfo, v.bundle.boot)
    assert h.vmalloc is None and h.holes is None and h.what_if == ()
    sizes = [int(line.split()[1]) for line in (FULLHAN / "vmallocinfo.txt").read_text().splitlines()
             if line.startswith("0x")]
    assert len(sizes) == 97 and h.areas_bytes == sum(sizes) == 741376 + 37355520
    assert any("no layout model" in why for why in h.unknown)
    assert any("vmalloc window unknown" in why for why in h.unknown)


def test_hashed_snapshot_places_nothing() -> None:
    h = _headroom(HASHED)
    assert h.holes is None and h.used is None
    assert any("hashed" in why for why in h.unknown)


def test_modules_only_capture_takes_proc_modules() -> None:
    """rpi-4.14: /proc/modules only; lowest address 0x7f000000 (its VMSPLIT_2G modules area)."""
    h = _headroom(RPI)
    assert h.modules_extent is not None and h.modules_extent.start == 0x7F000000
    assert "/proc/modules" in h.modules_extent.source


def test_headroom_lines_are_few_and_carry_the_numbers() -> None:
    lines = headroom_lines(_headroom(FULLHAN))
    assert 1 <= len(lines) <= 6 and all(len(line) < 120 for line in lines)
    text = "\n".join(lines)
    assert "0xc2800000-0xff800000 976 MiB" in text
    assert "largest free block 895.3 MiB at 0xc60b5000; 63 holes" in text  # 0x37f4b000 = 895 MiB + 300 KiB
    assert "lowmem 36 MiB, highmem 0 B" in text
    assert len(headroom_lines(_headroom(RPI))) <= 6


def test_empty_snapshot_leaves_the_whole_window_free() -> None:
    v = verdict(RUN_6_1)
    h = headroom(v.context, Snapshot("empty", (), None), None, None)
    assert h.holes == (Hole(0xF0800000, 240 * MiB),) and h.used == 0 and h.fragmentation == 0
