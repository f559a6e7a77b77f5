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
from dataclasses import dataclass, field

from analysis.model.layout_arm import (
    ARM_FIRST_MODELLED,
    PAGE_SIZE,
    PMD_SIZE,
    VMSPLIT_NOT_WITH_LPAE,
    VMSPLIT_PAGE_OFFSET,
    ArmConfig,
    ArmLayout,
    ArmLayoutInput,
    arm_config_from_kconfig,
    arm_layout,
    early_params,
    phys_addr_limit,
    vmsplit_choices,
)
from analysis.model.units import Version, format_size, format_version, memparse_prefix, parse_kernel_version, parse_size
from analysis.model.versions import ARM_P2V_ALIGN
from kit.errors import UserError

OLDEST_MODELLED: Version = (2, 6, 0)  # the version tables' first rows (analysis/model/versions.py)

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


# .config options the model reads (layout_arm.arm_config_from_kconfig), plus ARM_PATCH_PHYS_VIRT (the
# RAM base alignment below). Everything else would be silently ignored, so it is refused.
BOOL_OPTIONS = ("HIGHMEM", "ARM_LPAE", "THUMB2_KERNEL", "ARM_PATCH_PHYS_VIRT")
KNOWN_WORDS = (*BOOL_OPTIONS, *VMSPLIT_PAGE_OFFSET, "PAGE_OFFSET=0x...")
# The smallest RAM the model lays out: one PMD section of lowmem (layout_arm._require_lowmem).
MIN_RAM = PMD_SIZE


def _parse_config_words(words: Sequence[str]) -> dict[str, str]:
    """"HIGHMEM", "CONFIG_ARM_LPAE=y", "!HIGHMEM", "no-HIGHMEM", "PAGE_OFFSET=0x80000000" -> kconfig dict.

    Only the options the model reads are accepted; bool options take y or n; the memory split is a
    Kconfig choice, so at most one VMSPLIT_* and no negated one.
    """
    parsed: dict[str, str] = {"CONFIG_HIGHMEM": "y", "CONFIG_ARM_PATCH_PHYS_VIRT": "y"}  # Debian armmp
    splits: list[str] = []
    for word in words:
        name, eq, value = word.strip().partition("=")
        negated = name.startswith(("!", "no-"))
        name = name.lstrip("!").removeprefix("no-").upper().removeprefix("CONFIG_")
        if name not in (*BOOL_OPTIONS, *VMSPLIT_PAGE_OFFSET, "PAGE_OFFSET"):
            raise UserError(f"config word {word!r} is not an option the model reads; give one of "
                            f"{', '.join(KNOWN_WORDS)} (prefix ! or no- to turn a bool off)")
        if name == "PAGE_OFFSET":
            if negated or not eq:
                raise UserError(f"config word {word!r}: give PAGE_OFFSET a value, e.g. PAGE_OFFSET=0x80000000")
            number, rest = memparse_prefix(value.strip())
            if rest or not value.strip():
                raise UserError(f"config word {word!r}: PAGE_OFFSET is not a number; write e.g. "
                                "PAGE_OFFSET=0x80000000")
            parsed["CONFIG_PAGE_OFFSET"] = f"0x{number:x}"
            continue
        if eq and value.strip().lower() not in ("y", "n"):
            raise UserError(f"config word {word!r}: {name} is a bool; give {name}=y or {name}=n")
        enabled = not negated and (not eq or value.strip().lower() == "y")
        if name in VMSPLIT_PAGE_OFFSET:
            if not enabled:
                raise UserError(f"config word {word!r}: the memory split is a choice; name the one you want, "
                                f"one of {', '.join(VMSPLIT_PAGE_OFFSET)}")
            splits.append(name)
        parsed["CONFIG_" + name] = "y" if enabled else "n"
    if len(set(splits)) > 1:
        raise UserError(f"config words {' and '.join(dict.fromkeys(splits))} both choose the memory split; "
                        "give only one")
    return parsed


def _offset_name(value: int) -> str:
    return next((name for name, offset in VMSPLIT_PAGE_OFFSET.items() if offset == value), "")


def _arm_config(words: Sequence[str], page_offset: int | None) -> tuple[ArmConfig, bool]:
    """The ArmConfig and whether ARM_PATCH_PHYS_VIRT is on; PAGE_OFFSET checked against the Kconfig
    choices (arch/arm/Kconfig "Memory split", VMSPLIT_3G_OPT `depends on !ARM_LPAE`)."""
    kconfig = _parse_config_words(words)
    config = arm_config_from_kconfig(kconfig)
    given = {f"{name} (0x{value:08x})": value for name, value in VMSPLIT_PAGE_OFFSET.items()
             if kconfig.get("CONFIG_" + name) == "y"}
    if "CONFIG_PAGE_OFFSET" in kconfig:
        given[f"PAGE_OFFSET={kconfig['CONFIG_PAGE_OFFSET']}"] = config.page_offset
    if page_offset is not None:
        given[f"page offset {page_offset:#x}"] = page_offset
    if len(set(given.values())) > 1:
        raise UserError(f"PAGE_OFFSET given with different values: {', '.join(given)}; give it once")
    if page_offset is not None:
        config = ArmConfig(page_offset, config.highmem, config.thumb2, config.lpae, config.vipt_aliasing)
    valid = vmsplit_choices(config.lpae)
    if config.page_offset not in valid.values():
        choices = ", ".join(f"0x{value:08x} ({name})" for name, value in sorted(valid.items(), key=lambda i: i[1]))
        why = (f" ({_offset_name(config.page_offset)} needs !ARM_LPAE)"
               if config.lpae and _offset_name(config.page_offset) in VMSPLIT_NOT_WITH_LPAE else "")
        raise UserError(f"PAGE_OFFSET {config.page_offset:#x} is not one an ARM kernel can have{why}; give "
                        f"one of {choices}")
    return config, kconfig["CONFIG_ARM_PATCH_PHYS_VIRT"] == "y"


def _version(kernel: str) -> Version:
    """A modelled kernel version: 2.6 and later (before ARM_FIRST_MODELLED, with the machine's VMALLOC_END)."""
    version = parse_kernel_version(kernel)
    if version < OLDEST_MODELLED:
        raise UserError(f"not modelled: ARM kernel {kernel.strip()}: the model starts at 2.6 (before "
                        f"{format_version(ARM_FIRST_MODELLED)} with the machine's VMALLOC_END given)")
    return version


def _number(value: str | int) -> int:
    return value if isinstance(value, int) else parse_size(value)


def _ram_base(value: str | int | None, version: Version, p2v: bool, lpae: bool) -> int:
    """The first bank's base is PHYS_OFFSET (ARM_PATCH_PHYS_VIRT finds the start of RAM): aligned as
    head.S/phys2virt.S demand (versions.ARM_P2V_ALIGN), else to a page, and inside the physical
    address space."""
    base = QEMU_VIRT_RAM_BASE if value is None else _number(value)
    shown = f"0x{base:x}" if base >= 0 else str(base)
    limit = phys_addr_limit(lpae)
    if base < 0:
        raise UserError(f"RAM base {shown} is negative; give a physical address from 0, e.g. 0x40000000")
    if base >= limit:
        raise UserError(f"RAM base {shown} is beyond the {format_size(limit)} physical address space of "
                        f"{'an LPAE' if lpae else 'a !LPAE'} kernel; give a base below 0x{limit:x}"
                        + ("" if lpae else " (or config ARM_LPAE)"))
    align = ARM_P2V_ALIGN.value(version) if p2v else PAGE_SIZE
    if base % align:
        why = (f"kernel {format_version(version)} needs PHYS_OFFSET (the RAM base) {format_size(align)} aligned "
               f"({ARM_P2V_ALIGN.row(version).source})" if p2v else "RAM starts on a page (PAGE_SIZE)")
        near = [value for value in (base - base % align, base - base % align + align) if value < limit]
        raise UserError(f"RAM base {shown} is not a multiple of {format_size(align)}: {why}; give e.g. "
                        + " or ".join(f"0x{value:x}" for value in near))
    return base


def _ram_size(value: str | int, base: int, lpae: bool) -> int:
    size = _number(value)
    if size < MIN_RAM or size % PAGE_SIZE:
        raise UserError(f"RAM size {value}: give a multiple of {format_size(PAGE_SIZE)} (PAGE_SIZE) of at "
                        f"least {format_size(MIN_RAM)} (one PMD section of lowmem), e.g. 1G")
    limit = phys_addr_limit(lpae)
    if base + size > limit:
        raise UserError(f"RAM {format_size(size)} at 0x{base:x} ends at 0x{base + size:x}, beyond the "
                        f"{format_size(limit)} physical address space of {'an LPAE' if lpae else 'a !LPAE'} "
                        f"kernel; give at most {format_size(limit - base)} at this base"
                        + ("" if lpae else " (or config ARM_LPAE)"))
    return size


def _memparse_word(text: str, allow_unit: bool) -> bool:
    """Is `text` exactly one memparse number (lib/cmdline.c), with an optional ignored B/iB?"""
    rest = memparse_prefix(text)[1]
    return bool(text) and rest != text and (rest == "" or (allow_unit and rest in ("B", "iB", "b")))


def _check_cmdline(cmdline: str) -> None:
    """vmalloc=SIZE and mem=SIZE[@START] must be numbers memparse reads whole. Their ranges are the
    kernel's business: early_vmalloc clamps vmalloc= (mmu.c), arm_add_memory aligns, trims and drops
    mem= banks (setup.c); what cannot boot at all is refused by layout_arm.arm_layout."""
    for value in early_params(cmdline, "vmalloc"):
        if not _memparse_word(value, allow_unit=True):
            raise UserError(f"vmalloc={value} on the command line is not a size; write e.g. vmalloc=300M "
                            "(a number with an optional K, M or G)")
    for value in early_params(cmdline, "mem"):
        size, at, start = value.partition("@")
        if not _memparse_word(size, allow_unit=not at) or (at and not _memparse_word(start, allow_unit=False)):
            raise UserError(f"mem={value} on the command line is not SIZE or SIZE@START; write e.g. mem=512M "
                            "or mem=512M@0x40000000")


def model_layout(arch: str, kernel: str, ram: str | int, ram_base: str | int | None = None,
                 cmdline: str = "", page_offset: str | int | None = None,
                 config: Sequence[str] = (), vmalloc_end: str | int | None = None) -> ArmLayout:
    """The layout from what a person types: `model_layout("arm", "6.1", "1G", cmdline="vmalloc=300M")`.

    Defaults follow the kit's QEMU targets: RAM at 0x40000000, Debian armmp config (HIGHMEM, 3G/1G).
    Other architectures: see analysis.model.other_arches (invariants only).
    Every input is checked first (UserError, one line with the valid range): the kernel version is
    modelled, PAGE_OFFSET is a VMSPLIT choice, the RAM base is aligned as PHYS_OFFSET must be, the RAM
    is whole pages, at least one PMD section and inside the physical address space, and vmalloc=/mem=
    are numbers.
    """
    if arch != "arm":
        raise UserError(f"not modelled: arch {arch!r} has no full layout model; use arm "
                        "(x86_64/arm64/x86 invariants are in analysis.model.other_arches)")
    version = _version(kernel)
    offset = None if page_offset is None else _number(page_offset)
    arm_config, p2v = _arm_config(config, offset)
    base = _ram_base(ram_base, version, p2v, arm_config.lpae)
    size = _ram_size(ram, base, arm_config.lpae)
    _check_cmdline(cmdline)
    end = None if vmalloc_end is None else _number(vmalloc_end)
    inp = ArmLayoutInput(version=version, banks=((base, size),), cmdline=cmdline, config=arm_config,
                         vmalloc_end=end)
    return arm_layout(inp)


@dataclass(frozen=True)
class StatedInputs:
    """What a person states about a capture (``invoke check --kernel/--ram/...``), each checked like
    ``invoke model``'s; None / empty for what was not given."""

    version: Version | None = None
    banks: tuple[tuple[int, int], ...] = ()
    cmdline: str | None = None
    config: dict[str, str] = field(default_factory=dict)

    @property
    def given(self) -> bool:
        return bool(self.version or self.banks or self.cmdline is not None or self.config)

    def describe(self) -> str:
        """``kernel 4.9, RAM 64 MiB at 0x0, CONFIG_THUMB2_KERNEL=y`` (what was stated, for the notes)."""
        parts = [f"kernel {format_version(self.version)}"] if self.version else []
        parts += [f"RAM {format_size(size)} at {base:#x}" for base, size in self.banks]
        parts += [f"cmdline {self.cmdline!r}"] if self.cmdline is not None else []
        return ", ".join(parts + [f"{key}={value}" for key, value in self.config.items()])


def stated_inputs(kernel: str | None = None, ram: str | None = None, ram_base: str | None = None,
                  cmdline: str | None = None, page_offset: str | None = None,
                  config: Sequence[str] = ()) -> StatedInputs:
    """The hints, checked (UserError naming the bad one). ``ram_base`` defaults to 0 with ``ram``."""
    if ram_base is not None and ram is None:
        raise UserError("--ram-base without --ram: give the RAM size too (e.g. --ram 64M --ram-base 0x80000000)")
    version = _version(kernel) if kernel is not None else None
    words = list(config) + ([f"PAGE_OFFSET={page_offset}"] if page_offset is not None else [])
    kconfig = _parse_config_words(words) if words else {}
    if words:
        _arm_config(words, None)  # PAGE_OFFSET and the split choices checked as invoke model does
    banks: tuple[tuple[int, int], ...] = ()
    if ram is not None:
        base = _number(ram_base) if ram_base is not None else 0
        banks = ((base, _ram_size(ram, base, kconfig.get("CONFIG_ARM_LPAE") == "y")),)
    if cmdline is not None:
        _check_cmdline(cmdline)
    named = {"CONFIG_" + w.strip().partition("=")[0].lstrip("!").removeprefix("no-").upper().removeprefix("CONFIG_")
             for w in words}
    return StatedInputs(version, banks, cmdline, {k: v for k, v in kconfig.items() if k in named})
