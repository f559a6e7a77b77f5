"""The bring-up report: one self-contained HTML page (inline CSS and SVG, no script, no network)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import jinja2

from analysis.model.units import format_version
from analysis.report.fmt import addr, human, span
from analysis.report.headroom import Headroom, WhatIf, verdict_headroom
from analysis.report.rules import GUARD_RULE, RuleLine, guard_count, layout_rules
from analysis.report.snapshot import pick_snapshot
from analysis.report.svgmap import STRIP_W, STRIP_X, MapDrawing, choose_map
from analysis.verify.check import Check, summarize
from analysis.verify.infer import InferredContext
from analysis.verify.report import summary_line, worst_first
from analysis.verify.verify import BundleVerdict
from kit.errors import UserError

_TEMPLATE = "report.html.j2"


@dataclass(frozen=True)
class Page:
    title: str
    facts: tuple[tuple[str, str], ...]
    summary: str
    counts: dict[str, int]
    cannot_show: tuple[str, ...]
    snapshot: str | None
    drawing: MapDrawing
    headroom: Headroom
    headroom_rows: tuple[tuple[str, str], ...]
    what_if: tuple[WhatIf, ...]           # the layout as booted first, then each vmalloc=N
    rules: tuple[RuleLine, ...]
    guard: str
    checks: tuple[Check, ...]
    notes: tuple[str, ...]


def _facts(verdict: BundleVerdict) -> tuple[tuple[str, str], ...]:
    ctx = verdict.context
    release = ctx.release or (verdict.bundle.boot.release if verdict.bundle.boot is not None else None)
    banks = ", ".join(f"{human(size)} at {addr(base)}" for base, size in ctx.banks) or "unknown"
    return (("bundle", str(verdict.bundle.path)),
            ("kernel", f"{release or '?'} (model version {format_version(ctx.version) if ctx.version else '?'})"),
            ("arch", ctx.arch or "unknown"), ("RAM banks", banks), ("command line", ctx.cmdline or "(none)"))


def headroom_rows(h: Headroom) -> tuple[tuple[str, str], ...]:
    """The headroom table: (what, value) in words, only the rows that are known."""
    rows: list[tuple[str, str]] = []
    if h.vmalloc is not None:
        rows.append(("vmalloc area", f"{span(h.vmalloc.start, h.vmalloc.end)}, {human(h.vmalloc.size)} "
                                     f"(from {h.vmalloc.source})"))
    if h.meminfo_total_kb is not None:
        used = "" if h.meminfo_used_kb is None else f", VmallocUsed {h.meminfo_used_kb} kB (pages only)"
        rows.append(("meminfo", f"VmallocTotal {h.meminfo_total_kb} kB = {human(h.meminfo_total_kb << 10)}{used}"))
    if h.used is not None and h.vmalloc is not None:
        rows.append(("vmalloc used / free", f"{human(h.used)} used, {human(h.vmalloc.size - h.used)} free "
                                            "(areas with their guard pages, as the snapshot shows them)"))
    elif h.areas_bytes is not None:
        rows.append(("snapshot areas", f"{human(h.areas_bytes)} in all (guard pages included)"))
    largest, frag = h.largest, h.fragmentation
    if largest is not None and h.holes is not None:
        end = largest.start + largest.size
        rows.append(("largest free block", f"{human(largest.size)} at {span(largest.start, end)}"))
        rows.append(("fragmentation", f"{len(h.holes)} free holes; 1 - largest / free = {frag or 0:.2%}"))
    if h.modules is not None:
        rows.append(("modules area", f"{span(h.modules.start, h.modules.end)}, {human(h.modules.size)}"))
    if h.modules_extent is not None:
        left = "" if h.modules_left is None else f"; {human(h.modules_left)} left above the highest"
        rows.append(("modules used", f"{span(h.modules_extent.start, h.modules_extent.end)} "
                                     f"({human(h.modules_used or 0)}, from {h.modules_extent.source}){left}"))
    elif h.modules_used == 0:
        rows.append(("modules used", "none loaded"))
    if h.lowmem is not None:
        high = "unknown" if h.highmem is None else human(h.highmem)
        rows.append(("lowmem / highmem", f"{human(h.lowmem)} / {high} (from {h.split_source})"))
    return tuple(rows)


def _notes(verdict: BundleVerdict) -> tuple[str, ...]:
    ctx = verdict.context
    notes = list(ctx.notes) if isinstance(ctx, InferredContext) else []
    if ctx.layout is not None:
        notes += ctx.layout.notes
    return tuple(notes)


def build_page(verdict: BundleVerdict) -> Page:
    """Everything the template shows, computed from the verdict."""
    bundle, ctx = verdict.bundle, verdict.context
    snapshot = pick_snapshot(bundle)
    entries = snapshot.entries if snapshot is not None else ()
    h = verdict_headroom(verdict)
    drawing = choose_map(ctx.layout, ctx.why_no_layout, bundle.boot, entries)
    guarded, with_pages = guard_count(entries)
    guard = GUARD_RULE + (f" In this snapshot {guarded} of {with_pages} pages=N areas are N + 1 pages."
                          if with_pages else "")
    cannot = list(dict.fromkeys([*h.unknown, *drawing.notes]))
    what_if: tuple[WhatIf, ...] = ()
    if ctx.layout is None:
        cannot.append("the layout rules and the vmalloc= what-if: they need the layout model")
    else:
        lay = ctx.layout
        booted = WhatIf("as booted", lay.VMALLOC_START, lay.VMALLOC_END - lay.VMALLOC_START,
                        lay.lowmem_bytes, lay.highmem_bytes)
        what_if = (booted, *h.what_if)
    return Page(
        title=f"Bring-up report: {bundle.path.name}", facts=_facts(verdict),
        summary=summary_line(verdict.checks), counts=summarize(verdict.checks), cannot_show=tuple(cannot),
        snapshot=snapshot.label if snapshot is not None else None, drawing=drawing, headroom=h,
        headroom_rows=headroom_rows(h), what_if=what_if,
        rules=tuple(layout_rules(ctx.layout, ctx.cmdline)) if ctx.layout is not None else (),
        guard=guard, checks=tuple(worst_first(verdict.checks)), notes=_notes(verdict))


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(Path(__file__).parent), autoescape=True,
                             undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters.update(addr=addr, human=human)
    env.globals.update(strip_x=STRIP_X, strip_w=STRIP_W)
    return env


def render_report(verdict: BundleVerdict) -> str:
    return _environment().get_template(_TEMPLATE).render(page=build_page(verdict))


def write_report(verdict: BundleVerdict, path: Path) -> None:
    """Write the page to ``path``. Raises UserError when it cannot be written."""
    text = render_report(verdict)
    try:
        path.write_text(text, encoding="utf-8")
    except OSError as err:
        raise UserError(f"cannot write the report {path}: {err.strerror or err}; pass a writable path") from err
