"""Fill in what context.py cannot infer for board captures and bare run bundles, from the boot log.

``build_context`` reads ``target.toml``, ``config``, ``cmdline.txt`` and ``iomem.txt``. A board capture
usually has none of them, only a console log. This module adds, in this order of trust:

* version: the banner's Debian stable version (``#1 SMP Debian 5.10.223-1``) refines ``5.10.0-32-armmp``;
* arch: ``CPU: ... (ARMv7), cr=...`` (arch/arm/kernel/setup.c ``setup_processor``), a ``modules`` line in
  the layout block (only ARM prints it), or x86-32's layout (pkmap above vmalloc: pgtable_32_areas.h);
* RAM: ``Early memory node ranges`` / ``node 0: [mem a-b]`` lines (mm/page_alloc.c 5.x, mm/mm_init.c 6.x),
  else the layout block: lowmem span (``high_memory - PAGE_OFFSET``) plus the ``Memory:`` line's highmem;
* config: ``PAGE_OFFSET`` = the lowmem line's start, HIGHMEM = a pkmap line (arch/arm/mm/init.c prints it
  only with CONFIG_HIGHMEM), else the ``Memory:`` line's ``highmem`` field (printed only with HIGHMEM).

What was inferred is listed in :attr:`InferredContext.notes`, so a check that compares a value with
itself (e.g. the lowmem start against a PAGE_OFFSET read from that very line) says so.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from pathlib import Path

from analysis.model.banner import StatedInputs
from analysis.model.layout_arm import ArmLayout, ArmLayoutInput, arm_layout
from analysis.model.units import Version, parse_kernel_version
from analysis.parsers import BootLog
from analysis.verify.bundle import Bundle
from analysis.verify.context import Context, build_context
from kit.errors import UserError

_DEBIAN_VERSION = re.compile(r"\bDebian (\d+\.\d+\.\d+)")
_ARM_CPU = re.compile(r"CPU: .*\(ARMv\d+\w*\), cr=[0-9a-f]+")
THUMB2_MODULES_BELOW = 8 << 20  # arch/arm/include/asm/memory.h, CONFIG_THUMB2_KERNEL (else 16 MiB)
_NODE_RANGE = re.compile(r"node\s+\d+: \[mem 0x([0-9a-fA-F]+)-0x([0-9a-fA-F]+)\]")


@dataclass(frozen=True)
class InferredContext(Context):
    """A Context plus what was read from the boot log instead of being stated (one note per fact)."""

    notes: tuple[str, ...] = ()


def boot_text(bundle: Bundle) -> str:
    """The boot log's whole text (empty when the bundle has none)."""
    if bundle.boot is None:
        return ""
    path = Path(bundle.boot.path)
    return path.read_text(errors="replace") if path.is_file() else ""


def refined_version(boot: BootLog | None, version: Version | None) -> Version | None:
    """A Debian ABI release (X.Y.0-N-flavour) carries its real stable version later in the banner."""
    if boot is None or boot.linux_version is None:
        return version
    for match in _DEBIAN_VERSION.finditer(boot.linux_version):   # the gcc version may say "Debian" too
        debian = parse_kernel_version(match.group(1))
        if version is not None and version[:2] == debian[:2] and version[2] == 0:
            return debian
    return version


def arch_from_boot(boot: BootLog | None, text: str) -> str | None:
    """``arm`` or ``x86`` (32-bit) from the console, None when nothing says it."""
    if _ARM_CPU.search(text):
        return "arm"
    if boot is None:
        return None
    layout = boot.layout
    if "modules" in layout:
        return "arm"
    pkmap, vmalloc = layout.get("pkmap"), layout.get("vmalloc")
    if pkmap and vmalloc and pkmap[0] is not None and vmalloc[0] is not None and pkmap[0] > vmalloc[0]:
        return "x86"
    return None


def banks_from_node_ranges(text: str) -> tuple[tuple[int, int], ...]:
    """``node   0: [mem 0x40000000-0x7fffffff]`` lines (inclusive ends) as (base, size), merged by model."""
    banks = []
    for match in _NODE_RANGE.finditer(text):
        start, end = int(match.group(1), 16), int(match.group(2), 16)
        banks.append((start, end - start + 1))
    return tuple(banks)


def _lowmem(boot: BootLog) -> tuple[int, int] | None:
    lowmem = boot.layout.get("lowmem")
    if lowmem is None or lowmem[0] is None or lowmem[1] is None:
        return None
    return lowmem[0], lowmem[1]


def banks_from_layout_block(boot: BootLog) -> tuple[tuple[tuple[int, int], ...], str] | None:
    """One bank at 0: lowmem span + highmem (the Memory: line's ``highmem``, 0 when it is absent)."""
    lowmem = _lowmem(boot)
    if lowmem is None:
        return None
    highmem_kb = boot.memory.highmem_kb if boot.memory is not None else None
    size = lowmem[1] - lowmem[0] + (highmem_kb or 0) * 1024
    how = "lowmem line + Memory: highmem" if highmem_kb is not None else "lowmem line, no highmem assumed"
    return ((0, size),), f"RAM {size >> 10} kB at 0 inferred from the boot log's {how}"


def config_from_boot(boot: BootLog | None) -> tuple[dict[str, str], list[str]]:
    """CONFIG_PAGE_OFFSET and CONFIG_HIGHMEM as the boot log shows them."""
    if boot is None:
        return {}, []
    config: dict[str, str] = {}
    notes: list[str] = []
    lowmem = _lowmem(boot)
    if lowmem is not None:
        config["CONFIG_PAGE_OFFSET"] = f"0x{lowmem[0]:08x}"
        notes.append(f"PAGE_OFFSET 0x{lowmem[0]:08x} read from the layout block's lowmem line")
    if boot.layout:
        config["CONFIG_HIGHMEM"] = "y" if "pkmap" in boot.layout else "n"
        notes.append(f"HIGHMEM={config['CONFIG_HIGHMEM']} from the layout block (pkmap line present or not)")
        modules = boot.layout.get("modules")
        if lowmem is not None and modules is not None and modules[0] == lowmem[0] - THUMB2_MODULES_BELOW:
            config["CONFIG_THUMB2_KERNEL"] = "y"  # asm/memory.h: MODULES_VADDR = PAGE_OFFSET - SZ_8M
            notes.append(f"modules at 0x{modules[0]:08x}: CONFIG_THUMB2_KERNEL (PAGE_OFFSET - 8 MiB, the "
                         "layout block's modules line)")
    elif boot.memory is not None:
        config["CONFIG_HIGHMEM"] = "y" if boot.memory.highmem_kb is not None else "n"
        notes.append(f"HIGHMEM={config['CONFIG_HIGHMEM']} from the Memory: line's highmem field")
    return config, notes


def infer_context(bundle: Bundle, stated: StatedInputs | None = None) -> InferredContext:
    """``build_context`` plus the boot-log inference above; stated facts always win: ``stated`` (what the
    engineer gives ``invoke check``) over the bundle's files, the files over the inference."""
    files = build_context(bundle)
    ctx = _with_stated(files, stated)
    text = boot_text(bundle)
    notes: list[str] = []
    version = refined_version(bundle.boot, ctx.version)
    if version != ctx.version:
        notes.append(f"kernel version {'.'.join(map(str, version or ()))} read from the banner")
    stated_arch = bundle.facts.get("arch")
    # context._arch calls any log with a pkmap line "arm"; x86-32 prints pkmap too, so re-read the log.
    arch = stated_arch if isinstance(stated_arch, str) else arch_from_boot(bundle.boot, text) or ctx.arch
    if arch != ctx.arch:
        notes.append(f"arch {arch} inferred from the boot log")
    banks = ctx.banks
    if not banks:
        banks = banks_from_node_ranges(text)
        if banks:
            notes.append("RAM banks read from the boot log's memory node ranges")
        elif bundle.boot is not None and (found := banks_from_layout_block(bundle.boot)) is not None:
            banks, note = found
            notes.append(note)
    config = dict(files.config)
    if not config:
        config, config_notes = config_from_boot(bundle.boot)
        notes += config_notes
    if stated is not None and stated.given:
        config.update(stated.config)
        notes.append(f"stated: {stated.describe()}")
    base = replace(ctx, arch=arch, version=version, banks=banks, config=config)
    printed = bundle.boot.layout.get("vmalloc") if bundle.boot is not None else None
    layout, why = _layout(base, printed[1] if printed is not None else None)
    return InferredContext(arch, version, ctx.release, ctx.cmdline, banks, config, layout, why,
                           notes=tuple(notes))


def _with_stated(ctx: Context, stated: StatedInputs | None) -> Context:
    """The version, RAM and command line the engineer stated, over the bundle's (config: see infer_context)."""
    if stated is None or not stated.given:
        return ctx
    return replace(ctx, version=stated.version or ctx.version, banks=stated.banks or ctx.banks,
                   cmdline=ctx.cmdline if stated.cmdline is None else stated.cmdline)


def _layout(ctx: Context, vmalloc_end: int | None = None) -> tuple[ArmLayout | None, str | None]:
    """The ARM model for the completed facts, or why there is none (same rules as build_context).
    ``vmalloc_end``: the printed vmalloc line's end, the machine's VMALLOC_END for a kernel before 3.3."""
    if ctx.arch != "arm":
        return None, f"not modelled: arch {ctx.arch or 'unknown'} (only 32-bit ARM has a full layout model)"
    if ctx.version is None:
        return None, "kernel version unknown (no target.toml, no 'Linux version' line)"
    if not ctx.banks:
        return None, "RAM size unknown (no target.toml mem_mib, no iomem.txt, no node ranges or layout block)"
    try:
        return arm_layout(ArmLayoutInput(ctx.version, ctx.banks, ctx.cmdline, ctx.arm_config,
                                         vmalloc_end=vmalloc_end)), None
    except UserError as err:
        return None, str(err)

