"""Checks of the five test families: what each module measured against what the model predicts.

Diagnostic keys: docs/contracts.md §3. Each function takes the module's run and the context and
returns its checks; a module that did not run gives no checks here (the run checks report it).
"""

from __future__ import annotations

from collections.abc import Callable

from analysis.model.allocator import (
    PAGE_SIZE,
    FreeMap,
    VmallocRequest,
    arm_ioremap_max_order,
    capacity,
    rules_for,
)
from analysis.model.kmap import (
    kmap_atomic_address,
    kmap_local_address,
    kmap_local_available,
    predict_kmap_sequence,
)
from analysis.model.layout_arm import ArmLayout
from analysis.parsers import KtapDocument, VmallocEntry
from analysis.verify.bundle import ModuleRun
from analysis.verify.check import Check, compare, compare_address, skip
from analysis.verify.context import Context
from analysis.verify.replay import (
    BUSY_KINDS,
    Step,
    busy_while_held,
    is_task_stack,
    replay_checks,
    stack_subsets,
    uncertain_stacks,
)

VMALLOC_CASES = ("subpage", "one_page", "several_pages", "big", "vzalloc", "aligned")
IOREMAP_CASES = ("uart", "rtc", "unaligned", "large")
# PrimeCell IDs of QEMU virt's devices (hw/char/pl011.c pl011_id_arm, hw/rtc/pl031.c pl031_id).
PRIMECELL_IDS = {"uart": 0x00041011, "rtc": 0x00041031}
PRIMECELL_CELL_ID = 0xB105F00D
AMBA_ID_MASK = 0x000FFFFF  # part number + designer; bits 23:20 are the revision (include/linux/amba/bus.h)


def _ran(doc: KtapDocument, case: str) -> bool:
    result = doc.result(case)
    return result is not None and result.directive != "SKIP"


def _during(run: ModuleRun) -> list[VmallocEntry] | None:
    return run.vmallocinfo.get("during")


def _vmalloc_steps(doc: KtapDocument) -> list[Step]:
    steps = []
    for case in VMALLOC_CASES:
        size = doc.diag_int(f"{case}.size")
        if not _ran(doc, case) or size is None:
            continue
        align = doc.diag_int(f"{case}.align") or 1
        steps.append(Step(case, VmallocRequest(size, align), doc.diag_int(f"{case}.addr")))
    return steps


def vmalloc_checks(run: ModuleRun, doc: KtapDocument, ctx: Context, layout: ArmLayout) -> list[Check]:
    family = "vmalloc"
    checks: list[Check] = []
    during = _during(run)
    assert ctx.version is not None
    steps = _vmalloc_steps(doc)
    if during is None:
        return [skip(f"{run.name}.replay", family, "no vmallocinfo snapshot while held")]
    checks += replay_checks(family, run.name, steps, run.vmallocinfo.get("before", []), during, layout, ctx.version)
    for step in steps:
        expected_pages = step.request.nr_pages
        checks.append(compare(f"{run.name}.{step.case}.nr_pages", family, expected_pages,
                              doc.diag_int(f"{step.case}.nr_pages"), "PAGE_ALIGN(size) / PAGE_SIZE"))
        # __vmalloc_area_node adds __GFP_HIGHMEM unless GFP_DMA/DMA32 (mm/vmalloc.c, 5.10/6.1/6.12):
        # with free highmem every page comes from ZONE_HIGHMEM.
        expected_high = expected_pages if layout.highmem_bytes else 0
        checks.append(compare(f"{run.name}.{step.case}.highmem_pages", family, expected_high,
                              doc.diag_int(f"{step.case}.highmem_pages"),
                              "vmalloc asks for __GFP_HIGHMEM (__vmalloc_area_node)"))
    return checks


def ioremap_checks(run: ModuleRun, doc: KtapDocument, ctx: Context, layout: ArmLayout) -> list[Check]:
    family = "ioremap"
    during = _during(run)
    assert ctx.version is not None
    max_order, _ = arm_ioremap_max_order(ctx.config)
    steps, checks = [], []
    for case in IOREMAP_CASES:
        phys, size, cookie = (doc.diag_int(f"{case}.{k}") for k in ("phys", "size", "cookie"))
        if not _ran(doc, case) or phys is None or size is None:
            continue
        offset = phys & (PAGE_SIZE - 1)
        # __arm_ioremap_caller: size = PAGE_ALIGN(offset_in_page(phys) + size); cookie = area + offset.
        request = VmallocRequest(offset + size, ioremap=True, vm_alloc=False, ioremap_max_order=max_order)
        area = cookie - offset if cookie is not None else None
        steps.append(Step(case, request, area))
        entry = next((e for e in during or [] if e.start == area), None)
        checks.append(compare(f"{run.name}.{case}.phys", family, phys - offset,
                              entry.phys if entry else None, "vmallocinfo phys= is the page-aligned phys"))
        checks.append(compare(f"{run.name}.{case}.flag", family, True,
                              ("ioremap" in entry.flags) if entry else None, "VM_IOREMAP"))
        align = request.effective_align()
        checks.append(compare(f"{run.name}.{case}.alignment", family, 0,
                              area % align if area is not None else None,
                              f"area aligned to {align:#x}: 1 << clamp(order(size), PAGE_SHIFT, {max_order})"))
        if case in PRIMECELL_IDS:
            periph = doc.diag_int(f"{case}.periph_id")
            checks.append(compare(f"{run.name}.{case}.periph_id", family, PRIMECELL_IDS[case],
                                  periph & AMBA_ID_MASK if periph is not None else None,
                                  "PrimeCell PeriphID0-3 read via the mapping, revision masked (amba_device_add)"))
            checks.append(compare(f"{run.name}.{case}.cell_id", family, PRIMECELL_CELL_ID,
                                  doc.diag_int(f"{case}.cell_id"), "PrimeCell CellID0-3"))
    if during is None:
        return [*checks, skip(f"{run.name}.replay", family, "no vmallocinfo snapshot while held")]
    checks += replay_checks(family, run.name, steps, run.vmallocinfo.get("before", []), during, layout, ctx.version)
    return checks


def _anchor_slot_check(check_id: str, address: int | None, prior: list[int | None],
                       window: tuple[int, int]) -> Check:
    """The first page of the run to take a new pkmap slot (mm/highmem.c map_new_virtual, 5.10-6.12): its
    slot depends on every earlier kmap user, so the model starts from it; it must be a whole slot in
    the PKMAP window that none of the other pages still maps. The same check id whatever the page."""
    held = {p for p in prior if p}
    free_slot = (address is not None and window[0] <= address < window[1] and address % PAGE_SIZE == 0
                 and address not in held)
    return compare(check_id, "kmap", True, free_slot,
                   "the first page to take a new slot: a free pkmap slot (the model's starting point)")


def kmap_checks(run: ModuleRun, doc: KtapDocument, ctx: Context, layout: ArmLayout) -> list[Check]:
    family = "kmap"
    assert ctx.version is not None
    checks: list[Check] = []
    name = run.name
    count = doc.diag_int("kmap_highmem.count") or 0
    addrs = [doc.diag_int(f"kmap_highmem.{i}.addr") for i in range(count)]
    # page_address() before each kmap (bundles from before it was reported: none had a mapping)
    prior = [doc.diag_int(f"kmap_highmem.{i}.prior") for i in range(count)]
    anchor = next((i for i in range(count) if not prior[i]), None)  # the first page that took a new slot
    if _ran(doc, "kmap_highmem") and addrs and layout.PKMAP_BASE is not None:
        first_new = addrs[anchor] if anchor is not None else None
        # mm/highmem.c map_new_virtual: slots are taken in order after the last one used; kmap_high
        # returns a page's earlier, unflushed mapping instead
        predicted = predict_kmap_sequence(first_new, count, pkmap_base=layout.PKMAP_BASE, prior=prior) \
            if first_new is not None else [p or 0 for p in prior]
        window = (layout.PKMAP_BASE, layout.PKMAP_BASE + layout.LAST_PKMAP * PAGE_SIZE)
        for i in range(count):
            if i == anchor:  # the model counts from its slot: what it must be is a slot no other page holds
                checks.append(_anchor_slot_check(f"{name}.kmap_highmem.{i}.addr", addrs[i], prior, window))
            else:
                rule = ("the page's earlier pkmap address, not flushed (kmap_high: page_address)" if prior[i]
                        else "next free pkmap slot (map_new_virtual), relative to the first")
                checks.append(compare_address(f"{name}.kmap_highmem.{i}.addr", family, predicted[i], addrs[i], rule))
        checks.append(compare(f"{name}.kmap_highmem.in_pkmap", family, True,
                              all(a is not None and window[0] <= a < window[1] for a in addrs),
                              f"PKMAP window [{window[0]:#x}, {window[1]:#x})"))
        lowmem_end_pfn = layout.arm_lowmem_limit >> 12
        pfns = [doc.diag_int(f"kmap_highmem.{i}.pfn") for i in range(count)]
        checks.append(compare(f"{name}.kmap_highmem.pfns_highmem", family, True,
                              all(p is not None and p >= lowmem_end_pfn for p in pfns),
                              f"highmem pages have pfn >= arm_lowmem_limit >> 12 = {lowmem_end_pfn:#x}"))
        if _ran(doc, "kmap_again"):
            checks.append(compare_address(f"{name}.kmap_again.addr", family, addrs[0], doc.diag_int("kmap_again.addr"),
                                  "kmap_high of a mapped page returns its pkmap address"))
    if _ran(doc, "kmap_lowmem"):
        linear = doc.diag_int("kmap_lowmem.linear")
        checks.append(compare_address(f"{name}.kmap_lowmem.addr", family, linear, doc.diag_int("kmap_lowmem.addr"),
                              "kmap of a lowmem page is page_address (include/linux/highmem-internal.h)"))
        checks.append(compare(f"{name}.kmap_lowmem.in_lowmem", family, True,
                              linear is not None and layout.PAGE_OFFSET <= linear < layout.high_memory,
                              "linear map [PAGE_OFFSET, high_memory)"))
    checks += _kmap_local_checks(name, doc, ctx)
    return checks


def _kmap_local_checks(name: str, doc: KtapDocument, ctx: Context) -> list[Check]:
    family = "kmap"
    assert ctx.version is not None
    result = doc.result("kmap_local")
    checks = []
    if not kmap_local_available(ctx.version):
        skipped = result is not None and result.directive == "SKIP"
        checks.append(compare(f"{name}.kmap_local.absent", family, True, skipped,
                              "kmap_local_page() appeared in 5.11 (mm/highmem.c)"))
    elif _ran(doc, "kmap_local"):
        cpu = doc.diag_int("kmap_local.cpu") or 0
        checks.append(compare_address(f"{name}.kmap_local.addr", family, kmap_local_address(ctx.version, cpu, 0),
                              doc.diag_int("kmap_local.addr"), "FIXADDR_TOP - idx*PAGE_SIZE (__kmap_local_pfn_prot)"))
        checks.append(compare_address(f"{name}.kmap_local.nested_addr", family,
                              kmap_local_address(ctx.version, cpu, 1), doc.diag_int("kmap_local.nested_addr"),
                              "next slot down for a nested mapping"))
    if _ran(doc, "kmap_atomic"):
        cpu = doc.diag_int("kmap_atomic.cpu") or 0
        checks.append(compare_address(f"{name}.kmap_atomic.addr", family, kmap_atomic_address(ctx.version, cpu, 0),
                              doc.diag_int("kmap_atomic.addr"), "first fixmap kmap slot of this CPU"))
    return checks


def alloc_checks(run: ModuleRun, doc: KtapDocument, ctx: Context, layout: ArmLayout) -> list[Check]:
    family = "alloc"
    assert ctx.version is not None
    during = _during(run)
    if during is None:
        return [skip(f"{run.name}.replay", family, "no vmallocinfo snapshot while held")]
    checks: list[Check] = []
    if _ran(doc, "vmalloc_loop"):
        count = doc.diag_int("vmalloc_loop.count") or 0
        size = doc.diag_int("vmalloc_loop.size") or 0
        steps = [Step(f"vmalloc_loop.{i}", VmallocRequest(size), doc.diag_int(f"vmalloc_loop.{i}.addr"))
                 for i in range(count)]
        checks += replay_checks(family, run.name, steps, run.vmallocinfo.get("before", []), during, layout, ctx.version)
    if _ran(doc, "vmap_fill"):
        checks += _fill_checks(run.name, doc, run.vmallocinfo.get("before", []), during, ctx, layout)
    return checks


FillOutcome = tuple[int, int | None, int | None, int, int | None, int | None]


def _fill_outcomes(free_of: Callable[[frozenset[tuple[int, int]]], FreeMap], uncertain: list[tuple[int, int]],
                   big: int, version: tuple[int, int, int]) -> list[FillOutcome]:
    """Capacity for every subset of the task stacks whose presence during the fill is unknown, the
    all-busy case first."""
    outcomes: list[FillOutcome] = []
    for gone in stack_subsets(uncertain):
        phases = capacity(free_of(gone), [big, 1], rules_for(version))
        outcome = (phases[0].count, phases[0].first, phases[0].last,
                   phases[1].count, phases[1].first, phases[1].last)
        if outcome not in outcomes:
            outcomes.append(outcome)
    return outcomes


def _fill_checks(name: str, doc: KtapDocument, before: list[VmallocEntry], during: list[VmallocEntry], ctx: Context,
                 layout: ArmLayout) -> list[Check]:
    """The fill runs after the loop's areas are held and is gone before the "during" snapshot (its lazily
    freed areas are purged by vm_unmap_aliases). Its free map is the busy lines of both snapshots; a task
    stack seen in only one of them (a short-lived process: cat, insmod) may or may not have existed
    while the module filled, so each such stack is tried both ways and the module must match one of
    those outcomes on all six values at once."""
    assert ctx.version is not None
    busy = busy_while_held(before, during)
    uncertain = uncertain_stacks(before, during)

    def free_of(gone: frozenset[tuple[int, int]]) -> FreeMap:
        kept = [e for e in busy if (e.start, e.end) not in gone]
        return FreeMap.from_snapshot(kept, layout.VMALLOC_START, layout.VMALLOC_END)

    big = doc.diag_int("vmap_fill.big_pages") or 256
    outcomes = _fill_outcomes(free_of, uncertain, big, ctx.version)
    keys = ("big_count", "big_first", "big_last", "small_count", "small_first", "small_last")
    reported = tuple(doc.diag_int(f"vmap_fill.{key}") for key in keys)
    chosen = next((o for o in outcomes if o == reported), outcomes[0])
    note = (f"; {len(uncertain)} task stack(s) seen in one snapshot only: {len(outcomes)} possible outcomes, "
            f"{'one matches' if chosen == reported else 'none matches'}" if len(outcomes) > 1 else "")
    checks = []
    for index, key in enumerate(keys):
        pages = big if key.startswith("big") else 1
        why = f"vmap() of {pages} page(s) + guard until failure (alloc_vmap_area first fit){note}"
        value, expected = reported[index], chosen[index]
        if key.endswith("count"):
            checks.append(compare(f"{name}.vmap_fill.{key}", "alloc", expected, value, why))
        else:
            checks.append(compare_address(f"{name}.vmap_fill.{key}", "alloc", expected, value, why))
    return checks


FamilyCheck = Callable[[ModuleRun, KtapDocument, Context, ArmLayout], list[Check]]

FAMILY_CHECKS: dict[str, FamilyCheck] = {
    "kit_vmalloc": vmalloc_checks,
    "kit_ioremap": ioremap_checks,
    "kit_kmap": kmap_checks,
    "kit_alloc": alloc_checks,
}


def _busy(entries: list[VmallocEntry]) -> set[tuple[int, int, str | None]]:
    return {(e.start, e.end, e.caller) for e in entries if e.kind in BUSY_KINDS and not is_task_stack(e)}


def own_areas_released(run: ModuleRun) -> list[Check]:
    """After rmmod the busy lines are exactly those before insmod: nothing leaked, nothing left over.

    Freed areas stay listed as ``unpurged vm_area`` until a purge (mm/vmalloc.c free_vmap_area_noflush),
    so only busy lines are compared.
    """
    before, after = run.vmallocinfo.get("before"), run.vmallocinfo.get("after")
    if before is None or after is None:
        return [skip(f"{run.name}.no_leak", "leak", "before/after snapshots missing")]
    extra = sorted(_busy(after) - _busy(before))
    gone = sorted(_busy(before) - _busy(after))
    return [
        compare(f"{run.name}.no_leak", "leak", [], [f"0x{s:08x}-0x{e:08x} {c}" for s, e, c in extra],
                "busy lines after rmmod that were not there before insmod (task stacks aside)"),
        compare(f"{run.name}.nothing_lost", "leak", [], [f"0x{s:08x}-0x{e:08x} {c}" for s, e, c in gone],
                "busy lines before insmod that vanished after rmmod (task stacks aside)"),
    ]
