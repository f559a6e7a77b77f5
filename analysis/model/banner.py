"""Render a modelled layout the way the kernel printed it, as JSON, and build it from typed input.

`format_layout_banner` reproduces arch/arm/mm/init.c mem_init (3.x/4.x, up to 5.0):
    #define MLK(b, t) b, t, ((t) - (b)) >> 10
    #define MLM(b, t) b, t, ((t) - (b)) >> 20
    "    vector  : 0x%08lx - 0x%08lx   (%4ld kB)\n"  MLK(VECTORS_BASE, VECTORS_BASE + PAGE_SIZE)
    "    fixmap  : ...   (%4ld kB)\n"                MLK(FIXADDR_START, FIXADDR_END)
    "    vmalloc : ...   (%4ld MB)\n"                MLM(VMALLOC_START, VMALLOC_END)
    "    lowmem  : ...   (%4ld MB)\n"                MLM(PAGE_OFFSET, high_memory)
    "    pkmap   : ...   (%4ld MB)\n"  (HIGHMEM)     MLM(PKMAP_BASE, PKMAP_BASE + LAST_PKMAP * PAGE_SIZE)
    "    modules : ...   (%4ld MB)\n"  (MODULES)     MLM(MODULES_VADDR, MODULES_END)
The kernel-image lines (.text/.init/.data/.bss) depend on the vmlinux and are not modelled. The block
was removed upstream by commit 1c31d4e96b8c (5.1); 5.10/6.1/6.12 do not print it.
"""

from __future__ import annotations

from collections.abc import Sequence

from analysis.model.layout_arm import (
    PAGE_SIZE,
    ArmConfig,
    ArmLayout,
    ArmLayoutInput,
    arm_config_from_kconfig,
    arm_layout,
)
from analysis.model.units import parse_kernel_version, parse_size
from kit.errors import UserError

QEMU_VIRT_RAM_BASE = 0x40000000


def _line(name: str, start: int, end: int, unit: str) -> str:
    shift = 10 if unit == "kB" else 20
    return f"    {name:<8}: 0x{start:08x} - 0x{end:08x}   ({(end - start) >> shift:4d} {unit})"


def format_layout_banner(layout: ArmLayout, *, include_vector: bool = True) -> str:
    """The "Virtual kernel memory layout:" block, without the kernel-image lines.

    `include_vector=False` drops the vector line, as some vendor trees (e.g. a 5.4 KASAN port) do.
    """
    lines = ["Virtual kernel memory layout:"]
    if include_vector:
        lines.append(_line("vector", layout.VECTORS_BASE, layout.VECTORS_BASE + PAGE_SIZE, "kB"))
    lines.append(_line("fixmap", layout.FIXADDR_START, layout.FIXADDR_END, "kB"))
    lines.append(_line("vmalloc", layout.VMALLOC_START, layout.VMALLOC_END, "MB"))
    lines.append(_line("lowmem", layout.PAGE_OFFSET, layout.high_memory, "MB"))
    if layout.PKMAP_BASE is not None:
        pkmap_end = layout.PKMAP_BASE + layout.LAST_PKMAP * PAGE_SIZE
        lines.append(_line("pkmap", layout.PKMAP_BASE, pkmap_end, "MB"))
    lines.append(_line("modules", layout.MODULES_VADDR, layout.MODULES_END, "MB"))
    return "\n".join(lines) + "\n"


def layout_json(layout: ArmLayout) -> dict[str, str | int]:
    """Addresses as "0x%08x" strings, sizes as ints (for `invoke model --json` and verdicts)."""
    def hex32(value: int) -> str:
        return f"0x{value:08x}"
    return {
        "PAGE_OFFSET": hex32(layout.PAGE_OFFSET),
        "high_memory": hex32(layout.high_memory),
        "VMALLOC_START": hex32(layout.VMALLOC_START),
        "VMALLOC_END": hex32(layout.VMALLOC_END),
        "VmallocTotal_kB": layout.VmallocTotal_kB,
        "MODULES_VADDR": hex32(layout.MODULES_VADDR),
        "MODULES_END": hex32(layout.MODULES_END),
        "PKMAP_BASE": hex32(layout.PKMAP_BASE) if layout.PKMAP_BASE is not None else "none",
        "FIXADDR_START": hex32(layout.FIXADDR_START),
        "lowmem_bytes": layout.lowmem_bytes,
        "highmem_bytes": layout.highmem_bytes,
    }


def _parse_config_words(words: Sequence[str]) -> dict[str, str]:
    """"HIGHMEM", "CONFIG_ARM_LPAE=y", "!HIGHMEM", "no-HIGHMEM", "PAGE_OFFSET=0x80000000" -> kconfig dict."""
    parsed: dict[str, str] = {"CONFIG_HIGHMEM": "y"}  # Debian armmp default
    for word in words:
        name, _, value = word.strip().partition("=")
        negated = name.startswith(("!", "no-"))
        name = name.lstrip("!").removeprefix("no-").upper()
        if not name:
            raise UserError(f"bad config word {word!r}; write e.g. HIGHMEM, !HIGHMEM, VMSPLIT_2G")
        key = name if name.startswith("CONFIG_") else "CONFIG_" + name
        parsed[key] = "n" if negated else (value or "y")
    return parsed


def _arm_config(words: Sequence[str], page_offset: int | None) -> ArmConfig:
    config = arm_config_from_kconfig(_parse_config_words(words))
    if page_offset is None:
        return config
    return ArmConfig(page_offset, config.highmem, config.thumb2, config.lpae, config.vipt_aliasing)


def model_layout(arch: str, kernel: str, ram: str | int, ram_base: str | int | None = None,
                 cmdline: str = "", page_offset: str | int | None = None,
                 config: Sequence[str] = ()) -> ArmLayout:
    """The layout from what a person types: `model_layout("arm", "6.1", "1G", cmdline="vmalloc=300M")`.

    Defaults follow the kit's QEMU targets: RAM at 0x40000000, Debian armmp config (HIGHMEM, 3G/1G).
    Other architectures: see analysis.model.other_arches (invariants only).
    """
    if arch != "arm":
        raise UserError(f"not modelled: arch {arch!r} has no full layout model; use arm "
                        "(x86_64/arm64/x86 invariants are in analysis.model.other_arches)")
    size = ram if isinstance(ram, int) else parse_size(ram)
    base = QEMU_VIRT_RAM_BASE if ram_base is None else (
        ram_base if isinstance(ram_base, int) else parse_size(ram_base))
    offset = page_offset if page_offset is None or isinstance(page_offset, int) else parse_size(page_offset)
    inp = ArmLayoutInput(version=parse_kernel_version(kernel), banks=((base, size),), cmdline=cmdline,
                         config=_arm_config(config, offset))
    return arm_layout(inp)
