"""Fixtures for the deploy tests: the targets' Debian kernels (from the kit's cache) and module builds."""

from __future__ import annotations

import dataclasses
import shutil
from dataclasses import dataclass
from pathlib import Path

from deploy.qemu import QemuTimeouts, QemuTransport
from kbuild.kernels import KernelTree
from kbuild.make import build_module_dir
from kbuild.targets import Target
from tests.conftest import debian_busybox, debian_kernel, debian_target, qemu_binary, target_toolchain

DATA = Path(__file__).parent / "data"


@dataclass(frozen=True)
class Kernel:
    series: str
    target: Target
    tree: KernelTree
    busybox: Path

    @property
    def image(self) -> Path:
        return self.tree.image

    def transport(self, work_dir: Path, append: str | None = None, boot_s: float = 60.0) -> QemuTransport:
        """A QEMU transport with the target's own QEMU spec; ``append`` replaces its command line."""
        spec = self.target.qemu if append is None else dataclasses.replace(self.target.qemu, append=append)
        return QemuTransport(spec, self.image, self.busybox, work_dir, dtb=self.tree.dtb,
                             timeouts=QemuTimeouts(boot_s=boot_s), cache_dir=work_dir.parent / "initramfs-cache")


def kernel(series: str) -> Kernel:
    """The ``arm-<series>`` target with its Debian kernel; fails the test when it cannot be had."""
    qemu_binary(series)
    return Kernel(series, debian_target(series), debian_kernel(series), debian_busybox(series))


def build_module(kern: Kernel, source_dir: Path, out_dir: Path) -> Path:
    """Build the module in ``source_dir`` against ``kern`` (real Kbuild, the target's toolchain); the .ko."""
    shutil.copytree(source_dir, out_dir)
    (built,) = build_module_dir(kern.tree, target_toolchain(kern.series), out_dir)
    return built.ko


def data_text(name: str) -> bytes:
    """A captured console file from tests/deploy/data without its leading '#' provenance lines."""
    lines = (DATA / name).read_bytes().splitlines(keepends=True)
    while lines and lines[0].startswith(b"#"):
        lines.pop(0)
    return b"".join(lines)
