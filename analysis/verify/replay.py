"""Replay a module's allocation sequence on the free map rebuilt from its "during" snapshot.

Every test module calls ``vm_unmap_aliases()`` before it allocates (docs/contracts.md §3), so just
before its k-th request the kernel's busy set was: the snapshot's busy lines, minus the module's own
areas from request k on. Each request is predicted from that state, so one wrong prediction does not
cascade into the next.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from itertools import combinations

from analysis.model.allocator import Placement, VmallocModel, VmallocRequest, nested_pages_array, rules_for
from analysis.model.layout_arm import ArmLayout
from analysis.parsers import VmallocEntry
from analysis.verify.check import Check, CheckStatus, compare, compare_address, hex_address

BUSY_KINDS = ("area", "vm_map_ram")
# Task stacks (CONFIG_VMAP_STACK: kernel/fork.c alloc_thread_stack_node, inlined up to kernel_clone)
# come and go with the guest's short-lived processes (cat, insmod, rmmod) and are cached two per CPU
# (NR_CACHED_STACKS): they are not the module's.
TASK_STACK_CALLERS = frozenset({"kernel_clone", "copy_process", "dup_task_struct", "alloc_thread_stack_node"})
MAX_UNCERTAIN_STACKS = 4


def is_task_stack(entry: VmallocEntry) -> bool:
    return (entry.caller or "").split("+", 1)[0] in TASK_STACK_CALLERS


@dataclass(frozen=True)
class Step:
    """One request of the module, in the order it made them, and the address it reported."""

    case: str
    request: VmallocRequest
    reported: int | None


def is_own(entry: VmallocEntry, module: str, modules_area: tuple[int, int]) -> bool:
    """An area ``module`` made: vmallocinfo prints ``func+off/len [module]``, or, when the caller was
    __init code already freed when the file is read, the raw return address, which then lies in the
    modules area (lib/vsprintf.c symbol_string falls back to the address). One test module is loaded
    at a time, so a raw caller there is this module's."""
    if entry.kind != "area":
        return False
    if entry.caller_module == module:
        return True
    caller = entry.caller or ""
    if entry.caller_module is None and caller.startswith("0x"):
        try:
            address = int(caller, 16)
        except ValueError:
            return False
        return modules_area[0] <= address < modules_area[1]
    return False


def own_entries(entries: Sequence[VmallocEntry], module: str,
                modules_area: tuple[int, int]) -> list[VmallocEntry]:
    return [e for e in entries if is_own(e, module, modules_area)]


def busy_while_held(before: Sequence[VmallocEntry], during: Sequence[VmallocEntry]) -> list[VmallocEntry]:
    """Busy lines of both snapshots: what was in use while the module allocated. A line only in
    "before" (a task stack freed once insmod returned) still occupied its range at that time."""
    seen: dict[tuple[int, int], VmallocEntry] = {}
    for entry in (*before, *during):
        if entry.kind in BUSY_KINDS:
            seen.setdefault((entry.start, entry.end), entry)
    return sorted(seen.values(), key=lambda e: e.start)


def _entry_at(entries: Sequence[VmallocEntry], start: int | None) -> VmallocEntry | None:
    if start is None:
        return None
    return next((e for e in entries if e.start == start), None)


def _model_before(busy_lines: Sequence[VmallocEntry], later: set[int], vstart: int, vend: int,
                  version: tuple[int, int, int]) -> VmallocModel:
    busy = [e for e in busy_lines if e.start not in later]
    return VmallocModel.from_snapshot(busy, vstart, vend, rules_for(version))


def _owners(steps: Sequence[Step], own: Sequence[VmallocEntry], pointer_size: int = 4) -> dict[int, int]:
    """Start address -> index of the step that made it.

    A reported address is the step's own area. An own area no step reported is a nested page array
    (__vmalloc_area_node): it belongs to the step whose array has exactly its size. First fit puts the
    array in the lowest hole that fits, not necessarily next to its parent, so the size decides.
    """
    owners = {s.reported: i for i, s in enumerate(steps) if s.reported is not None}
    arrays: list[tuple[int, int]] = []  # (va size, step index) of every expected nested array
    for index, step in enumerate(steps):
        nested = nested_pages_array(step.request.nr_pages, pointer_size) if step.request.vm_alloc else None
        if nested is not None:
            arrays.append((nested.va_size(), index))
    for entry in own:
        if entry.start in owners:
            continue
        match = next((pair for pair in arrays if pair[0] == entry.size), None)
        if match is not None:
            arrays.remove(match)
            owners[entry.start] = match[1]
    return owners


def uncertain_stacks(before: Sequence[VmallocEntry], during: Sequence[VmallocEntry]) -> list[tuple[int, int]]:
    """Task stacks seen in only one of the two snapshots: a short-lived process's (cat, insmod) that may
    or may not have existed while the module allocated."""
    in_before = {(e.start, e.end) for e in before if is_task_stack(e)}
    in_during = {(e.start, e.end) for e in during if is_task_stack(e)}
    return sorted(in_before ^ in_during)[:MAX_UNCERTAIN_STACKS]


def stack_subsets(uncertain: Sequence[tuple[int, int]]) -> Iterator[frozenset[tuple[int, int]]]:
    """Every subset of the uncertain stacks, the empty one (all of them busy) first."""
    for k in range(len(uncertain) + 1):
        for gone in combinations(uncertain, k):
            yield frozenset(gone)


def replay_checks(family: str, module: str, steps: Sequence[Step], before: Sequence[VmallocEntry],
                  during: Sequence[VmallocEntry], layout: ArmLayout, version: tuple[int, int, int]) -> list[Check]:
    """Predicted address of every step, and the snapshot line it must have made."""
    own = own_entries(during, module, (layout.MODULES_VADDR, layout.MODULES_END))
    busy = busy_while_held(before, during)
    uncertain = uncertain_stacks(before, during)
    vstart, vend = layout.VMALLOC_START, layout.VMALLOC_END
    checks: list[Check] = []
    owners = _owners(steps, own)
    for index, step in enumerate(steps):
        later = {start for start, owner in owners.items() if owner >= index}
        size, align = step.request.va_size(), step.request.effective_align()
        model = _model_before(busy, later, vstart, vend, version)
        options = model.candidates(size, align)
        gone: frozenset[tuple[int, int]] = frozenset()
        if step.reported not in options:
            for subset in stack_subsets(uncertain):
                other = _model_before([e for e in busy if (e.start, e.end) not in subset], later, vstart, vend,
                                      version)
                if step.reported in other.candidates(size, align):
                    model, options, gone = other, other.candidates(size, align), subset
                    break
        at = step.reported if step.reported in options else None
        placement = model.alloc(step.request, at=at)
        checks.append(_address_check(f"{module}.{step.case}.address", family, options, step.reported, gone))
        checks += _line_checks(family, module, step, placement, during, layout)
    return checks


def _address_check(check_id: str, family: str, options: Sequence[int], reported: int | None,
                   gone: frozenset[tuple[int, int]] = frozenset()) -> Check:
    """Exact first fit when the kernel searches with length == size; otherwise (align > PAGE_SIZE on
    6.1+, any request on 5.10: find_vmap_lowest_match prunes with size + align - 1) the rbtree walk may
    stop at a lower fitting block on its path, which a snapshot cannot show: the model's choice or one
    of those lower fits (kernel-model.md §2.2)."""
    why = "first fit on the free map rebuilt from the snapshots (mm/vmalloc.c alloc_vmap_area)"
    if gone:
        why += ", with the task stack(s) " + ", ".join(f"0x{a:08x}-0x{b:08x}" for a, b in sorted(gone)) + \
            " (in one snapshot only) already freed"
    if len(options) <= 1:
        return compare_address(check_id, family, options[0] if options else None, reported, why)
    shown = [hex_address(o) for o in options]
    if reported is None:
        return Check(check_id, family, "error", shown, None, "no address was reported")
    status: CheckStatus = "pass" if reported in options else "fail"
    return Check(check_id, family, status, f"one of {shown}", hex_address(reported),
                 f"{why}; the search length exceeds the size, so a lower fit on the rbtree path is possible "
                 f"(model's first choice {shown[0]})")


def _line_checks(family: str, module: str, step: Step, placement: Placement | None,
                 during: Sequence[VmallocEntry], layout: ArmLayout) -> list[Check]:
    prefix = f"{module}.{step.case}"
    entry = _entry_at(during, step.reported)
    req = step.request
    checks = [
        compare(f"{prefix}.vmallocinfo.size", family, req.va_size(), entry.size if entry else None,
                "PAGE_ALIGN(size) + guard page (__get_vm_area_node)"),
        compare(f"{prefix}.vmallocinfo.caller", family, True,
                is_own(entry, module, (layout.MODULES_VADDR, layout.MODULES_END)) if entry else None,
                "the line's caller is the module (name, or a raw address in the modules area)"),
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
