"""The map's regions, bands and area placement for real layouts and snapshots."""

from __future__ import annotations

import itertools
from pathlib import Path

from analysis.report.snapshot import Snapshot, caller_key, pick_snapshot
from analysis.report.svgmap import (
    MIN_ROWS,
    PALETTE,
    ROW,
    ROW_FILL,
    STRIP_W,
    STRIP_X,
    Band,
    MapDrawing,
    Region,
    area_rects,
    boot_regions,
    choose_map,
    layout_regions,
    span_regions,
)
from analysis.verify.verify import verify_bundle
from tests.report._data import FULLHAN, RUN_6_1, X86, MiB, fullhan_snapshot_only, verdict


def _map_6_1() -> tuple[MapDrawing, Snapshot]:
    v = verdict(RUN_6_1)
    snapshot = pick_snapshot(v.bundle)
    assert snapshot is not None
    return choose_map(v.context.layout, v.context.why_no_layout, v.bundle.boot, snapshot.entries), snapshot


def test_qemu_6_1_regions_in_address_order_with_sizes() -> None:
    """1 GiB at 0x40000000, VMSPLIT_3G, HIGHMEM: the Debian armmp layout of the QEMU virt guest."""
    layout = verdict(RUN_6_1).context.layout
    assert layout is not None
    got = [(r.name, r.start, r.end - r.start) for r in layout_regions(layout)]
    assert got == [("modules", 0xBF000000, 14 * MiB), ("pkmap", 0xBFE00000, 2 * MiB),
                   ("lowmem", 0xC0000000, 768 * MiB), ("vmalloc", 0xF0800000, 240 * MiB),
                   ("fixmap", 0xFFC80000, 0x280000), ("vectors", 0xFFFF0000, 0x1000)]


def test_bands_are_stacked_in_address_order_with_log_heights() -> None:
    drawing, _ = _map_6_1()
    bands = drawing.bands
    assert [b.region.start for b in bands] == sorted(b.region.start for b in bands)
    assert all(a.y + a.height < b.y for a, b in itertools.pairwise(bands))
    gaps = [(b.region.start, b.region.end) for b in bands if b.region.gap]
    assert gaps == [(0xF0000000, 0xF0800000), (0xFF800000, 0xFFC80000), (0xFFF00000, 0xFFFF0000)]
    height = {b.region.name: b.height for b in bands if not b.region.gap}
    assert height["vectors"] == MIN_ROWS * ROW                     # 4 KiB: the minimum
    assert height["pkmap"] < height["modules"] < height["vmalloc"] < height["lowmem"]
    assert height["lowmem"] < 10 * height["vectors"]               # 768 MiB vs 4 KiB, not 196608 x


def test_every_area_of_the_snapshot_is_drawn_in_its_regions_band() -> None:
    drawing, snapshot = _map_6_1()
    assert len(drawing.areas) == len(snapshot.entries) == 98 and drawing.outside == ()
    bands = {b.region.name: b for b in drawing.bands}
    for area in drawing.areas:
        start = int(area.title[2:10], 16)
        band = bands["modules"] if start < 0xC0000000 else bands["vmalloc"]
        assert all(band.y <= r.y and r.y + r.h <= band.y + band.height for r in area.rects), area.title
        assert all(STRIP_X <= r.x < STRIP_X + STRIP_W for r in area.rects)


def test_areas_are_linear_within_a_band() -> None:
    """pci_reserve_io 0xfee00000-0xff000000 is 2 MiB of the 240 MiB vmalloc band: the rows it covers
    add up to 2/240 of the band's rows x strip width, starting 0xe600000/0xf000000 of the way in."""
    drawing, _ = _map_6_1()
    band = next(b for b in drawing.bands if b.region.name == "vmalloc")
    area = next(a for a in drawing.areas if a.title.startswith("0xfee00000-0xff000000"))
    assert area.key == "pci_reserve_io"
    drawn = sum(r.w * (r.h + ROW - ROW_FILL) / ROW for r in area.rects)  # a middle block spans rows
    assert abs(drawn - 2 / 240 * band.rows * STRIP_W) < 0.5
    first = area.rects[0]
    position = (first.y - band.y) / ROW * STRIP_W + (first.x - STRIP_X)
    assert abs(position - 0xE600000 / 0xF000000 * band.rows * STRIP_W) < 0.5


def test_area_rects_split_over_rows() -> None:
    band = Band(Region("r", 0, 4 * MiB), y=60, height=4 * ROW, rows=4)
    assert len(area_rects(band, 0, MiB)) == 1                            # exactly one row
    rects = area_rects(band, MiB // 2, 3 * MiB + MiB // 2)               # half, two full rows, half
    assert [round(r.x) for r in rects] == [STRIP_X + STRIP_W // 2, STRIP_X, STRIP_X]
    assert [r.y for r in rects] == [60, 66, 78]
    assert rects[1].h == 2 * ROW - 1


def test_legend_colours_by_module_and_caller() -> None:
    v = verdict(FULLHAN)
    snapshot = pick_snapshot(v.bundle)
    assert snapshot is not None
    drawing = choose_map(v.context.layout, None, v.bundle.boot, snapshot.entries)
    keys = [item.key for item in drawing.legend]
    assert keys[0] == "[vpu]"       # vpu_create_channel's 25382912-byte ioremap is the largest
    assert {"[isp]", "[enc]", "load_module"} <= set(keys) and len(keys) <= len(PALETTE) + 1
    assert {item.colour for item in drawing.legend if not item.key.startswith("other")} <= set(PALETTE)
    isp = [line for line in snapshot.entries if line.caller_module == "isp"]
    assert caller_key(isp[0], None) == "[isp]"


def test_unsymbolised_caller_in_the_modules_area_is_module_code() -> None:
    _, snapshot = _map_6_1()
    loop = [e for e in snapshot.entries if e.caller == "0xbf0052a8"]
    assert len(loop) == 32 and caller_key(loop[0], (0xBF000000, 0xBFE00000)) == "module code (no symbol)"


def test_boot_block_regions_without_layout() -> None:
    """x86-32 3.8.0 (vmalloc=512MB): the block's four regions, the .text/.data lines left out."""
    v = verdict(X86)
    assert v.context.layout is None
    got = [(r.name, r.start, r.end) for r in boot_regions(v.bundle.boot)]
    assert got == [("lowmem", 0xC0000000, 0xDF3FE000), ("vmalloc", 0xDFBFE000, 0xFFBFE000),
                   ("pkmap", 0xFFC00000, 0xFFE00000), ("fixmap", 0xFFF14000, 0xFFFFF000)]
    drawing = choose_map(None, v.context.why_no_layout, v.bundle.boot, ())
    assert "layout' block" in drawing.source and any("not modelled" in n for n in drawing.notes)


def test_snapshot_spans_when_nothing_else_is_known(tmp_path: Path) -> None:
    """FH8856 lines alone: modules 0xbf000000.., vmalloc 0xc2804000..0xc60b5000, iotable 0xfe000000..."""
    v = verify_bundle(fullhan_snapshot_only(tmp_path))
    snapshot = pick_snapshot(v.bundle)
    assert snapshot is not None
    assert [(r.start, r.end) for r in span_regions(snapshot.entries)] == [
        (0xBF000000, 0xBF100000), (0xC2800000, 0xC6100000), (0xFE000000, 0xFE100000)]
    drawing = choose_map(None, v.context.why_no_layout, v.bundle.boot, snapshot.entries)
    assert len(drawing.areas) == 97 and drawing.outside == ()
