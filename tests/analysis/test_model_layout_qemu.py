"""The ARM layout model against real Debian armmp kernels booted in QEMU `virt` (RAM at 0x40000000).

Each boot runs a busybox /init that prints /proc/meminfo; VmallocTotal and HighTotal must equal the
model for the same version, RAM size and command line. `vmalloc=300M` separates the eras: 5.10's
old early_vmalloc gives 296 MiB, 6.1/6.12's vmalloc_size gives 304 MiB (spec §1.5). `mem=` checks
ARM's early_mem. Slow (a few seconds per boot, TCG): marked e2e. The kernels are the targets' Debian
kernels from the kit's cache (tests/conftest.py); the model is asked about the version actually booted.
"""

from __future__ import annotations

import dataclasses
import gzip
import subprocess
from pathlib import Path

import pytest

from analysis.model.banner import model_layout
from deploy.qemu import qemu_command
from kbuild.kernels import KernelTree
from tests.conftest import SERIES, debian_busybox, debian_kernel, debian_target, qemu_binary

pytestmark = pytest.mark.e2e
INIT = b"""#!/bin/busybox sh
/bin/busybox mount -t proc proc /proc
/bin/busybox echo KIT-MEMINFO-BEGIN
/bin/busybox cat /proc/meminfo
/bin/busybox echo KIT-MEMINFO-END
/bin/busybox poweroff -f
"""


def _newc_entry(name: str, mode: int, data: bytes = b"", rdev: tuple[int, int] = (0, 0)) -> bytes:
    """One cpio "newc" record (usr/gen_init_cpio.c format)."""
    fields = [0, mode, 0, 0, 1, 0, len(data), 0, 0, rdev[0], rdev[1], len(name) + 1, 0]
    header = b"070701" + b"".join(b"%08x" % value for value in fields)
    def pad(blob: bytes) -> bytes:
        return blob + b"\0" * (-len(blob) % 4)
    return pad(header + name.encode() + b"\0") + pad(data)


def build_initrd(busybox_path: Path, out: Path) -> Path:
    busybox = busybox_path.read_bytes()
    blob = b"".join([
        _newc_entry("bin", 0o040755), _newc_entry("proc", 0o040755), _newc_entry("dev", 0o040755),
        _newc_entry("dev/console", 0o020600, rdev=(5, 1)),
        _newc_entry("bin/busybox", 0o100755, busybox), _newc_entry("init", 0o100755, INIT),
        _newc_entry("TRAILER!!!", 0),
    ])
    out.write_bytes(gzip.compress(blob))
    return out


def boot_meminfo(series: str, tree: KernelTree, initrd: Path, mem_mib: int, cmdline: str) -> dict[str, int]:
    qemu_binary(series)
    qemu = dataclasses.replace(debian_target(series).qemu, mem_mib=mem_mib)
    command = qemu_command(qemu, tree.image, initrd, None, f"console={qemu.console} panic=-1 {cmdline}".strip())
    result = subprocess.run(command, capture_output=True, timeout=180, check=False)
    console = result.stdout.decode(errors="replace")
    if "KIT-MEMINFO-END" not in console:
        pytest.fail(f"guest did not print meminfo; command: {' '.join(command)}\n{console[-2000:]}")
    body = console.split("KIT-MEMINFO-BEGIN", 1)[1].split("KIT-MEMINFO-END", 1)[0]
    values = {}
    for line in body.splitlines():
        name, _, rest = line.partition(":")
        if rest.strip().endswith("kB"):
            values[name.strip()] = int(rest.split()[0])
    return values


CASES = [(series, mem, cmdline) for series in SERIES
         for mem, cmdline in [(1024, "vmalloc=300M"), (1024, "mem=600M"), (512, "")]]


@pytest.mark.parametrize(("series", "mem_mib", "cmdline"), CASES)
def test_meminfo_matches_model(tmp_path: Path, series: str, mem_mib: int, cmdline: str) -> None:
    tree = debian_kernel(series)
    initrd = build_initrd(debian_busybox(series), tmp_path / "initrd.gz")
    meminfo = boot_meminfo(series, tree, initrd, mem_mib, cmdline)
    assert tree.version.startswith(f"{series}.")
    layout = model_layout("arm", tree.version, f"{mem_mib}M", cmdline=cmdline)
    assert meminfo["VmallocTotal"] == layout.VmallocTotal_kB
    # HighTotal counts managed pages: equal to the raw highmem RAM when no boot reservation lands there.
    assert meminfo["HighTotal"] == layout.highmem_bytes // 1024
    assert meminfo["LowTotal"] + meminfo["HighTotal"] == meminfo["MemTotal"]
