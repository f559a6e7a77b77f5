"""What a printed ``Virtual kernel memory layout`` block must satisfy in every era, with no kernel version,
RAM size or .config: the checks a pasted block without its ``Linux version`` line still gets.

Each rule is the kernel's own, unchanged from 2.6 to the block's removal (ARM: 5.0, x86-32: 5.1?):
* every size is its range: arch/arm/mm/init.c ``mem_init`` and arch/x86/mm/init_32.c ``mem_init`` print
  ``MLK(b, t)`` = ``(t - b) >> 10`` kB, ``MLK_ROUNDUP`` = DIV_ROUND_UP(t - b, 1K) (the image's sections) and
  ``MLM(b, t)`` = ``(t - b) >> 20`` MB;
* no two regions overlap;
* 32-bit ARM (arch/arm/include/asm/pgtable.h, asm/memory.h, asm/highmem.h):
  ``VMALLOC_START = (high_memory + VMALLOC_OFFSET) & ~(VMALLOC_OFFSET - 1)`` with 8 MiB, lowmem is
  ``PAGE_OFFSET .. high_memory`` with PAGE_OFFSET one of the VMSPLIT choices, ``PKMAP_BASE = PAGE_OFFSET -
  PMD_SIZE`` (2 MiB, classic and LPAE), ``MODULES_END = PKMAP_BASE`` with HIGHMEM else ``PAGE_OFFSET``, and
  the regions in the order modules < pkmap < lowmem < vmalloc < fixmap < vector;
* x86-32 (arch/x86/include/asm/pgtable_32_areas.h): ``VMALLOC_START = high_memory + VMALLOC_OFFSET`` (8 MiB,
  not rounded), lowmem from PAGE_OFFSET.
"""

from __future__ import annotations

from itertools import pairwise

from analysis.parsers import BootLog
from analysis.verify.check import Check, compare, skip
from analysis.verify.snapshot_checks import span_text

FAMILY = "layout"
MIB = 1 << 20
VMALLOC_OFFSET = 8 * MIB
PMD_SIZE = 2 * MIB
# arch/arm/Kconfig PAGE_OFFSET: VMSPLIT_1G, VMSPLIT_2G, VMSPLIT_3G_OPT, VMSPLIT_3G
ARM_PAGE_OFFSETS = (0x40000000, 0x80000000, 0xB0000000, 0xC0000000)
ARM_ORDER = ("modules", "pkmap", "lowmem", "vmalloc", "fixmap", "vector")
Span = tuple[int, int]


def printed_spans(boot: BootLog) -> dict[str, Span]:
    """The block's regions whose both ends are printed (``0x(ptrval)`` ones are left out)."""
    return {name: (start, end) for name, (start, end) in boot.layout.items() if start is not None and end is not None}


def block_invariant_checks(boot: BootLog | None, arch: str | None) -> list[Check]:
    """Every version-free check of the printed block (none when no block is printed)."""
    if boot is None or not boot.layout:
        return []
    spans = printed_spans(boot)
    checks = [_size_check(name, span, boot.layout_size_kb[name], arch or "arm") for name, span in spans.items()
              if name in boot.layout_size_kb]
    checks.append(_overlap_check({name: span for name, span in spans.items() if not name.startswith(".")}))
    if arch == "x86":
        checks += _x86_32_checks(spans)
    elif arch in (None, "arm"):
        checks += _arm_checks(spans)
    return checks


# mem_init's macro per line (arch/arm/mm/init.c, arch/x86/mm/init_32.c, 2.6 to the block's end): MLM prints
# (t - b) >> 20 MB, MLK (t - b) >> 10 kB, MLK_ROUNDUP DIV_ROUND_UP(t - b, 1K) kB (ARM's image sections; x86
# prints them with MLK: either is accepted for a section).
MB_LINES = {"arm": frozenset({"vmalloc", "lowmem", "pkmap", "modules", "DMA"}), "x86": frozenset({"vmalloc", "lowmem"})}


def _size_check(name: str, span: Span, printed_kb: int, arch: str) -> Check:
    start, end = span
    size = end - start
    allowed: tuple[int, ...]
    if name in MB_LINES.get(arch, MB_LINES["arm"]):
        allowed, how = ((size >> 20) << 10,), "MLM: (end - start) >> 20 MB"
    elif name.startswith("."):
        allowed, how = (size >> 10, -(-size // 1024)), "MLK / MLK_ROUNDUP: (end - start) / 1 KiB, down or up"
    else:
        allowed, how = (size >> 10,), "MLK: (end - start) >> 10 kB"
    expected = printed_kb if printed_kb in allowed else allowed[-1]
    return compare(f"layout.invariant.size.{name}", FAMILY, f"{expected} kB", f"{printed_kb} kB",
                   f"the printed size of {span_text(span)} is its range (mem_init {how}), in every era")


def _overlap_check(spans: dict[str, Span]) -> Check:
    ordered = sorted(spans.items(), key=lambda item: item[1])
    clashes = [f"{a} {span_text(sa)} and {b} {span_text(sb)}" for (a, sa), (b, sb) in pairwise(ordered)
               if sa[1] > sb[0]]
    return compare("layout.invariant.no_overlap", FAMILY, "no two regions overlap",
                   "; ".join(clashes) or "no two regions overlap", "the block's regions, in every era")


def _arm_checks(spans: dict[str, Span]) -> list[Check]:
    lowmem, vmalloc, pkmap, modules = (spans.get(name) for name in ("lowmem", "vmalloc", "pkmap", "modules"))
    offset = lowmem[0] if lowmem is not None else None
    modules_end = pkmap[0] if pkmap is not None else offset
    return [
        _arm_order(spans),
        _rule("vmalloc_start",
              (hex((lowmem[1] + VMALLOC_OFFSET) & ~(VMALLOC_OFFSET - 1)), hex(vmalloc[0]))
              if lowmem is not None and vmalloc is not None else None,
              "VMALLOC_START = (high_memory (the end of lowmem) + 8 MiB) & ~(8 MiB - 1) "
              "(arch/arm/include/asm/pgtable.h, every era)"),
        _rule("page_offset",
              (hex(offset) if offset in ARM_PAGE_OFFSETS else " or ".join(map(hex, ARM_PAGE_OFFSETS)), hex(offset))
              if offset is not None else None,
              "lowmem starts at PAGE_OFFSET, one of arch/arm/Kconfig's VMSPLIT choices (1G, 2G, 3G_OPT, 3G)"),
        _rule("pkmap", (span_text((offset - PMD_SIZE, offset)), span_text(pkmap))
              if offset is not None and pkmap is not None else None,
              "PKMAP_BASE = PAGE_OFFSET - PMD_SIZE (2 MiB) up to PAGE_OFFSET (arch/arm/include/asm/highmem.h)"),
        _rule("modules_start", _modules_start(modules[0], offset) if modules is not None and offset is not None
              else None, "MODULES_VADDR = PAGE_OFFSET - 16 MiB, or - 8 MiB with CONFIG_THUMB2_KERNEL (4.x and "
              "earlier: Thumb-2 relocations reach 2^24; arch/arm/include/asm/memory.h)"),
        _rule("vmalloc_end", _vmalloc_end(vmalloc[1]) if vmalloc is not None else None,
              "VMALLOC_END: 0xff000000 (3.x captures) or 0xff800000 (4.x on, Debian 5.10-6.12) from "
              "arch/arm/include/asm/pgtable.h; an older machine's own mach/vmalloc.h value is section (1 MiB) aligned"),
        _rule("modules_end", (hex(modules_end), hex(modules[1]))
              if modules is not None and modules_end is not None else None,
              "MODULES_END = PAGE_OFFSET - PMD_SIZE with HIGHMEM (a pkmap line), else PAGE_OFFSET "
              "(arch/arm/include/asm/memory.h)"),
    ]


def _modules_start(start: int, page_offset: int) -> tuple[str, str]:
    """(what the kernel could have, the printed start): the choice it matches is named."""
    choices = {page_offset - 16 * MIB: "PAGE_OFFSET - 16 MiB",
               page_offset - 8 * MIB: "PAGE_OFFSET - 8 MiB: THUMB2_KERNEL"}
    if start in choices:
        return f"{hex(start)} ({choices[start]})", f"{hex(start)} ({choices[start]})"
    return " or ".join(f"{hex(value)} ({why})" for value, why in choices.items()), hex(start)


def _vmalloc_end(end: int) -> tuple[str, str]:
    named = {0xFF000000: "0xff000000 (3.x)", 0xFF800000: "0xff800000 (4.x on)"}
    if end in named:
        return named[end], named[end]
    aligned = "a machine's own VMALLOC_END, 1 MiB aligned"
    return aligned, aligned if end % MIB == 0 else f"{hex(end)}: not 1 MiB aligned"


def _arm_order(spans: dict[str, Span]) -> Check:
    shown = [name for name in ARM_ORDER if name in spans]
    by_address = sorted(shown, key=lambda name: spans[name][0])
    return compare("layout.invariant.order", FAMILY, " < ".join(shown), " < ".join(by_address),
                   "32-bit ARM: modules below pkmap below lowmem below vmalloc below fixmap below vectors")


def _x86_32_checks(spans: dict[str, Span]) -> list[Check]:
    lowmem, vmalloc = spans.get("lowmem"), spans.get("vmalloc")
    return [_rule("vmalloc_start", (hex(lowmem[1] + VMALLOC_OFFSET), hex(vmalloc[0]))
                  if lowmem is not None and vmalloc is not None else None,
                  "x86-32: VMALLOC_START = high_memory (the end of lowmem) + 8 MiB "
                  "(arch/x86/include/asm/pgtable_32_areas.h, every era)")]


def _rule(name: str, values: tuple[str, str] | None, rule: str) -> Check:
    """(expected, printed), or None when the block does not print what the rule needs."""
    check_id = f"layout.invariant.{name}"
    if values is None:
        return skip(check_id, FAMILY, f"the block does not print the regions this rule needs: {rule}")
    return compare(check_id, FAMILY, values[0], values[1], rule)
