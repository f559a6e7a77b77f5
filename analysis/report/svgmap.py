"""The virtual memory map as drawing data for the page's inline SVG.

Each region gets a band whose height grows with log2(size) (a minimum of five rows), so a 4 KiB vector
page and a 768 MiB lowmem are both readable. Inside a band the address runs linearly in reading order
over rows of the strip (left to right, then the next row down), and each vmallocinfo area is drawn where
it lies in that raster. Bands are stacked in address order, lowest address at the top.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections.abc import Sequence
from dataclasses import dataclass

from analysis.model.layout_arm import LAST_PKMAP, PAGE_SIZE, ArmLayout
from analysis.parsers import BootLog, VmallocEntry, address_state
from analysis.report.headroom import hidden_addresses
from analysis.report.snapshot import caller_key, entry_line

STRIP_X, STRIP_W = 340, 740
WIDTH = STRIP_X + STRIP_W + 10
ROW, ROW_FILL = 6, 5          # row pitch and the filled part of it (px)
GAP_H, SPACING = 12, 6
MIN_ROWS = 5
MIN_AREA_W = 1.5
SPAN_SPLIT = 16 << 20          # spans of a bare snapshot: a free stretch this long starts a new one
PALETTE = ("#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7", "#9c755f")
OTHER = "#8c8c8c"


@dataclass(frozen=True)
class Region:
    name: str
    start: int
    end: int
    gap: bool = False

    @property
    def size(self) -> int:
        return self.end - self.start


@dataclass(frozen=True)
class Rect:
    x: float
    y: float
    w: float
    h: float


@dataclass(frozen=True)
class Band:
    region: Region
    y: int
    height: int
    rows: int


@dataclass(frozen=True)
class AreaShape:
    key: str
    colour: str
    title: str
    rects: tuple[Rect, ...]


@dataclass(frozen=True)
class LegendItem:
    key: str
    colour: str
    count: int
    size: int


@dataclass(frozen=True)
class MapDrawing:
    source: str
    width: int
    height: int
    bands: tuple[Band, ...]
    areas: tuple[AreaShape, ...]
    legend: tuple[LegendItem, ...]
    outside: tuple[str, ...]     # lines of the areas no region holds
    notes: tuple[str, ...]


def layout_regions(layout: ArmLayout) -> list[Region]:
    regions = [Region("modules", layout.MODULES_VADDR, layout.MODULES_END)]
    if layout.PKMAP_BASE is not None:
        regions.append(Region("pkmap", layout.PKMAP_BASE, layout.PKMAP_BASE + LAST_PKMAP * PAGE_SIZE))
    return [*regions,
            Region("lowmem", layout.PAGE_OFFSET, layout.high_memory),
            Region("vmalloc", layout.VMALLOC_START, layout.VMALLOC_END),
            Region("fixmap", layout.FIXADDR_START, layout.FIXADDR_END),
            Region("vectors", layout.VECTORS_BASE, layout.VECTORS_BASE + PAGE_SIZE)]


def boot_regions(boot: BootLog | None) -> list[Region]:
    """The layout block's regions (not the kernel image's .text/.data lines inside lowmem)."""
    if boot is None:
        return []
    found = [Region(name, start, end) for name, (start, end) in boot.layout.items()
             if not name.startswith(".") and start is not None and end is not None and start < end]
    return sorted(found, key=lambda region: region.start)


def span_regions(entries: Sequence[VmallocEntry]) -> list[Region]:
    """Without a layout: the snapshot's own spans (split at free stretches of 16 MiB), rounded to 1 MiB."""
    regions: list[Region] = []
    for entry in sorted(entries):
        start, end = entry.start & ~0xFFFFF, -(-entry.end // 0x100000) * 0x100000
        if regions and start - regions[-1].end < SPAN_SPLIT:
            regions[-1] = Region(regions[-1].name, regions[-1].start, max(end, regions[-1].end))
        else:
            regions.append(Region(f"span {len(regions) + 1}", start, end))
    return regions


def with_gaps(regions: Sequence[Region]) -> list[Region]:
    ordered = sorted(regions, key=lambda region: region.start)
    result: list[Region] = []
    for region in ordered:
        if result and region.start > result[-1].end:
            result.append(Region("gap", result[-1].end, region.start, gap=True))
        result.append(region)
    return result


def band_rows(size: int) -> int:
    """Rows of a band: 2 per doubling of the size above 2 KiB, at least MIN_ROWS."""
    return max(MIN_ROWS, round(2 * (math.log2(max(size, 1)) - 11)))


def area_rects(band: Band, start: int, end: int) -> tuple[Rect, ...]:
    """``[start, end)`` (clipped to the band's region) as at most three rects of the band's raster."""
    region = band.region
    per_row = region.size / band.rows
    first = (max(start, region.start) - region.start) / per_row
    last = (min(end, region.end) - region.start) / per_row
    row1, row2 = int(first), max(int(first), math.ceil(last) - 1)
    def row_y(row: int) -> float:
        return band.y + row * ROW
    def x(position: float, row: int) -> float:
        return STRIP_X + (position - row) * STRIP_W
    if row1 == row2:
        return (Rect(x(first, row1), row_y(row1), max(MIN_AREA_W, (last - first) * STRIP_W), ROW_FILL),)
    rects = [Rect(x(first, row1), row_y(row1), max(MIN_AREA_W, STRIP_X + STRIP_W - x(first, row1)), ROW_FILL)]
    if row2 - row1 > 1:
        rects.append(Rect(STRIP_X, row_y(row1 + 1), STRIP_W, (row2 - row1 - 1) * ROW - (ROW - ROW_FILL)))
    rects.append(Rect(STRIP_X, row_y(row2), max(MIN_AREA_W, x(last, row2) - STRIP_X), ROW_FILL))
    return tuple(rects)


def _bands(regions: Sequence[Region]) -> list[Band]:
    bands, y = [], SPACING
    for region in with_gaps(regions):
        rows = 0 if region.gap else band_rows(region.size)
        height = GAP_H if region.gap else rows * ROW
        bands.append(Band(region, y, height, rows))
        y += height + SPACING
    return bands


def _legend(entries: Sequence[VmallocEntry], keys: Sequence[str]) -> dict[str, LegendItem]:
    totals: dict[str, list[int]] = {}
    for entry, key in zip(entries, keys, strict=True):
        count_size = totals.setdefault(key, [0, 0])
        count_size[0] += 1
        count_size[1] += entry.size
    ranked = sorted(totals, key=lambda key: (-totals[key][1], key))
    named = ranked[: len(PALETTE)] if len(ranked) <= len(PALETTE) else ranked[: len(PALETTE) - 1]
    legend = {key: LegendItem(key, PALETTE[i], *totals[key]) for i, key in enumerate(named)}
    rest = [key for key in ranked if key not in legend]
    if rest:
        legend["other"] = LegendItem(f"other ({len(rest)} callers)", OTHER,
                                     sum(totals[key][0] for key in rest), sum(totals[key][1] for key in rest))
    return legend


def draw_map(regions: Sequence[Region], source: str, entries: Sequence[VmallocEntry],
             modules_window: tuple[int, int] | None = None, notes: Sequence[str] = ()) -> MapDrawing:
    """Bands for ``regions`` (plus the gaps between them) and every entry placed in its region's band."""
    bands = _bands(regions)
    solid = [band for band in bands if not band.region.gap]
    starts = [band.region.start for band in solid]
    keys = [caller_key(entry, modules_window) for entry in entries]
    legend = _legend(entries, keys)
    shapes, outside = [], []
    for entry, key in sorted(zip(entries, keys, strict=True), key=lambda pair: pair[0].start):
        index = bisect_right(starts, entry.start) - 1
        if index < 0 or entry.start >= solid[index].region.end:
            outside.append(entry_line(entry))
            continue
        item = legend.get(key, legend.get("other"))
        colour = item.colour if item is not None else OTHER
        shapes.append(AreaShape(key, colour, entry_line(entry), area_rects(solid[index], entry.start, entry.end)))
    height = bands[-1].y + bands[-1].height + SPACING if bands else 2 * SPACING
    return MapDrawing(source, WIDTH, height, tuple(bands), tuple(shapes), tuple(legend.values()),
                      tuple(outside), tuple(notes))


def choose_map(layout: ArmLayout | None, why_no_layout: str | None, boot: BootLog | None,
               entries: Sequence[VmallocEntry]) -> MapDrawing:
    """The map from the layout model, else the boot log's layout block, else the snapshot's spans."""
    notes: list[str] = []
    state = address_state(list(entries))
    if state in ("zeroed", "hashed"):
        notes.append(hidden_addresses(state))
        entries = ()
    window = (layout.MODULES_VADDR, layout.MODULES_END) if layout is not None else None
    if layout is not None:
        return draw_map(layout_regions(layout), "the layout model (analysis/model/layout_arm.py)", entries,
                        window, notes)
    notes.append(f"no layout model: {why_no_layout or 'unknown reason'}")
    block = boot_regions(boot)
    if block:
        modules = next(((r.start, r.end) for r in block if r.name == "modules"), None)
        return draw_map(block, "the boot log's 'Virtual kernel memory layout' block", entries, modules, notes)
    notes.append("no 'Virtual kernel memory layout' block (no boot log, or none in it): the regions drawn "
                 "are the snapshot's own spans")
    if not entries:
        notes.append("no vmallocinfo snapshot with real addresses either: there is nothing to draw")
    return draw_map(span_regions(entries), "the snapshot's spans (no layout, no layout block)", entries,
                    None, notes)
