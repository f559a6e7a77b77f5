"""Replay a module's allocation sequence on the free map rebuilt from its "during" snapshot.

Every test module calls ``vm_unmap_aliases()`` before it allocates (docs/contracts.md §3), so just
before its k-th request the kernel's busy set was: the snapshot's busy lines, minus the module's own
areas from request k on. Each request is predicted from that state, so one wrong prediction does not
cascade into the next.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from analysis.model.allocator import Placement, VmallocModel, VmallocRequest, rules_for
from analysis.parsers import VmallocEntry
from analysis.verify.check import Check, compare

BUSY_KINDS = ("area", "vm_map_ram")


@dataclass(frozen=True)
class Step:
    """One request of the module, in the order it made them, and the address it reported."""

    case: str
    request: VmallocRequest
    reported: int | None


def own_entries(entries: Sequence[VmallocEntry], module: str) -> list[VmallocEntry]:
    """Busy areas whose caller lies in ``module`` (vmallocinfo prints ``func+off/len [module]``)."""
    return [e for e in entries if e.kind == "area" and e.caller_module == module]


def _entry_at(entries: Sequence[VmallocEntry], start: int | None) -> VmallocEntry | None:
    if start is None:
        return None
    return next((e for e in entries if e.start == start), None)


def _model_before(during: Sequence[VmallocEntry], later: set[int], vstart: int, vend: int,
                  version: tuple[int, int, int]) -> VmallocModel:
    busy = [e for e in during if e.kind in BUSY_KINDS and e.start not in later]
    return VmallocModel.from_snapshot(busy, vstart, vend, rules_for(version))


def _claimed_starts(steps: Sequence[Step], own: Sequence[VmallocEntry], from_index: int) -> set[int]:
    """Start addresses of the module's areas made by request ``from_index`` or later.

    A reported address is the area itself; an own area that no step reported (a nested page array)
    belongs to the step it follows in address order, which is how first fit places it (§2.1).
    """
    reported = {s.reported for s in steps if s.reported is not None}
    owners: dict[int, int] = {}
    for index, step in enumerate(steps):
        if step.reported is not None:
            owners[step.reported] = index
    claimed = set()
    for entry in own:
        owner = owners.get(entry.start)
        if owner is None and entry.start not in reported:
            below = [(s.reported, i) for i, s in enumerate(steps) if s.reported is not None
                     and s.reported < entry.start]
            owner = max(below)[1] if below else len(steps)
        if owner is not None and owner >= from_index:
            claimed.add(entry.start)
    return claimed


def replay_checks(family: str, module: str, steps: Sequence[Step], during: Sequence[VmallocEntry],
                  vstart: int, vend: int, version: tuple[int, int, int]) -> list[Check]:
    """Predicted address of every step, and the snapshot line it must have made."""
    own = own_entries(during, module)
    checks: list[Check] = []
    for index, step in enumerate(steps):
        model = _model_before(during, _claimed_starts(steps, own, index), vstart, vend, version)
        placement = model.alloc(step.request)
        predicted = placement.start if placement else None
        checks.append(compare(f"{module}.{step.case}.address", family, predicted, step.reported,
                              "first fit on the free map rebuilt from the snapshot taken while held "
                              "(mm/vmalloc.c alloc_vmap_area)"))
        checks += _line_checks(family, module, step, placement, during)
    return checks


def _line_checks(family: str, module: str, step: Step, placement: Placement | None,
                 during: Sequence[VmallocEntry]) -> list[Check]:
    prefix = f"{module}.{step.case}"
    entry = _entry_at(during, step.reported)
    req = step.request
    checks = [
        compare(f"{prefix}.vmallocinfo.size", family, req.va_size(), entry.size if entry else None,
                "PAGE_ALIGN(size) + guard page (__get_vm_area_node)"),
        compare(f"{prefix}.vmallocinfo.caller", family, module, entry.caller_module if entry else None,
                "caller is the module's function (__builtin_return_address)"),
    ]
    if req.vm_alloc:
        checks.append(compare(f"{prefix}.vmallocinfo.pages", family, req.nr_pages,
                              entry.pages if entry else None, "nr_pages (__vmalloc_area_node)"))
        has_array = placement is not None and placement.pages_array is not None
        checks.append(compare(f"{prefix}.vmallocinfo.vpages", family, has_array,
                              ("vpages" in entry.flags) if entry else None,
                              "page array > PAGE_SIZE is itself vmalloc'ed (__vmalloc_area_node)"))
        if placement is not None and placement.pages_array is not None:
            nested = placement.pages_array
            nested_entry = _entry_at(during, nested.start)
            checks.append(compare(f"{prefix}.pages_array.size", family, nested.size,
                                  nested_entry.size if nested_entry else None,
                                  f"nested page array predicted at 0x{nested.start:08x}"))
    return checks
