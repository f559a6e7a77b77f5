"""Invariants of one /proc/vmallocinfo snapshot (kernel-model.md §6.1-6.7): the guard page, the line
arithmetic, the order, no overlap, region membership and ioremap alignment. One check per snapshot and
invariant; the detail names the first offending line."""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from itertools import combinations, compress, pairwise
from operator import attrgetter, ne, sub
from pathlib import Path
from typing import Literal

from analysis.model.allocator import arm_ioremap_max_order
from analysis.model.layout_arm import PAGE_SIZE, ArmLayout
from analysis.model.units import Version
from analysis.model.versions import Row, VersionTable
from analysis.parsers import VmallocEntry
from analysis.verify.bundle import SNAPSHOTS, Bundle
from analysis.verify.check import Check, skip
from analysis.verify.context import Context

Span = tuple[int, int]

# mm/vmalloc.c __get_vm_area_node: VM_IOREMAP areas are aligned to
# 1 << clamp(get_count_order_long(size), PAGE_SHIFT, IOREMAP_MAX_ORDER) (5.10:2056, 6.1:2545, 6.12:3168);
# the 4.9.129 Fullhan capture agrees line by line. Older kernels used fls_long(size): not checked.
IoremapAlignRule = Literal["unverified", "count_order"]
IOREMAP_ALIGN: VersionTable[IoremapAlignRule] = VersionTable("ioremap alignment", (
    Row((2, 6, 0), "unverified", "mm/vmalloc.c fls_long era, not read"),
    Row((4, 9, 0), "count_order", "mm/vmalloc.c __get_vm_area_node get_count_order_long (5.10:2056)"),
))

# Busy vmallocinfo lines are address-ascending (one rbtree walk) except on 6.9+ with several vmap nodes
# (64-bit SMP only; 32-bit ARM has nr_vmap_nodes == 1: 6.12 mm/vmalloc.c vmap_init_nodes:5179).
VMAP_NODES: VersionTable[bool] = VersionTable("per-node vmallocinfo order", (
    Row((2, 6, 0), False, "mm/vmalloc.c s_show over vmap_area_list (5.10:3504, 6.1:4210)"),
    Row((6, 9, 0), True, "mm/vmalloc.c vmalloc_info_show per vmap node (6.12:5046)",
        bracket=((6, 1, 192), (6, 12, 0))),
))

# ARM static mappings (no guard page, may sit anywhere between VMALLOC_START and the fixmap):
# arch/arm/mm/mmu.c iotable_init / pci_reserve_io / pmd_empty_section_gap, ioremap.c (6.1:1020, 1133).
STATIC_CALLERS = ("iotable_init", "pci_reserve_io", "pmd_empty_section_gap", "vm_reserve_area_early",
                  "debug_ll_io_init")


def span_text(span: Span) -> str:
    return f"0x{span[0]:08x}-0x{span[1]:08x}"



@dataclass(frozen=True)
class Snapshot:
    label: str
    path: Path
    entries: list[VmallocEntry]
    line_offset: int   # provenance lines stripped before parsing

    def where(self, entry: VmallocEntry) -> str:
        return f"{self.path.name} line {entry.line + self.line_offset}"


def _leading_comment_lines(path: Path) -> int:
    with path.open(errors="replace") as file:
        if file.read(1) != "#":
            return 0  # the usual case: no provenance lines, no need to read the whole file again
    count = 0
    for line in path.read_text(errors="replace").splitlines():
        if not line.startswith("#"):
            break
        count += 1
    return count


def snapshots(bundle: Bundle) -> list[Snapshot]:
    found = []
    if bundle.vmallocinfo is not None:
        if bundle.path.is_file():  # one pasted capture (split_paste keeps its lines in place): no offset
            found.append(Snapshot("snapshot", bundle.path, bundle.vmallocinfo, 0))
        else:
            path = bundle.path / "vmallocinfo.txt"
            found.append(Snapshot("snapshot", path, bundle.vmallocinfo, _leading_comment_lines(path)))
    for run in bundle.runs:
        for when in SNAPSHOTS:
            if when in run.vmallocinfo:
                path = bundle.path / "vmallocinfo" / f"{run.name}.{when}.txt"
                found.append(Snapshot(f"{run.name}.{when}", path, run.vmallocinfo[when], 0))
    return found


def address_kind(entries: Sequence[VmallocEntry]) -> Literal["real", "zeroed", "hashed", "empty"]:
    """Like analysis.parsers.address_state, but one wrong line does not make a snapshot "hashed":
    %pK hashes each pointer alone, so a hashed file disagrees on (nearly) every line."""
    if not entries:
        return "empty"
    # The loops of the rule, run by map/any/sum (the offline checker's hot path): same values.
    if not any(map(_START, entries)) and not any(map(_END, entries)):
        return "zeroed"
    wrong = sum(map(ne, map(sub, map(_END, entries), map(_START, entries)), map(_SIZE, entries)))
    return _kind_of(wrong, len(entries))


def lines_starting_at(entries: Sequence[VmallocEntry], addresses: Collection[int | None]) -> list[VmallocEntry]:
    """The lines that start at one of ``addresses``, in their order: for a check that looks lines up by
    their start at those addresses only (crosscapture_check), the same lines as the whole snapshot."""
    return list(compress(entries, map(addresses.__contains__, map(_START, entries))))


def _kind_of(wrong: int, count: int) -> Literal["real", "hashed"]:
    return "hashed" if wrong * 2 > count else "real"


_START, _END, _SIZE = attrgetter("start"), attrgetter("end"), attrgetter("size")
_NO_SHORTFALL = 1 << 16   # above any IOREMAP_MAX_ORDER


@dataclass(frozen=True)
class EntryScan:
    """One pass over a snapshot's lines, so that the invariants need not each walk 100k lines to find
    nothing. A true ``clean_*`` means that finder certainly finds nothing; otherwise the finder runs and
    names the first offending line as before (the checks' results are the same either way)."""

    entries: Sequence[VmallocEntry]
    wrong: int              # lines with end - start != size (address_kind)
    zeroed: bool            # every start and end is 0 (address_kind)
    clean_arithmetic: bool  # _arithmetic: no such line
    clean_guard: bool       # _guard: no such line
    ascending: bool         # every line's start above the previous line's (all lines, so the busy ones too)
    disjoint: bool          # ascending, and every line ends at or before the next one starts
    wide: bool              # a line ends above 0xFFFFFFFF
    ioremap_shortfall: int  # lowest trailing-zero count of an ioremap line's start below its own order

    @property
    def address_kind(self) -> Literal["real", "zeroed", "hashed", "empty"]:
        if not self.entries:
            return "empty"
        return "zeroed" if self.zeroed else _kind_of(self.wrong, len(self.entries))

    def clean_ioremap(self, max_order: int) -> bool:
        """_ioremap_finder(max_order) finds nothing: a line it names has start % 2^min(order, max) != 0,
        so fewer than min(order, max) trailing zero bits, so the shortfall is below max_order."""
        return self.ioremap_shortfall >= max_order

    def clean_region(self, normal: Sequence[Span]) -> bool:
        """Every line (so every busy one) is inside one of the disjoint ``normal`` spans: _region_finder
        finds nothing. Lines ascending: those starting in [low, high) are one slice of them."""
        if not self.ascending or any(not (h1 <= l2 or h2 <= l1) for (l1, h1), (l2, h2) in combinations(normal, 2)):
            return False
        entries, covered = self.entries, 0
        for low, high in normal:
            first, last = bisect_left(entries, low, key=_START), bisect_left(entries, high, key=_START)
            if first < last:
                if max(map(_END, entries[first:last])) > high:
                    return False
                covered += last - first
        return covered == len(entries)


def scan_entries(entries: Sequence[VmallocEntry]) -> EntryScan:
    """The facts of EntryScan in one loop over the lines."""
    wrong = bits = seen = 0
    guard = ascending = disjoint = True
    wide = False
    shortfall = _NO_SHORTFALL
    previous_start = previous_end = entries[0].start if entries else 0
    previous_start -= 1
    for entry in entries:
        start, end, size = entry.start, entry.end, entry.size
        if end - start != size:
            wrong += 1
        bits |= start | size
        seen |= start | end
        if start <= previous_start:
            ascending = False
        if start < previous_end:
            disjoint = False
        if end > 0xFFFFFFFF:
            wide = True
        previous_start, previous_end = start, end
        flags = entry.flags
        if flags:
            pages = entry.pages
            if pages is not None and size != (pages + 1) * PAGE_SIZE and "vmalloc" in flags:
                guard = False
            if "ioremap" in flags and size > PAGE_SIZE:   # _ioremap_finder's order, without the max_order cap
                order = (size - PAGE_SIZE - 1).bit_length()
                if order < _PAGE_SHIFT:
                    order = _PAGE_SHIFT
                if start % (1 << order):
                    shortfall = min(shortfall, (start & -start).bit_length() - 1)
    return EntryScan(entries, wrong, zeroed=not seen, clean_arithmetic=not wrong and not bits % PAGE_SIZE,
                     clean_guard=guard, ascending=ascending, disjoint=ascending and disjoint, wide=wide,
                     ioremap_shortfall=shortfall)


_PAGE_SHIFT = PAGE_SIZE.bit_length() - 1


def _unless(clean: bool, finder: Finder) -> Finder:
    """``finder``, or nothing to find when the snapshot's scan shows it would find nothing."""
    return _find_nothing if clean else finder


def _find_nothing(entries: Sequence[VmallocEntry]) -> None:
    return None


Finder = Callable[[Sequence[VmallocEntry]], tuple[VmallocEntry, str] | None]


def _invariant(snap: Snapshot, name: str, finder: Finder, entries: Sequence[VmallocEntry],
               rule: str) -> Check:
    found = finder(entries)
    check_id = f"vmallocinfo.{snap.label}.{name}"
    if found is None:
        return Check(check_id, "vmallocinfo", "pass", rule, f"{len(entries)} lines hold", str(snap.path.name))
    entry, problem = found
    return Check(check_id, "vmallocinfo", "fail", rule, problem, f"first offending: {snap.where(entry)}: {problem}")


def _first(entries: Sequence[VmallocEntry], problem: Callable[[VmallocEntry], str | None]
           ) -> tuple[VmallocEntry, str] | None:
    for entry in entries:
        found = problem(entry)
        if found is not None:
            return entry, found
    return None


def _arithmetic(entry: VmallocEntry) -> str | None:
    if entry.end - entry.start != entry.size:
        return f"end - start = {entry.end - entry.start} != size {entry.size}"
    if entry.size % PAGE_SIZE or entry.start % PAGE_SIZE:
        return f"start 0x{entry.start:x} or size {entry.size} not page aligned"
    return None


def _is_static(entry: VmallocEntry) -> bool:
    return entry.caller is not None and entry.caller.split("+")[0] in STATIC_CALLERS


def _guard(entry: VmallocEntry) -> str | None:
    """§6.3: __vmalloc_area_node maps nr_pages = (size - guard) / PAGE_SIZE; no VM_NO_GUARD user prints pages=."""
    if entry.pages is None or "vmalloc" not in entry.flags:
        return None
    if entry.size != (entry.pages + 1) * PAGE_SIZE:
        return f"size {entry.size} != (pages={entry.pages} + 1) * 4096"
    return None


def _busy(entries: Sequence[VmallocEntry]) -> list[VmallocEntry]:
    return [entry for entry in entries if entry.kind != "unpurged"]


def _order(entries: Sequence[VmallocEntry]) -> tuple[VmallocEntry, str] | None:
    busy = _busy(entries)
    for previous, entry in pairwise(busy):
        if entry.start <= previous.start:
            return entry, f"0x{entry.start:x} does not follow 0x{previous.start:x} (line {previous.line})"
    return None


def _overlap(entries: Sequence[VmallocEntry]) -> tuple[VmallocEntry, str] | None:
    busy = sorted(_busy(entries), key=lambda entry: entry.start)
    for previous, entry in pairwise(busy):
        if entry.start < previous.end:
            return entry, f"starts at 0x{entry.start:x} inside line {previous.line} ending 0x{previous.end:x}"
    return None


def allowed_spans(layout: ArmLayout) -> tuple[list[Span], list[Span]]:
    """§6.5: vmalloc area and module area; static maps anywhere from VMALLOC_START up to the fixmap, and
    in lowmem: dma_contiguous_remap (arch/arm/mm/dma-mapping.c, 5.10/6.1/6.12) registers a CMA area that
    lies in lowmem with iotable_init at its linear address (seen on QEMU virt with -m 768)."""
    normal = [(layout.VMALLOC_START, layout.VMALLOC_END), (layout.MODULES_VADDR, layout.MODULES_END)]
    lowmem = (layout.PAGE_OFFSET, layout.high_memory)
    return normal, [*normal, (layout.VMALLOC_START, layout.FIXADDR_START), lowmem]


def printed_allowed_spans(printed: dict[str, Span]) -> tuple[list[Span], list[Span]] | None:
    """``allowed_spans`` from a printed layout block (no model): its vmalloc and modules lines, and static
    maps up to its fixmap line; None without a vmalloc line."""
    if "vmalloc" not in printed:
        return None
    vmalloc = printed["vmalloc"]
    normal = [vmalloc, *([printed["modules"]] if "modules" in printed else [])]
    top = printed["fixmap"][0] if "fixmap" in printed else vmalloc[1]
    return normal, [*normal, (vmalloc[0], top), *([printed["lowmem"]] if "lowmem" in printed else [])]


def _region_finder(spans: tuple[list[Span], list[Span]], scan: EntryScan | None = None) -> Finder:
    normal, static = spans
    if scan is not None and scan.clean_region(normal):
        return _find_nothing

    def problem(entry: VmallocEntry) -> str | None:
        start, end = entry.start, entry.end
        for low, high in normal:  # most lines: no need to look at the caller
            if low <= start and end <= high:
                return None
        spans = static if _is_static(entry) else normal
        if any(low <= start and end <= high for low, high in spans):
            return None
        return f"{span_text((entry.start, entry.end))} outside {', '.join(span_text(span) for span in spans)}"

    return lambda entries: _first(_busy(entries), problem)


def _ioremap_finder(max_order: int) -> Finder:
    def problem(entry: VmallocEntry) -> str | None:
        if "ioremap" not in entry.flags or _is_static(entry) or entry.size <= PAGE_SIZE:
            return None
        request = entry.size - PAGE_SIZE   # the guard is added after the alignment is chosen
        order = min(max(PAGE_SIZE.bit_length() - 1, (request - 1).bit_length()), max_order)
        if entry.start % (1 << order):
            return f"0x{entry.start:x} not aligned to 2^{order} for a {request}-byte ioremap"
        return None

    return lambda entries: _first(entries, problem)


def vmallocinfo_checks(snap: Snapshot, ctx: Context, printed: dict[str, Span] | None = None) -> list[Check]:
    """``printed``: the boot log's layout block, for the region check when there is no layout model."""
    entries = snap.entries
    scan = scan_entries(entries)
    kind = scan.address_kind
    prefix = f"vmallocinfo.{snap.label}"
    checks = [_invariant(snap, "guard", _unless(scan.clean_guard, lambda e: _first(e, _guard)), entries,
                         "vmalloc lines: size == (pages + 1) * 4096 (guard page)")]
    if kind != "real":
        reason = f"addresses are {kind} (kptr_restrict, spec §2.6): not compared"
        return checks + [skip(f"{prefix}.{name}", "vmallocinfo", reason)
                         for name in ("arithmetic", "order", "overlap", "region", "ioremap_align")]
    checks.append(_invariant(snap, "arithmetic", _unless(scan.clean_arithmetic, lambda e: _first(e, _arithmetic)),
                             entries, "end - start == size, page aligned"))
    checks.append(_order_check(snap, ctx.version, scan))
    checks.append(_invariant(snap, "overlap", _unless(scan.disjoint, _overlap), entries, "busy areas do not overlap"))
    from_block = printed_allowed_spans(printed or {}) if ctx.arch in ("arm", None) else None
    if ctx.layout is not None and ctx.arch == "arm":
        checks.append(_invariant(snap, "region", _region_finder(allowed_spans(ctx.layout), scan), entries,
                                 "in [VMALLOC_START, VMALLOC_END), the module area or static maps"))
    elif from_block is not None:
        checks.append(_invariant(snap, "region", _region_finder(from_block, scan), entries,
                                 "in the printed vmalloc or modules line, or static maps up to the fixmap "
                                 "(no layout model: " + (ctx.why_no_layout or "?") + ")"))
    else:
        checks.append(skip(f"{prefix}.region", "vmallocinfo", ctx.why_no_layout or "no layout model"))
    checks.append(_ioremap_check(snap, ctx, scan))
    return checks


def _order_check(snap: Snapshot, version: Version | None, scan: EntryScan) -> Check:
    wide = scan.wide
    grouped = (None if version is None else VMAP_NODES.value(version))
    if wide and grouped is not False:
        return skip(f"vmallocinfo.{snap.label}.order", "vmallocinfo",
                    "64-bit 6.9+ (or unknown version) groups lines per vmap node: order not defined")
    return _invariant(snap, "order", _unless(scan.ascending, _order), snap.entries, "busy lines strictly ascending")


def _ioremap_check(snap: Snapshot, ctx: Context, scan: EntryScan) -> Check:
    rule = (None if ctx.version is None else IOREMAP_ALIGN.value(ctx.version))
    if rule != "count_order" or ctx.arch not in ("arm", None):
        why = "kernel version unknown" if rule is None else f"{rule} rule for this version or arch"
        return skip(f"vmallocinfo.{snap.label}.ioremap_align", "vmallocinfo", why)
    max_order, source = arm_ioremap_max_order(ctx.config)
    return _invariant(snap, "ioremap_align", _unless(scan.clean_ioremap(max_order), _ioremap_finder(max_order)),
                      snap.entries,
                      f"ioremap start aligned to 2^clamp(order(size - guard), 12, max); {source}")
