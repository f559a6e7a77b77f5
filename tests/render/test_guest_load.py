"""Load every rendered module on a real kernel in QEMU and check each KTAP case reports ok."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from kbuild.render import default_specs, render_module
from tests.render.initramfs import build_initramfs
from tests.render.test_compile import CC, CROSS_COMPILE, KERNELS_ROOT, SERIES, _headers_dir

QEMU = "qemu-system-arm"
LINE = re.compile(r"^\[\s*\d+\.\d+\] (kit_\w+): (.*)$")
# Cases that cannot run on a Debian armmp kernel, and why (expected SKIPs; anything else must pass).
EXPECTED_SKIPS = {
    ("kit_vmalloc", "aligned"): "__vmalloc_node not exported",
    ("kit_vmalloc_exec", "vmalloc_exec"): "vmalloc_exec() not in this kernel",
}


def _build(series: str, out: Path) -> list[Path]:
    kdir = _headers_dir(series)
    kos = []
    for spec in default_specs():
        module_dir = render_module(spec, out)
        cmd = ["make", "-s", "-C", str(kdir), f"M={module_dir}", "ARCH=arm",
               f"CROSS_COMPILE={CROSS_COMPILE}", f"CC={CC}", "modules"]  # fmt: skip
        subprocess.run(cmd, capture_output=True, check=True, timeout=300)
        kos.append(module_dir / f"{spec.name}.ko")
    return kos


def _boot(series: str, initrd: Path) -> str:
    images = sorted((KERNELS_ROOT / series / "boot").glob("vmlinuz-*"))
    busybox = KERNELS_ROOT / series / "bin" / "busybox"
    if not images or shutil.which(QEMU) is None:
        pytest.skip(f"need {KERNELS_ROOT}/{series}/boot/vmlinuz-* and {QEMU} on PATH")
    cmd = [QEMU, "-M", "virt", "-cpu", "cortex-a15", "-m", "1024", "-nographic", "-no-reboot",
           "-kernel", str(images[0]), "-initrd", str(initrd),
           "-append", "console=ttyAMA0 panic=-1 quiet"]  # fmt: skip
    assert busybox.is_file()
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
    busybox = KERNELS_ROOT / series / "bin" / "busybox"
    console = _boot(series, build_initramfs(busybox, kos, tmp_path / "initrd.gz"))
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
