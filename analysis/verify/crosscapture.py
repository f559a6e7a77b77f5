"""/proc/modules on its own and against /proc/vmallocinfo (kernel-model.md §3.3, §3.4, §6.8, §6.12).

Per-module expectations:
* 5.10 / 6.1 and older (one ``module_alloc(core size)``: 5.10 kernel/module.c move_module, 6.1
  kernel/module/main.c:2141): a vmallocinfo line starts at the module address with
  ``size == PAGE_ALIGN(Live size) + 4096`` (guard page) and ``pages == PAGE_ALIGN(Live size) / 4096``.
  3.x sizes are not page rounded (debug_align only with DEBUG_SET_MODULE_RONX), hence PAGE_ALIGN.
* 6.4+ (``mod->mem[type]``, one execmem allocation per type: 6.12 kernel/module/main.c:2254) the address is
  the MOD_TEXT base: a line starts there and its pages are part of the Live size (the other types sit
  elsewhere), so only ``pages * 4096 <= Live size`` is checked.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from analysis.model.units import Version
from analysis.model.versions import MODULE_LAYOUT, Row, VersionTable
from analysis.parsers import ProcModule, VmallocEntry
from analysis.verify.check import Check, compare, skip

PAGE = 4096

Rounding = Literal["config:DEBUG_SET_MODULE_RONX", "always", "config:STRICT_MODULE_RWX"]

# Whether a Live /proc/modules size is a multiple of PAGE_SIZE.
# <4.11: kernel/module.c debug_align() = PAGE_ALIGN iff CONFIG_DEBUG_SET_MODULE_RONX (3.18 granite2 capture:
#        unrounded sizes); 4.11 renamed it to ARCH_HAS_STRICT_MODULE_RWX, selected by ARM (MMU), x86, arm64
#        (commit 0f5bf6d0afe4; release recalled, not read in a tree); 6.0-6.3 strict_align iff
#        STRICT_MODULE_RWX (6.1 kernel/module/internal.h:34-40); 6.4+ every mod->mem[type] is
#        PAGE_ALIGNed (6.12 kernel/module/main.c:1194-1199).
MODULE_SIZE_ROUNDING: VersionTable[Rounding] = VersionTable("module size rounding", (
    Row((2, 6, 0), "config:DEBUG_SET_MODULE_RONX", "kernel/module.c debug_align (3.x)"),
    Row((4, 11, 0), "always", "kernel/module.c debug_align, ARCH_HAS_STRICT_MODULE_RWX (5.10:2477)"),
    Row((6, 0, 0), "config:STRICT_MODULE_RWX", "kernel/module/internal.h strict_align (6.1:34-40)",
        bracket=((5, 10, 223), (6, 1, 0))),
    Row((6, 4, 0), "always", "kernel/module/main.c module_memory_alloc PAGE_ALIGN (6.12:1194-1199)",
        bracket=((6, 1, 192), (6, 12, 0))),
))


def page_align(size: int) -> int:
    return (size + PAGE - 1) & ~(PAGE - 1)


def uses_mod_mem(version: Version | None) -> bool | None:
    """True from the mod->mem[] era (several allocations per module), None when the version is unknown."""
    return None if version is None else MODULE_LAYOUT.value(version) == "mod_mem"


def sizes_page_aligned(version: Version | None, config: dict[str, str]) -> tuple[bool | None, str]:
    """Whether Live sizes must be page multiples, and where the rule comes from."""
    if version is None:
        return None, "kernel version unknown"
    row = MODULE_SIZE_ROUNDING.row(version)
    if row.value == "always":
        return True, row.source
    option = "CONFIG_" + row.value.split(":", 1)[1]
    if option not in config:
        return None, f"{row.source}: depends on {option}, which the bundle does not state"
    return config[option] in ("y", "m"), f"{row.source}, {option}={config[option]}"


def line_problem(module: ProcModule, by_start: dict[int, VmallocEntry], mod_mem: bool) -> str | None:
    """Why the module's vmallocinfo line disagrees with /proc/modules, or None when it agrees."""
    assert module.address is not None
    line = by_start.get(module.address)
    if line is None:
        return f"no vmallocinfo line starts at 0x{module.address:08x}"
    if mod_mem:
        if line.pages is None or line.pages * PAGE > module.size:
            return f"line {line.line} has pages={line.pages}, more than the Live size {module.size} allows"
        return None
    pages = page_align(module.size) // PAGE
    if line.size != (pages + 1) * PAGE or line.pages != pages:
        return (f"line {line.line} has size {line.size} pages={line.pages}, expected "
                f"{(pages + 1) * PAGE} pages={pages} for Live size {module.size}")
    return None


def comparable(modules: Sequence[ProcModule]) -> list[ProcModule]:
    """Live modules with a real address (Loading ones also hold their init allocation)."""
    return [module for module in modules if module.address is not None and module.state == "Live"]


def starts(entries: Sequence[VmallocEntry]) -> dict[int, VmallocEntry]:
    return {entry.start: entry for entry in entries if entry.kind == "area"}


def per_module_checks(label: str, modules: Sequence[ProcModule], entries: Sequence[VmallocEntry],
                      version: Version | None) -> list[Check]:
    """One check per module: /proc/modules and vmallocinfo read at the same moment (a run's M.during)."""
    mod_mem = uses_mod_mem(version)
    base = f"modules.{label}"
    if mod_mem is None:
        return [skip(f"{base}.vmalloc_lines", "modules", "kernel version unknown: module memory era unknown")]
    by_start = starts(entries)
    checks = []
    for module in modules:
        check_id = f"{base}.{module.name}.vmalloc_line"
        if module.address is None or module.state != "Live":
            checks.append(skip(check_id, "modules", f"{module.state}, address "
                               f"{'hidden' if module.address is None else 'shown'}: no single line to compare"))
            continue
        problem = line_problem(module, by_start, mod_mem)
        expected = "text line" if mod_mem else f"size {(page_align(module.size) // PAGE + 1) * PAGE}"
        checks.append(Check(check_id, "modules", "fail" if problem else "pass", expected,
                            problem or "agrees", problem or f"module line {module.line}"))
    return checks


@dataclass(frozen=True)
class CrossResult:
    checked: list[str]
    disagreeing: list[tuple[str, str]]


def cross_compare(modules: Sequence[ProcModule], entries: Sequence[VmallocEntry], mod_mem: bool) -> CrossResult:
    by_start = starts(entries)
    live = comparable(modules)
    disagreeing = [(m.name, problem) for m in live if (problem := line_problem(m, by_start, mod_mem))]
    return CrossResult([m.name for m in live], disagreeing)


def crosscapture_check(modules: Sequence[ProcModule], entries: Sequence[VmallocEntry],
                       version: Version | None, addresses_real: bool) -> Check:
    """ONE check for a board capture's modules.txt against its vmallocinfo.txt, which may come from
    different boots: it names exactly the modules whose line is missing or has another size."""
    check_id = "crosscapture.modules_vs_vmallocinfo"
    mod_mem = uses_mod_mem(version)
    if mod_mem is None:
        return skip(check_id, "crosscapture", "kernel version unknown: module memory era unknown")
    if not addresses_real:
        return skip(check_id, "crosscapture", "vmallocinfo addresses are hashed or zeroed")
    result = cross_compare(modules, entries, mod_mem)
    if not result.checked:
        return skip(check_id, "crosscapture", "no Live module with a visible address")
    names = [name for name, _ in result.disagreeing]
    if not names:
        return compare(check_id, "crosscapture", [], [],
                       f"all {len(result.checked)} Live modules have their vmallocinfo line: same boot")
    first = result.disagreeing[0]
    detail = (f"{len(names)} of {len(result.checked)} modules disagree with vmallocinfo.txt, so the two files "
              f"are not from the same boot (or moment): {', '.join(names)}; first: {first[0]}: {first[1]}")
    return compare(check_id, "crosscapture", [], names, detail)
