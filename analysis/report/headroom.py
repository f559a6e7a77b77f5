"""The headroom numbers a board engineer asks for, from a snapshot, the layout model and /proc files.

Pure functions: :func:`headroom` computes, :func:`headroom_lines` words it for the terminal.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace

from analysis.model.layout_arm import ArmLayout, ArmLayoutInput, arm_layout
from analysis.parsers import BootLog, ProcModule, VmallocEntry, address_state
from analysis.report.fmt import addr, human, span
from analysis.report.snapshot import Snapshot, pick_snapshot
from analysis.verify.context import Context
from analysis.verify.verify import BundleVerdict
from kit.errors import UserError

WHAT_IF_SIZES = ("128M", "256M", "384M", "480M")


@dataclass(frozen=True)
class Window:
    """An address range ``[start, end)`` and where it was read."""

    start: int
    end: int
    source: str

    @property
    def size(self) -> int:
        return self.end - self.start


@dataclass(frozen=True)
class Hole:
    start: int
    size: int


@dataclass(frozen=True)
class WhatIf:
    """The layout with ``vmalloc=<arg>`` on the command line (the model's answer, or why there is none)."""

    arg: str
    vmalloc_start: int | None = None
    vmalloc_size: int | None = None
    lowmem: int | None = None
    highmem: int | None = None
    error: str | None = None


@dataclass(frozen=True)
class Headroom:
    snapshot: str | None
    vmalloc: Window | None
    meminfo_total_kb: int | None
    meminfo_used_kb: int | None
    areas_bytes: int | None                 # every area of the snapshot, guard pages included
    used: int | None                        # bytes of the vmalloc window the snapshot's areas cover
    holes: tuple[Hole, ...] | None          # the window's free blocks, in address order
    modules: Window | None
    modules_extent: Window | None           # lowest module address to the end of the highest
    modules_used: int | None
    lowmem: int | None
    highmem: int | None
    split_source: str | None
    what_if: tuple[WhatIf, ...]
    unknown: tuple[str, ...]

    @property
    def free(self) -> int | None:
        return None if self.holes is None else sum(hole.size for hole in self.holes)

    @property
    def largest(self) -> Hole | None:
        """The largest free block (the lowest one among equals)."""
        return max(self.holes, key=lambda hole: (hole.size, -hole.start)) if self.holes else None

    @property
    def fragmentation(self) -> float | None:
        """1 - largest free block / total free: 0 when the free space is one block."""
        free, largest = self.free, self.largest
        return None if not free or largest is None else 1 - largest.size / free

    @property
    def modules_left(self) -> int | None:
        """The modules area above the highest module (module_alloc searches it bottom-up)."""
        if self.modules is None:
            return None
        if self.modules_extent is None:
            return self.modules.size if self.modules_used == 0 else None
        return max(0, self.modules.end - self.modules_extent.end)


def _covered(spans: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    merged: list[list[int]] = []
    for start, end in sorted(spans):
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    return [(start, end) for start, end in merged]


def free_holes(entries: Iterable[VmallocEntry], window: Window) -> tuple[Hole, ...]:
    """The gaps the snapshot's areas (``[start, end)``, guard included) leave in ``window``."""
    clipped = ((max(e.start, window.start), min(e.end, window.end)) for e in entries)
    used = _covered((start, end) for start, end in clipped if start < end)
    holes, cursor = [], window.start
    for start, end in [*used, (window.end, window.end)]:
        if start > cursor:
            holes.append(Hole(cursor, start - cursor))
        cursor = max(cursor, end)
    return tuple(holes)


def _block_window(boot: BootLog | None, name: str) -> Window | None:
    found = boot.layout.get(name) if boot is not None else None
    if found is None or found[0] is None or found[1] is None:
        return None
    return Window(found[0], found[1], "the boot log's layout block")


def _windows(layout: ArmLayout | None, boot: BootLog | None) -> tuple[Window | None, Window | None]:
    if layout is not None:
        return (Window(layout.VMALLOC_START, layout.VMALLOC_END, "the layout model"),
                Window(layout.MODULES_VADDR, layout.MODULES_END, "the layout model"))
    return _block_window(boot, "vmalloc"), _block_window(boot, "modules")


def _modules_use(entries: Sequence[VmallocEntry], modules: Sequence[ProcModule] | None,
                 window: Window | None) -> tuple[Window | None, int | None]:
    """Module extent and bytes: the snapshot's lines in the modules area, else /proc/modules."""
    if window is not None:
        inside = [(e.start, e.end) for e in entries if window.start <= e.start < window.end]
        if inside:
            covered = _covered(inside)
            return Window(covered[0][0], covered[-1][1], "vmallocinfo lines in the modules area"), \
                sum(end - start for start, end in covered)
    placed = [m for m in modules or () if m.address is not None]
    if placed:
        low = min(m.address for m in placed if m.address is not None)
        high = max(m.address + m.size for m in placed if m.address is not None)
        return Window(low, high, "/proc/modules (address + size)"), sum(m.size for m in placed)
    return None, (0 if window is not None and modules is not None else None)


def _split(layout: ArmLayout | None, meminfo: Mapping[str, int], boot: BootLog | None,
           ) -> tuple[int | None, int | None, str | None]:
    if layout is not None:
        return layout.lowmem_bytes, layout.highmem_bytes, "the layout model (RAM below / above arm_lowmem_limit)"
    if "LowTotal" in meminfo:
        return meminfo["LowTotal"] << 10, meminfo.get("HighTotal", 0) << 10, "meminfo LowTotal / HighTotal"
    lowmem = _block_window(boot, "lowmem")
    if lowmem is not None:
        highmem_kb = boot.memory.highmem_kb if boot is not None and boot.memory is not None else None
        return lowmem.size, None if highmem_kb is None else highmem_kb << 10, "the boot log (lowmem line, Memory:)"
    return None, None, None


def hidden_addresses(state: str) -> str:
    return f"the snapshot's addresses are {state} (kptr_restrict): its areas cannot be placed"


def vmalloc_what_if(context: Context, sizes: Sequence[str] = WHAT_IF_SIZES) -> tuple[WhatIf, ...]:
    """``arm_layout`` again with the context's inputs and ``vmalloc=N`` in place of the cmdline's."""
    layout = context.layout
    if layout is None or context.version is None:
        return ()
    kept = [word for word in context.cmdline.split() if not word.startswith("vmalloc=")]
    rows = []
    for size in sizes:
        inp = ArmLayoutInput(context.version, context.banks, " ".join([*kept, f"vmalloc={size}"]), layout.config)
        try:
            new = arm_layout(inp)
        except UserError as err:
            rows.append(WhatIf(size, error=str(err)))
            continue
        rows.append(WhatIf(size, new.VMALLOC_START, new.VMALLOC_END - new.VMALLOC_START,
                           new.lowmem_bytes, new.highmem_bytes))
    return tuple(rows)


def headroom(context: Context, snapshot: Snapshot | None, meminfo: Mapping[str, int] | None,
             boot: BootLog | None, modules_list: Sequence[ProcModule] | None = None,
             sizes: Sequence[str] = WHAT_IF_SIZES) -> Headroom:
    """Every number of the headroom section; what cannot be known is named in ``unknown``. The loaded
    modules are the snapshot's /proc/modules, else ``modules_list`` (a capture's single modules.txt)."""
    meminfo = meminfo or {}
    unknown: list[str] = []
    if context.layout is None:
        unknown.append(f"no layout model: {context.why_no_layout or 'unknown reason'}")
    vmalloc, modules = _windows(context.layout, boot)
    entries = snapshot.entries if snapshot is not None else ()
    state = address_state(list(entries))
    result = Headroom(
        snapshot=snapshot.label if snapshot is not None else None, vmalloc=vmalloc,
        meminfo_total_kb=meminfo.get("VmallocTotal"), meminfo_used_kb=meminfo.get("VmallocUsed"),
        areas_bytes=sum(e.size for e in entries) if snapshot is not None else None,
        used=None, holes=None, modules=modules, modules_extent=None, modules_used=None,
        lowmem=None, highmem=None, split_source=None, what_if=vmalloc_what_if(context, sizes), unknown=())
    if snapshot is None:
        unknown.append("no vmallocinfo snapshot in the bundle: used and free space are not known")
    elif state in ("zeroed", "hashed"):
        unknown.append(hidden_addresses(state))
        entries = ()
    if vmalloc is None:
        unknown.append("vmalloc window unknown (no layout, no layout block): free space cannot be computed")
    elif snapshot is not None and state not in ("zeroed", "hashed"):   # an empty snapshot: all free
        holes = free_holes(entries, vmalloc)
        result = replace(result, holes=holes, used=vmalloc.size - sum(hole.size for hole in holes))
    loaded = snapshot.modules if snapshot is not None and snapshot.modules is not None else modules_list
    extent, modules_used = _modules_use(entries, loaded, modules)
    lowmem, highmem, split_source = _split(context.layout, meminfo, boot)
    return replace(result, modules_extent=extent, modules_used=modules_used, lowmem=lowmem, highmem=highmem,
                   split_source=split_source, unknown=tuple(unknown))


def verdict_headroom(verdict: BundleVerdict) -> Headroom:
    """:func:`headroom` for a verified bundle, on the snapshot :func:`pick_snapshot` chooses."""
    bundle = verdict.bundle
    return headroom(verdict.context, pick_snapshot(bundle), bundle.meminfo, bundle.boot, bundle.modules)


def headroom_lines(h: Headroom) -> list[str]:
    """At most six short lines for the terminal."""
    lines = []
    if h.vmalloc is not None:
        used = "used ?" if h.used is None else f"used {human(h.used)}, free {human(h.vmalloc.size - h.used)}"
        lines.append(f"vmalloc {span(h.vmalloc.start, h.vmalloc.end)} {human(h.vmalloc.size)}: {used}")
    elif h.meminfo_total_kb is not None:
        lines.append(f"vmalloc {human(h.meminfo_total_kb << 10)} (VmallocTotal); window unknown")
    largest, frag = h.largest, h.fragmentation
    if largest is not None and h.holes is not None:
        lines.append(f"largest free block {human(largest.size)} at {addr(largest.start)}; {len(h.holes)} holes, "
                     f"fragmentation {0 if frag is None else frag:.1%}")
    if h.modules is not None or h.modules_extent is not None:
        lines.append(_modules_line(h))
    if h.lowmem is not None:
        high = "?" if h.highmem is None else human(h.highmem)
        lines.append(f"lowmem {human(h.lowmem)}, highmem {high}")
    if h.what_if:
        lines.append("lowmem with vmalloc=: " + ", ".join(
            f"{w.arg} -> {'error' if w.lowmem is None else human(w.lowmem)}" for w in h.what_if))
    lines.extend(f"unknown: {why}" for why in h.unknown[: 6 - len(lines)])
    return lines[:6]


def _modules_line(h: Headroom) -> str:
    where = f"modules {span(h.modules.start, h.modules.end)}" if h.modules is not None else "modules"
    if h.modules_extent is None:
        return f"{where}: none loaded" if h.modules_used == 0 else f"{where}: use unknown"
    left = "" if h.modules_left is None else f", {human(h.modules_left)} left above"
    return f"{where}: used {span(h.modules_extent.start, h.modules_extent.end)} ({human(h.modules_used or 0)}){left}"
