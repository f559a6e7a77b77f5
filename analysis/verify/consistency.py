"""Offline consistency checks of one bundle against the reference model (kernel-model.md §6 "Invariants").

Families: ``layout`` (the boot log's layout block), ``meminfo``, ``vmallocinfo`` (every snapshot),
``modules`` (every /proc/modules) and ``crosscapture`` (a board capture's modules.txt vs vmallocinfo.txt).
A snapshot gets one check per invariant; the detail names the first offending line.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import pairwise
from typing import Literal, TypeVar

from analysis.model.layout_arm import PAGE_SIZE, ArmLayout, modules_range
from analysis.model.other_arches import NotModelled, x86_32_layout
from analysis.model.units import Version
from analysis.model.versions import Row, VersionTable
from analysis.parsers import ProcModule
from analysis.verify.block_invariants import block_invariant_checks, printed_spans
from analysis.verify.bundle import Bundle
from analysis.verify.check import Check, CheckStatus, compare, skip
from analysis.verify.context import Context
from analysis.verify.crosscapture import (
    crosscapture_check,
    page_align,
    per_module_checks,
    sizes_page_aligned,
    uses_mod_mem,
)
from analysis.verify.snapshot_checks import (
    Span,
    address_kind,
    lines_starting_at,
    snapshots,
    span_text,
    vmallocinfo_checks,
)

# --- version tables --------------------------------------------------------------------------------

VmallocUsedRule = Literal["unmodelled", "zero", "vmalloc_pages"]
# fs/proc/meminfo.c VmallocUsed: 3.x summed every vm area (get_vmalloc_info; not modelled); hard-coded 0
# by commit a5ad88ce8c7f "mm: get rid of 'vmalloc_info' from /proc/meminfo" (4.4); vmalloc_nr_pages()
# since commit 97105f0ab7b8 "mm: vmalloc: show number of vmalloc pages in /proc/meminfo" (5.3;
# 5.10:120, 6.1:129, 6.12:130 read). nr_vmalloc_pages counts __vmalloc_area_node pages only.
VMALLOC_USED: VersionTable[VmallocUsedRule] = VersionTable("meminfo VmallocUsed", (
    Row((2, 6, 0), "unmodelled", "fs/proc/meminfo.c get_vmalloc_info (3.x)"),
    Row((4, 4, 0), "zero", "fs/proc/meminfo.c VmallocUsed 0 (commit a5ad88ce8c7f)"),
    Row((5, 3, 0), "vmalloc_pages", "fs/proc/meminfo.c vmalloc_nr_pages (commit 97105f0ab7b8)"),
))

T = TypeVar("T")


def _version_value(table: VersionTable[T], version: Version | None) -> T | None:
    return None if version is None else table.value(version)


def _notes(ctx: Context) -> str:
    notes: tuple[str, ...] = getattr(ctx, "notes", ())
    return f" (inferred: {'; '.join(notes)})" if notes else ""


# --- layout ----------------------------------------------------------------------------------------

def arm_regions(layout: ArmLayout) -> dict[str, Span | None]:
    """arch/arm/mm/init.c mem_init (up to 5.0): every region of the block; None = not printed."""
    pkmap = None
    if layout.PKMAP_BASE is not None:
        pkmap = (layout.PKMAP_BASE, layout.PKMAP_BASE + layout.LAST_PKMAP * PAGE_SIZE)
    return {
        "vector": (layout.VECTORS_BASE, layout.VECTORS_BASE + PAGE_SIZE),
        "fixmap": (layout.FIXADDR_START, layout.FIXADDR_END),
        "vmalloc": (layout.VMALLOC_START, layout.VMALLOC_END),
        "lowmem": (layout.PAGE_OFFSET, layout.high_memory),
        "pkmap": pkmap,
        "modules": (layout.MODULES_VADDR, layout.MODULES_END),
    }


def x86_32_regions(bundle: Bundle, ctx: Context) -> dict[str, Span | None] | str:
    """arch/x86/mm/init_32.c: vmalloc and lowmem from VMALLOC_END as printed (it depends on the fixmap)."""
    assert bundle.boot is not None
    vmalloc = bundle.boot.layout.get("vmalloc")
    memory = bundle.boot.memory
    if vmalloc is None or vmalloc[1] is None or memory is None:
        return "x86-32: the block has no vmalloc end or the log no Memory: line"
    model = x86_32_layout(vmalloc[1], memory.total_kb * 1024, ctx.cmdline,
                          highmem="pkmap" in bundle.boot.layout)
    if isinstance(model, NotModelled):
        return model.reason
    return {"vmalloc": (model.VMALLOC_START, model.VMALLOC_END), "lowmem": (model.PAGE_OFFSET, model.high_memory)}


def layout_checks(bundle: Bundle, ctx: Context) -> list[Check]:
    if bundle.boot is None:
        return [skip("layout.block", "layout", "no boot.log or dmesg.txt")]
    printed = bundle.boot.layout
    if not printed:
        return [skip("layout.block", "layout", "the boot log has no 'Virtual kernel memory layout' block "
                     "(ARM stopped printing it in 5.1, commit 1c31d4e96b8c)")]
    if ctx.arch == "x86":
        regions = x86_32_regions(bundle, ctx)
        note = " (x86-32 VMALLOC_END taken from the printed vmalloc line)"
    elif ctx.layout is not None:
        regions, note = arm_regions(ctx.layout), ""
    else:
        regions, note = ctx.why_no_layout or "no layout model", ""
    if isinstance(regions, str):
        return [skip(f"layout.block.{name}", "layout", regions) for name in printed if not name.startswith(".")]
    return [_region_check(name, span, printed.get(name), note + _notes(ctx)) for name, span in regions.items()]


def _region_check(name: str, expected: Span | None, printed: tuple[int | None, int | None] | None,
                  note: str) -> Check:
    check_id = f"layout.block.{name}"
    if printed is None and expected is None:
        return compare(check_id, "layout", "not printed", "not printed", f"no such region in the model{note}")
    if printed is None:
        return skip(check_id, "layout", f"{name} is not printed in this block")
    if printed[0] is None or printed[1] is None:
        return skip(check_id, "layout", f"{name} printed as 0x(ptrval) (pointer hashing)")
    actual = span_text((printed[0], printed[1]))
    return compare(check_id, "layout", span_text(expected) if expected else "not printed", actual,
                   f"model vs boot log{note}")


# --- meminfo ---------------------------------------------------------------------------------------

def meminfo_checks(bundle: Bundle, ctx: Context) -> list[Check]:
    meminfo = bundle.meminfo
    if meminfo is None:
        return []
    printed = printed_spans(bundle.boot).get("vmalloc") if bundle.boot is not None else None
    checks = [_vmalloc_total(meminfo, ctx, printed), _low_plus_high(meminfo), _high_total(meminfo, ctx),
              _vmalloc_used(bundle, meminfo, ctx.version)]
    return checks


def _kb(value: int | None) -> str | None:
    """meminfo values as text with their unit."""
    return None if value is None else f"{value} kB"


def _vmalloc_total(meminfo: dict[str, int], ctx: Context, printed: Span | None) -> Check:
    """fs/proc/meminfo.c: VmallocTotal = (VMALLOC_END - VMALLOC_START) >> 10 (5.10:119, 6.1:128, 6.12:129; the
    same expression since 2.6): the model's window, or without a model the boot log's printed vmalloc line."""
    if ctx.layout is None and printed is not None:
        return compare("meminfo.VmallocTotal", "meminfo", _kb((printed[1] - printed[0]) >> 10),
                       _kb(meminfo.get("VmallocTotal")), "the printed vmalloc line's (end - start) >> 10 (no layout "
                       f"model: {ctx.why_no_layout})")
    if ctx.layout is None:
        return skip("meminfo.VmallocTotal", "meminfo", ctx.why_no_layout or "no layout model")
    return compare("meminfo.VmallocTotal", "meminfo", _kb(ctx.layout.VmallocTotal_kB), _kb(meminfo.get("VmallocTotal")),
                   "model (VMALLOC_END - VMALLOC_START) >> 10" + _notes(ctx))


def _low_plus_high(meminfo: dict[str, int]) -> Check:
    """fs/proc/meminfo.c (CONFIG_HIGHMEM): LowTotal = totalram - totalhigh, so Low + High == MemTotal."""
    low, high = meminfo.get("LowTotal"), meminfo.get("HighTotal")
    if low is None or high is None:
        return skip("meminfo.LowTotal+HighTotal", "meminfo", "no LowTotal/HighTotal (no CONFIG_HIGHMEM or a tail)")
    return compare("meminfo.LowTotal+HighTotal", "meminfo", _kb(meminfo.get("MemTotal")), _kb(low + high),
                   f"LowTotal {low} + HighTotal {high} vs MemTotal")


def _high_total(meminfo: dict[str, int], ctx: Context) -> Check:
    """HighTotal counts managed highmem pages: at most the RAM the model puts above arm_lowmem_limit."""
    high = meminfo.get("HighTotal")
    if high is None:
        return skip("meminfo.HighTotal", "meminfo", "no HighTotal (no CONFIG_HIGHMEM or a tail)")
    if ctx.layout is None:
        return skip("meminfo.HighTotal", "meminfo", ctx.why_no_layout or "no layout model")
    limit = ctx.layout.highmem_bytes >> 10
    status: CheckStatus = "pass" if high <= limit else "fail"
    return Check("meminfo.HighTotal", "meminfo", status, f"<= {limit} kB", _kb(high),
                 "managed highmem <= model highmem RAM" + _notes(ctx))


def _vmalloc_used(bundle: Bundle, meminfo: dict[str, int], version: Version | None) -> Check:
    check_id = "meminfo.VmallocUsed"
    rule = _version_value(VMALLOC_USED, version)
    if rule is None:
        return skip(check_id, "meminfo", "kernel version unknown")
    if rule == "unmodelled":
        return skip(check_id, "meminfo", VMALLOC_USED.row(version or (0, 0, 0)).source + ": not modelled")
    if rule == "zero":
        source = VMALLOC_USED.row(version or (0, 0, 0)).source
        return compare(check_id, "meminfo", _kb(0), _kb(meminfo.get("VmallocUsed")), source)
    first = next((run for run in bundle.runs if "before" in run.vmallocinfo), None)
    if first is None:
        return skip(check_id, "meminfo", "meminfo.txt and vmallocinfo.txt of a capture are not known to be read at "
                    "the same moment (a run bundle reads meminfo.txt just before the first module's before)")
    used = 4 * sum(entry.pages or 0 for entry in first.vmallocinfo["before"] if "vmalloc" in entry.flags)
    return compare(check_id, "meminfo", _kb(used), _kb(meminfo.get("VmallocUsed")),
                   f"4 * pages= of vmalloc lines in vmallocinfo/{first.name}.before.txt")


# --- modules ---------------------------------------------------------------------------------------

def module_lists(bundle: Bundle) -> list[tuple[str, list[ProcModule]]]:
    found = [("snapshot", bundle.modules)] if bundle.modules is not None else []
    return found + [(run.name, run.modules) for run in bundle.runs if run.modules is not None]


def module_list_checks(label: str, modules: Sequence[ProcModule], ctx: Context) -> list[Check]:
    """Checks a /proc/modules supports on its own (spec §6.8, §6.12)."""
    base = f"modules.{label}"
    shown = [module for module in modules if module.address is not None]
    checks = [_size_rounding(base, modules, ctx)]
    if not shown:
        reason = "every address is zero (kptr_restrict / kallsyms_show_value)"
        return checks + [skip(f"{base}.{name}", "modules", reason) for name in ("aligned", "overlap", "region")]
    misaligned = [m for m in shown if m.address is not None and m.address % PAGE_SIZE]
    checks.append(_list_result(f"{base}.aligned", "page-aligned addresses", misaligned, "address not page aligned"))
    checks.append(_overlap_modules(base, shown, ctx.version))
    checks.append(_module_region(base, shown, ctx))
    return checks


def _list_result(check_id: str, rule: str, bad: Sequence[ProcModule], problem: str) -> Check:
    if not bad:
        return Check(check_id, "modules", "pass", rule, "all hold", "")
    first = bad[0]
    return Check(check_id, "modules", "fail", rule, [m.name for m in bad],
                 f"first offending: line {first.line} {first.name}: {problem}")


def _size_rounding(base: str, modules: Sequence[ProcModule], ctx: Context) -> Check:
    aligned, source = sizes_page_aligned(ctx.version, ctx.config)
    if aligned is None:
        return skip(f"{base}.size_pages", "modules", source)
    live = [m for m in modules if m.state == "Live"]
    if not aligned:
        return skip(f"{base}.size_pages", "modules", f"sizes need not be page multiples: {source}")
    bad = [m for m in live if m.size % PAGE_SIZE]
    return _list_result(f"{base}.size_pages", f"Live sizes multiple of 4096 ({source})", bad,
                        "size not a multiple of 4096")


def _overlap_modules(base: str, shown: Sequence[ProcModule], version: Version | None) -> Check:
    """One module_alloc per module before mod->mem: [addr, addr + PAGE_ALIGN(size) + guard) are disjoint."""
    mod_mem = uses_mod_mem(version)
    if mod_mem is None:
        return skip(f"{base}.overlap", "modules", "kernel version unknown: module memory era unknown")
    if mod_mem:
        return skip(f"{base}.overlap", "modules", "mod->mem[] era: a module's memory is not one span")
    live = sorted((m for m in shown if m.state == "Live"), key=lambda m: m.address or 0)
    bad = []
    for previous, module in pairwise(live):
        assert previous.address is not None and module.address is not None
        if previous.address + page_align(previous.size) + PAGE_SIZE > module.address:
            bad.append(module)
    return _list_result(f"{base}.overlap", "pages + guard of two modules never overlap", bad,
                        "starts inside the previous module's pages or guard page")


def _module_region(base: str, shown: Sequence[ProcModule], ctx: Context) -> Check:
    """§6.12: [MODULES_VADDR, MODULES_END), or the vmalloc area (ARM_MODULE_PLTS spill)."""
    if ctx.arch != "arm":
        return skip(f"{base}.region", "modules", f"module area not modelled for arch {ctx.arch or 'unknown'}")
    spans = [modules_range(ctx.arm_config)]
    if ctx.layout is not None:
        spans.append((ctx.layout.VMALLOC_START, ctx.layout.VMALLOC_END))
    rule = "in " + " or ".join(span_text(span) for span in spans)
    bad = [m for m in shown if not any(low <= (m.address or 0) < high for low, high in spans)]
    return _list_result(f"{base}.region", rule + _notes(ctx), bad, "outside the module area")


def modules_checks(bundle: Bundle, ctx: Context) -> list[Check]:
    checks: list[Check] = []
    for label, modules in module_lists(bundle):
        checks += module_list_checks(label, modules, ctx)
    for run in bundle.runs:
        if run.modules is not None and "during" in run.vmallocinfo:
            entries = run.vmallocinfo["during"]
            if address_kind(entries) == "real":
                checks += per_module_checks(run.name, run.modules, entries, ctx.version)
    if bundle.modules is not None and bundle.vmallocinfo is not None:
        real = address_kind(bundle.vmallocinfo) == "real"
        lines = lines_starting_at(bundle.vmallocinfo, {module.address for module in bundle.modules})
        checks.append(crosscapture_check(bundle.modules, lines, ctx.version, real))
    return checks


# --- entry point -----------------------------------------------------------------------------------

def consistency_checks(bundle: Bundle, ctx: Context) -> list[Check]:
    """Every offline consistency check of the bundle (pass ``infer_context(bundle)`` for board captures)."""
    printed = printed_spans(bundle.boot) if bundle.boot is not None else {}
    checks = layout_checks(bundle, ctx) + block_invariant_checks(bundle.boot, ctx.arch) + meminfo_checks(bundle, ctx)
    for snap in snapshots(bundle):
        checks += vmallocinfo_checks(snap, ctx, printed)
    return checks + modules_checks(bundle, ctx)
