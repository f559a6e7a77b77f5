"""Which vmallocinfo snapshot the report draws, and how each of its lines is named and shown."""

from __future__ import annotations

from dataclasses import dataclass

from analysis.parsers import ProcModule, VmallocEntry
from analysis.report.fmt import addr
from analysis.verify.bundle import Bundle

# For a kit run: the last module run's snapshot taken while its module was loaded, else around it.
_PREFERENCE = ("during", "after", "before")


@dataclass(frozen=True)
class Snapshot:
    label: str                               # which file, and why it was chosen
    entries: tuple[VmallocEntry, ...]
    modules: tuple[ProcModule, ...] | None   # /proc/modules taken with it, when there is one


def pick_snapshot(bundle: Bundle) -> Snapshot | None:
    """The bundle's single vmallocinfo.txt (a board capture), else the last module run's ``during``
    snapshot (the module loaded, its own areas present; ``after``/``before`` when that is missing)."""
    modules = tuple(bundle.modules) if bundle.modules is not None else None
    if bundle.vmallocinfo is not None:
        return Snapshot("vmallocinfo.txt (the bundle's single snapshot)", tuple(bundle.vmallocinfo), modules)
    for run in reversed(bundle.runs):
        for when in _PREFERENCE:
            entries = run.vmallocinfo.get(when)
            if entries is not None:
                label = (f"vmallocinfo/{run.name}.{when}.txt (the last module run, {run.name}, "
                         f"{'while it was loaded' if when == 'during' else when + ' its insmod/rmmod'})")
                run_modules = tuple(run.modules) if run.modules is not None else modules
                return Snapshot(label, tuple(entries), run_modules)
    return None


def entry_line(entry: VmallocEntry) -> str:
    """The vmallocinfo line, rebuilt from the parsed fields (mm/vmalloc.c s_show's order)."""
    words = [f"{addr(entry.start)}-{addr(entry.end)}", f"{entry.size:7d}"]
    if entry.kind == "vm_map_ram":
        words.append("vm_map_ram")
    elif entry.kind == "unpurged":
        words.append("unpurged vm_area")
    if entry.caller is not None:
        words.append(entry.caller)
    if entry.caller_module is not None:
        words.append(f"[{entry.caller_module}]")
    if entry.pages is not None:
        words.append(f"pages={entry.pages}")
    if entry.phys is not None:
        words.append(f"phys=0x{entry.phys:08x}")
    words += [flag for flag in ("ioremap", "sparse", "vmalloc", "vmap", "user", "dma-coherent", "vpages")
              if flag in entry.flags]
    words += [f"N{node}={count}" for node, count in sorted(entry.numa.items())]
    return " ".join(words)


def caller_key(entry: VmallocEntry, modules_window: tuple[int, int] | None) -> str:
    """What the map colours an area by: its module (``[isp]``), else its caller function, else its kind.
    A caller printed as a bare address is module code when it lies in the modules area."""
    if entry.caller_module is not None:
        return f"[{entry.caller_module}]"
    if entry.caller is None:
        return "vm_map_ram" if entry.kind == "vm_map_ram" else "unpurged vm_area" if entry.kind == "unpurged" else "?"
    if entry.caller.startswith("0x"):
        try:
            where = int(entry.caller, 16)
        except ValueError:
            return entry.caller
        inside = modules_window is not None and modules_window[0] <= where < modules_window[1]
        return "module code (no symbol)" if inside else "no symbol"
    return entry.caller.split("+", 1)[0]
