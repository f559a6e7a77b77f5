"""What the model needs to know about the target, inferred from a bundle's files.

Precedence: ``target.toml`` facts (written by a run), then the captured files (cmdline.txt,
/proc/iomem's "System RAM", the boot log's banner and command line).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from analysis.model.layout_arm import ArmConfig, ArmLayout, ArmLayoutInput, arm_config_from_kconfig, arm_layout
from analysis.model.units import Version, parse_kernel_version
from analysis.verify.bundle import Bundle
from kit.errors import UserError

_SYSTEM_RAM = re.compile(r"^\s*([0-9a-fA-F]+)-([0-9a-fA-F]+) : System RAM\s*$", re.MULTILINE)


@dataclass(frozen=True)
class Context:
    arch: str | None
    version: Version | None
    release: str | None
    cmdline: str
    banks: tuple[tuple[int, int], ...]
    config: dict[str, str]
    layout: ArmLayout | None
    why_no_layout: str | None

    @property
    def arm_config(self) -> ArmConfig:
        return arm_config_from_kconfig(self.config) if self.config else ArmConfig()


def _version(bundle: Bundle) -> tuple[Version | None, str | None]:
    kernel = bundle.kernel_facts
    release = kernel.get("release")
    for candidate in (kernel.get("version"), release, bundle.boot.release if bundle.boot else None):
        if isinstance(candidate, str) and candidate:
            try:
                return parse_kernel_version(candidate), release if isinstance(release, str) else candidate
            except UserError:
                continue
    return None, release if isinstance(release, str) else None


def _cmdline(bundle: Bundle) -> str:
    if bundle.cmdline is not None:
        return bundle.cmdline
    fact = bundle.facts.get("cmdline")
    if isinstance(fact, str):
        return fact
    if bundle.boot is not None and bundle.boot.cmdline is not None:
        return bundle.boot.cmdline
    return ""


def system_ram_banks(iomem: str) -> tuple[tuple[int, int], ...]:
    """Top-level ``System RAM`` ranges of /proc/iomem (inclusive ends) as (base, size)."""
    banks = []
    for match in _SYSTEM_RAM.finditer(iomem):
        if match.group(0).startswith(" "):
            continue  # nested resource
        start, end = int(match.group(1), 16), int(match.group(2), 16)
        banks.append((start, end - start + 1))
    return tuple(banks)


def _banks(bundle: Bundle) -> tuple[tuple[int, int], ...]:
    mem_mib = bundle.facts.get("mem_mib")
    base = bundle.facts.get("ram_base")
    if isinstance(mem_mib, int) and isinstance(base, int):
        return ((base, mem_mib << 20),)
    iomem = bundle.path / "iomem.txt"
    if iomem.is_file():
        return system_ram_banks(iomem.read_text(errors="replace"))
    return ()


def _arch(bundle: Bundle) -> str | None:
    arch = bundle.facts.get("arch")
    if isinstance(arch, str):
        return arch
    return None  # the boot log's hints are read by analysis.verify.infer


def build_context(bundle: Bundle) -> Context:
    version, release = _version(bundle)
    cmdline = _cmdline(bundle)
    banks = _banks(bundle)
    config = bundle.config or {}
    arch = _arch(bundle)
    layout, why = None, None
    if arch != "arm":
        why = f"not modelled: arch {arch or 'unknown'} (only 32-bit ARM has a full layout model)"
    elif version is None:
        why = "kernel version unknown (no target.toml, no 'Linux version' line)"
    elif not banks:
        why = "RAM size unknown (no target.toml mem_mib, no iomem.txt System RAM)"
    else:
        try:
            arm = arm_config_from_kconfig(config) if config else ArmConfig()
            layout = arm_layout(ArmLayoutInput(version, banks, cmdline, arm))
        except UserError as err:
            why = str(err)
    return Context(arch, version, release, cmdline, banks, config, layout, why)
