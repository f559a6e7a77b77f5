"""A loaded module's memory against the prediction from its .ko (pyelftools) and the modules area.

Where each region lands is predicted by first fit over the modules area of the snapshot taken just
before insmod: 5.10/6.1 `module_alloc` (arch/arm/kernel/module.c) core then init, 6.12
`execmem_alloc` once per non-empty mem type in enum order (kernel/module/main.c move_module), all
`__vmalloc_node_range(size, 1, MODULES_VADDR, MODULES_END, ...)`.
"""

from __future__ import annotations

from pathlib import Path

from analysis.elf.footprint import Footprint, Region, predict_footprint
from analysis.elf.symbols import defined_symbols
from analysis.model.allocator import VmallocModel, VmallocRequest, rules_for
from analysis.parsers import KtapDocument, VmallocEntry
from analysis.verify.bundle import ModuleRun
from analysis.verify.check import Check, compare, compare_address, skip
from analysis.verify.context import Context

FAMILY = "footprint"


def predict_region_bases(footprint: Footprint, before: list[VmallocEntry], ctx: Context) -> dict[str, int]:
    """Region name -> predicted base, replaying the loader's allocations on the modules area."""
    assert ctx.layout is not None and ctx.version is not None
    model = VmallocModel.from_snapshot(before, ctx.layout.MODULES_VADDR, ctx.layout.MODULES_END,
                                       rules_for(ctx.version))
    bases: dict[str, int] = {}
    for region in footprint.regions:
        if not region.size:
            continue
        placement = model.alloc(VmallocRequest(region.size))
        if placement is None:
            break  # the kernel would fall back to the vmalloc area (ARM_MODULE_PLTS); not predicted
        bases[region.name] = placement.start
    return bases


def _entry_at(entries: list[VmallocEntry], start: int) -> VmallocEntry | None:
    return next((e for e in entries if e.start == start), None)


def _region_line_checks(name: str, region: Region, base: int, during: list[VmallocEntry]) -> list[Check]:
    entry = _entry_at(during, base)
    prefix = f"{name}.{region.name}"
    return [
        compare(f"{prefix}.vmallocinfo.size", FAMILY, region.vmalloc_size, entry.size if entry else None,
                f"module memory line at 0x{base:08x}: PAGE_ALIGN(size) + guard"),
        compare(f"{prefix}.vmallocinfo.pages", FAMILY, region.pages, entry.pages if entry else None,
                "pages= of the module memory line"),
    ]


def _ktap_region_checks(name: str, doc: KtapDocument, footprint: Footprint,
                        bases: dict[str, int]) -> list[Check]:
    """kit_vmalloc_exec reports THIS_MODULE's own layout (core_layout / mem[]) from inside init."""
    checks = []
    for region in footprint.regions:
        size = doc.diag_int(f"regions.{region.name}.size")
        if size is None:
            continue
        checks.append(compare(f"{name}.regions.{region.name}.size", FAMILY, region.size, size,
                              "the module's own view of its region size vs the .ko prediction"))
        if region.name in bases:
            checks.append(compare_address(f"{name}.regions.{region.name}.base", FAMILY, bases[region.name],
                                  doc.diag_int(f"regions.{region.name}.base"), "predicted region base"))
    return checks


# kit_vmalloc_exec's `symbols.*` diagnostics and the C symbols they print (templates/modules/vmalloc_exec.c.j2).
REPORTED_SYMBOLS = {"text_fn": "kit_text_fn", "rodata_var": "kit_rodata_var", "data_var": "kit_data_var",
                    "bss_var": "kit_bss_var", "this_module": "__this_module", "init_fn": "kit_init"}


def _symbol_checks(name: str, ko: Path, doc: KtapDocument, footprint: Footprint,
                   bases: dict[str, int]) -> list[Check]:
    """Each symbol the module printed with %px == its section's predicted address + its st_value."""
    symbols = defined_symbols(ko)
    placed = {s.index: s for s in footprint.sections}
    checks = []
    for key, symbol in REPORTED_SYMBOLS.items():
        reported = doc.diag_int(f"symbols.{key}")
        if reported is None or symbol not in symbols:
            continue
        index, value = symbols[symbol]
        section = placed.get(index)
        predicted = (bases[section.region] + section.offset + value
                     if section is not None and section.region in bases else None)
        where = f"{section.name}+0x{value:x}" if section is not None else "an unplaced section"
        checks.append(compare_address(f"{name}.symbols.{key}", FAMILY, predicted, reported,
                                      f"{symbol} at {where}: region base + section offset + st_value"))
    return checks


def footprint_checks(run: ModuleRun, ctx: Context) -> list[Check]:
    name = run.name
    if not run.loaded:
        return [skip(f"{name}.footprint", FAMILY, "did not load (see its insmod check): no footprint to compare")]
    if run.ko is None or run.modules is None:
        return [skip(f"{name}.footprint", FAMILY, "no ko/ or modules/ file for this module")]
    if ctx.version is None or ctx.layout is None:
        return [skip(f"{name}.footprint", FAMILY, ctx.why_no_layout or "kernel version unknown")]
    footprint = predict_footprint(run.ko, ctx.version, ctx.config)
    listed = next((m for m in run.modules if m.name == name), None)
    checks = [compare(f"{name}.proc_modules.size", FAMILY, footprint.live_size,
                      listed.size if listed else None, "Live size = core regions (spec §3.4)")]
    before, during = run.vmallocinfo.get("before"), run.vmallocinfo.get("during")
    if before is None or during is None:
        return [*checks, skip(f"{name}.placement", FAMILY, "no before/during vmallocinfo snapshots")]
    bases = predict_region_bases(footprint, before, ctx)
    first = footprint.regions[0].name
    checks.append(compare_address(f"{name}.proc_modules.address", FAMILY, bases.get(first),
                          listed.address if listed else None,
                          f"{first} base: first fit in [MODULES_VADDR, MODULES_END)"))
    for region in footprint.regions:
        if region.name in bases and not region.is_init:
            checks += _region_line_checks(name, region, bases[region.name], during)
    if run.sections is not None:
        live = {r.name: b for r, b in ((r, bases.get(r.name)) for r in footprint.regions)
                if b is not None and not r.is_init}
        predicted = footprint.section_addresses(live)
        actual = {s: a for s, a in run.sections.items() if s in predicted}
        checks.append(compare(f"{name}.sections", FAMILY, _hex(predicted), _hex(actual),
                              f"{len(predicted)} core sections at region base + layout offset"))
    if run.ktap is not None:
        checks += _ktap_region_checks(name, run.ktap, footprint, bases)
        checks += _symbol_checks(name, run.ko, run.ktap, footprint, bases)
    return checks


def _hex(addresses: dict[str, int]) -> dict[str, str]:
    return {name: f"0x{addr:08x}" for name, addr in sorted(addresses.items())}
