"""Load every rendered module on a real kernel in QEMU and check each KTAP case reports ok.

The kernels are the targets' Debian kernels from the kit's cache (tests/conftest.py); modules are built
with kbuild.make and the target's toolchain, the guest is booted with the target's QEMU machine.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from deploy.qemu import qemu_command
from kbuild.make import build_modules
from kbuild.render import default_specs, render_module
from tests.conftest import SERIES, debian_busybox, debian_kernel, debian_target, qemu_binary, target_toolchain
from tests.render.initramfs import build_initramfs

LINE = re.compile(r"^\[\s*\d+\.\d+\] (kit_\w+): (.*)$")
# Cases that cannot run on a Debian armmp kernel, and why (expected SKIPs; anything else must pass).
# docs/contracts.md section 3: `aligned` uses vmalloc_user and must pass (no longer a SKIP).
EXPECTED_SKIPS = {
    ("kit_vmalloc_exec", "vmalloc_exec"): "vmalloc_exec() not in this kernel",
}


def _build(series: str, out: Path) -> list[Path]:
    module_dirs = [render_module(spec, out) for spec in default_specs()]
    built = build_modules(debian_kernel(series), target_toolchain(series), module_dirs)
    return [module.ko for module in built]


def _boot(series: str, initrd: Path) -> str:
    qemu_binary(series)
    qemu = debian_target(series).qemu
    cmd = qemu_command(qemu, debian_kernel(series).image, initrd, None, f"console={qemu.console} panic=-1 quiet")
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=180, check=False)
    return done.stdout


def _ktap_by_module(console: str) -> dict[str, list[str]]:
    dmesg = console.split("=== DMESG", 1)[-1]
    out: dict[str, list[str]] = {}
    for line in dmesg.splitlines():
        match = LINE.match(line.strip())
        if match:
            out.setdefault(match.group(1), []).append(match.group(2))
    return out


@pytest.mark.e2e
@pytest.mark.parametrize("series", SERIES)
def test_every_case_passes_in_qemu(series: str, tmp_path: Path) -> None:
    kos = _build(series, tmp_path / "gen")
    console = _boot(series, build_initramfs(debian_busybox(series), kos, tmp_path / "initrd.gz"))
    for spec in default_specs():
        assert f"STATUS {spec.name} insmod=0 rmmod=0" in console, console[-3000:]
    ktap = _ktap_by_module(console)
    for spec in default_specs():
        lines = ktap[spec.name]
        lines = lines[lines.index("KTAP version 1") :]  # drop the kernel's taint notices
        assert lines[:2] == ["KTAP version 1", f"1..{sum(r.startswith(('ok ', 'not ok ')) for r in lines)}"]
        for result in (r for r in lines if r.startswith(("ok ", "not ok "))):
            case = result.split()[2]
            skip = EXPECTED_SKIPS.get((spec.name, case))
            if skip is None and spec.name == "kit_kmap" and case == "kmap_local" and series == "5.10":
                skip = "kmap_local_page() not in this kernel"
            assert result.startswith("ok "), f"{spec.name} on {series}: {result}"
            assert (skip is None) == ("# SKIP" not in result), f"{spec.name} on {series}: {result}"
            if skip:
                assert skip in result
        _check_addresses(spec.name, lines)


def _diag(lines: list[str]) -> dict[str, str]:
    return dict(line[2:].split("=", 1) for line in lines if line.startswith("# "))


def _check_addresses(module: str, lines: list[str]) -> None:
    """Values land in the regions the kernel's own layout case reports."""
    diag = _diag(lines)
    v_start, v_end = int(diag["layout.VMALLOC_START"], 16), int(diag["layout.VMALLOC_END"], 16)
    pkmap = int(diag["layout.PKMAP_BASE"], 16)
    modules_start, modules_end = int(diag["layout.MODULES_VADDR"], 16), int(diag["layout.MODULES_END"], 16)
    for key, value in diag.items():
        if key.endswith((".addr", ".cookie", "_first", "_last")) and not key.startswith("kmap"):
            assert v_start <= int(value, 16) < v_end, f"{module}: {key}={value}"
        if key.startswith("kmap_highmem.") and key.endswith(".addr"):
            assert pkmap <= int(value, 16) < pkmap + 512 * 4096, f"{module}: {key}={value}"
        if key.startswith("symbols."):
            assert modules_start <= int(value, 16) < modules_end, f"{module}: {key}={value}"
