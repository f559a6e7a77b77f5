"""Targets: one small declarative TOML file per target in ``kbuild/targets/``.

The list of targets is derived from the files (``DEFAULT.toml`` only names the default). Loading
validates every field's type and rejects unknown keys, so a typo fails loudly with the file's name.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from kbuild.toml_fields import get, positive_int, read_toml, reject_unknown_keys, section, string_tuple
from kit.errors import ParseError, UserError

TARGETS_DIR = Path(__file__).resolve().parent / "targets"
DEFAULT_FILE = "DEFAULT.toml"

T = TypeVar("T")


@dataclass(frozen=True)
class KernelSpec:
    """Which Debian kernel to fetch: ``linux-image-<flavour>:<debian_arch>`` from ``suite``."""

    series: str
    suite: str
    flavour: str
    debian_arch: str


@dataclass(frozen=True)
class ToolchainSpec:
    """The cross compiler: ``CROSS_COMPILE`` prefix, the ``CC`` to force, and its apt packages."""

    cross_compile: str
    cc: str
    apt_packages: tuple[str, ...]


@dataclass(frozen=True)
class QemuSpec:
    """How the target boots in QEMU."""

    binary: str
    machine: str
    cpu: str
    mem_mib: int
    smp: int
    console: str
    append: str
    apt_packages: tuple[str, ...]


@dataclass(frozen=True)
class Target:
    """One target: a kernel, the toolchain that builds its modules, and the machine that runs it."""

    name: str
    description: str
    arch: str
    kernel: KernelSpec
    toolchain: ToolchainSpec
    qemu: QemuSpec


def target_names(targets_dir: Path = TARGETS_DIR) -> list[str]:
    """The valid target names: every ``*.toml`` in ``targets_dir`` except ``DEFAULT.toml``."""
    return sorted(p.stem for p in targets_dir.glob("*.toml") if p.name != DEFAULT_FILE)


def default_target_name(targets_dir: Path = TARGETS_DIR) -> str:
    """The target named by ``DEFAULT.toml`` (``default = "<name>"``); it must exist."""
    path = targets_dir / DEFAULT_FILE
    table = read_toml(path)
    reject_unknown_keys(table, {"default"}, path, "")
    name = get(table, "default", str, path, "")
    if name not in target_names(targets_dir):
        valid = _listing(targets_dir)
        raise ParseError(str(path), None, f"default target {name!r} has no file; valid: {valid}")
    return name


def load_target(name: str, targets_dir: Path = TARGETS_DIR) -> Target:
    """Load and validate ``<targets_dir>/<name>.toml``. An unknown name lists the valid ones."""
    if name not in target_names(targets_dir):
        raise UserError(f"unknown target {name!r}; valid targets: {_listing(targets_dir)}")
    path = targets_dir / f"{name}.toml"
    table = read_toml(path)
    reject_unknown_keys(table, {"description", "arch", "kernel", "toolchain", "qemu"}, path, "")
    return Target(
        name=name,
        description=get(table, "description", str, path, ""),
        arch=get(table, "arch", str, path, ""),
        kernel=_kernel_spec(section(table, "kernel", path), path),
        toolchain=_toolchain_spec(section(table, "toolchain", path), path),
        qemu=_qemu_spec(section(table, "qemu", path), path),
    )


def _kernel_spec(table: Mapping[str, Any], path: Path) -> KernelSpec:
    reject_unknown_keys(table, {"series", "suite", "flavour", "debian_arch"}, path, "kernel.")
    return KernelSpec(
        series=get(table, "series", str, path, "kernel."),
        suite=get(table, "suite", str, path, "kernel."),
        flavour=get(table, "flavour", str, path, "kernel."),
        debian_arch=get(table, "debian_arch", str, path, "kernel."),
    )


def _toolchain_spec(table: Mapping[str, Any], path: Path) -> ToolchainSpec:
    reject_unknown_keys(table, {"cross_compile", "cc", "apt_packages"}, path, "toolchain.")
    return ToolchainSpec(
        cross_compile=get(table, "cross_compile", str, path, "toolchain."),
        cc=get(table, "cc", str, path, "toolchain."),
        apt_packages=string_tuple(table, "apt_packages", path, "toolchain."),
    )


def _qemu_spec(table: Mapping[str, Any], path: Path) -> QemuSpec:
    keys = {"binary", "machine", "cpu", "mem_mib", "smp", "console", "append", "apt_packages"}
    reject_unknown_keys(table, keys, path, "qemu.")
    return QemuSpec(
        binary=get(table, "binary", str, path, "qemu."),
        machine=get(table, "machine", str, path, "qemu."),
        cpu=get(table, "cpu", str, path, "qemu."),
        mem_mib=positive_int(table, "mem_mib", path, "qemu."),
        smp=positive_int(table, "smp", path, "qemu."),
        console=get(table, "console", str, path, "qemu."),
        append=get(table, "append", str, path, "qemu."),
        apt_packages=string_tuple(table, "apt_packages", path, "qemu."),
    )


def _listing(targets_dir: Path) -> str:
    return ", ".join(target_names(targets_dir)) or f"(none: no *.toml in {targets_dir})"
