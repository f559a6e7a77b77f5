"""Targets: one small declarative TOML file per target in ``kbuild/targets/``.

The list of targets is derived from the files (``DEFAULT.toml`` only names the default). Loading
validates every field's type and rejects unknown keys, so a typo fails loudly with the file's name.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

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
    table = _read_toml(path)
    _reject_unknown_keys(table, {"default"}, path, "")
    name = _get(table, "default", str, path, "")
    if name not in target_names(targets_dir):
        valid = _listing(targets_dir)
        raise ParseError(str(path), None, f"default target {name!r} has no file; valid: {valid}")
    return name


def load_target(name: str, targets_dir: Path = TARGETS_DIR) -> Target:
    """Load and validate ``<targets_dir>/<name>.toml``. An unknown name lists the valid ones."""
    if name not in target_names(targets_dir):
        raise UserError(f"unknown target {name!r}; valid targets: {_listing(targets_dir)}")
    path = targets_dir / f"{name}.toml"
    table = _read_toml(path)
    _reject_unknown_keys(table, {"description", "arch", "kernel", "toolchain", "qemu"}, path, "")
    return Target(
        name=name,
        description=_get(table, "description", str, path, ""),
        arch=_get(table, "arch", str, path, ""),
        kernel=_kernel_spec(_section(table, "kernel", path), path),
        toolchain=_toolchain_spec(_section(table, "toolchain", path), path),
        qemu=_qemu_spec(_section(table, "qemu", path), path),
    )


def _kernel_spec(table: Mapping[str, Any], path: Path) -> KernelSpec:
    _reject_unknown_keys(table, {"series", "suite", "flavour", "debian_arch"}, path, "kernel.")
    return KernelSpec(
        series=_get(table, "series", str, path, "kernel."),
        suite=_get(table, "suite", str, path, "kernel."),
        flavour=_get(table, "flavour", str, path, "kernel."),
        debian_arch=_get(table, "debian_arch", str, path, "kernel."),
    )


def _toolchain_spec(table: Mapping[str, Any], path: Path) -> ToolchainSpec:
    _reject_unknown_keys(table, {"cross_compile", "cc", "apt_packages"}, path, "toolchain.")
    return ToolchainSpec(
        cross_compile=_get(table, "cross_compile", str, path, "toolchain."),
        cc=_get(table, "cc", str, path, "toolchain."),
        apt_packages=_string_tuple(table, "apt_packages", path, "toolchain."),
    )


def _qemu_spec(table: Mapping[str, Any], path: Path) -> QemuSpec:
    keys = {"binary", "machine", "cpu", "mem_mib", "smp", "console", "append", "apt_packages"}
    _reject_unknown_keys(table, keys, path, "qemu.")
    return QemuSpec(
        binary=_get(table, "binary", str, path, "qemu."),
        machine=_get(table, "machine", str, path, "qemu."),
        cpu=_get(table, "cpu", str, path, "qemu."),
        mem_mib=_positive_int(table, "mem_mib", path, "qemu."),
        smp=_positive_int(table, "smp", path, "qemu."),
        console=_get(table, "console", str, path, "qemu."),
        append=_get(table, "append", str, path, "qemu."),
        apt_packages=_string_tuple(table, "apt_packages", path, "qemu."),
    )


def _listing(targets_dir: Path) -> str:
    return ", ".join(target_names(targets_dir)) or f"(none: no *.toml in {targets_dir})"


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as f:
            return tomllib.load(f)
    except FileNotFoundError as e:
        raise ParseError(str(path), None, "file not found") from e
    except tomllib.TOMLDecodeError as e:
        raise ParseError(str(path), None, f"not valid TOML: {e}") from e


def _reject_unknown_keys(table: Mapping[str, Any], known: set[str], path: Path, prefix: str) -> None:
    unknown = sorted(set(table) - known)
    if unknown:
        names = ", ".join(prefix + k for k in unknown)
        raise ParseError(str(path), None, f"unknown key(s) {names}; known: {', '.join(sorted(known))}")


def _section(table: Mapping[str, Any], key: str, path: Path) -> Mapping[str, Any]:
    value = table.get(key)
    if not isinstance(value, dict):
        raise ParseError(str(path), None, f"missing table [{key}]")
    return value


def _get(table: Mapping[str, Any], key: str, kind: type[T], path: Path, prefix: str) -> T:
    if key not in table:
        raise ParseError(str(path), None, f"missing key {prefix}{key} ({kind.__name__})")
    value = table[key]
    # bool is an int in Python; a TOML `true` is never a valid int field here.
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ParseError(
            str(path), None, f"{prefix}{key} must be {kind.__name__}, got {type(value).__name__} {value!r}"
        )
    return value


def _positive_int(table: Mapping[str, Any], key: str, path: Path, prefix: str) -> int:
    value = _get(table, key, int, path, prefix)
    if value <= 0:
        raise ParseError(str(path), None, f"{prefix}{key} must be positive, got {value}")
    return value


def _string_tuple(table: Mapping[str, Any], key: str, path: Path, prefix: str) -> tuple[str, ...]:
    values = _get(table, key, list, path, prefix)
    if not all(isinstance(v, str) for v in values):
        raise ParseError(str(path), None, f"{prefix}{key} must be a list of strings, got {values!r}")
    return tuple(values)
