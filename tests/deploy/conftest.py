"""Fixtures for the deploy tests: the Debian kernel trees in /tmp/kernels and module builds."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from deploy.qemu import QemuSpec, QemuTimeouts, QemuTransport

DATA = Path(__file__).parent / "data"
KERNELS = Path("/tmp/kernels")
RELEASES = {"5.10": "5.10.0-32-armmp", "6.1": "6.1.0-50-armmp", "6.12": "6.12.95+deb12-armmp"}
APPEND = "console=ttyAMA0 panic=-1 oops=panic"  # kbuild/targets/arm-*.toml [qemu] append


@dataclass(frozen=True)
class Kernel:
    series: str
    release: str

    @property
    def root(self) -> Path:
        return KERNELS / self.series

    @property
    def image(self) -> Path:
        return self.root / "boot" / f"vmlinuz-{self.release}"

    @property
    def busybox(self) -> Path:
        return self.root / "bin" / "busybox"

    @property
    def headers(self) -> Path:
        return self.root / "usr" / "src" / f"linux-headers-{self.release}"

    def transport(self, work_dir: Path, append: str = APPEND, boot_s: float = 60.0) -> QemuTransport:
        return QemuTransport(QemuSpec(append=append), self.image, self.busybox, work_dir,
                             timeouts=QemuTimeouts(boot_s=boot_s), cache_dir=work_dir.parent / "initramfs-cache")


def kernel(series: str) -> Kernel:
    found = Kernel(series, RELEASES[series])
    if not found.image.is_file():
        pytest.fail(f"kernel tree missing: {found.image} (the e2e tests need the Debian trees in {KERNELS})")
    return found


def build_module(kern: Kernel, source_dir: Path, out_dir: Path) -> Path:
    """Build the module in ``source_dir`` against ``kern`` (real Kbuild, cross gcc-12); the .ko path."""
    shutil.copytree(source_dir, out_dir)
    subprocess.run(["make", "-s", "-C", str(kern.headers), f"M={out_dir}", "ARCH=arm",
                    "CROSS_COMPILE=arm-linux-gnueabihf-", "CC=arm-linux-gnueabihf-gcc-12", "modules"],
                   check=True, capture_output=True)
    (ko,) = out_dir.glob("*.ko")
    return ko


def data_text(name: str) -> bytes:
    """A captured console file from tests/deploy/data without its leading '#' provenance lines."""
    lines = (DATA / name).read_bytes().splitlines(keepends=True)
    while lines and lines[0].startswith(b"#"):
        lines.pop(0)
    return b"".join(lines)
