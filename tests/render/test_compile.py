"""Real compile of every rendered module against each Debian armhf kernel tree, with no warnings.

The trees come from /tmp/kernels/<series> for now; they will come from
kbuild.kernels.fetch_debian_kernel once the fixture is rewired.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from elftools.elf.elffile import ELFFile

from kbuild.render import default_specs, render_module

KERNELS_ROOT = Path("/tmp/kernels")
SERIES = ["5.10", "6.1", "6.12"]
CROSS_COMPILE = "arm-linux-gnueabihf-"
CC = "arm-linux-gnueabihf-gcc-12"


def _headers_dir(series: str) -> Path:
    found = sorted((KERNELS_ROOT / series / "usr" / "src").glob("linux-headers-*-armmp"))
    if not found:
        pytest.skip(
            f"no kernel tree: {KERNELS_ROOT}/{series}/usr/src/linux-headers-*-armmp is missing "
            "(unpacked Debian linux-headers-<release>-armmp + -common + linux-kbuild for armhf)"
        )
    if shutil.which(CC) is None:
        pytest.skip(f"cross compiler {CC} not on PATH (apt package gcc-12-arm-linux-gnueabihf)")
    return found[0]


def _modinfo(ko: Path) -> dict[str, str]:
    with ko.open("rb") as f:
        section = ELFFile(f).get_section_by_name(".modinfo")
        assert section is not None, f"{ko} has no .modinfo"
        data: bytes = section.data()
    pairs = (entry.decode().split("=", 1) for entry in data.split(b"\0") if b"=" in entry)
    return {key: value for key, value in pairs}


@pytest.mark.parametrize("series", SERIES)
def test_every_module_compiles_without_warnings(series: str, tmp_path: Path) -> None:
    kdir = _headers_dir(series)
    release = kdir.name.removeprefix("linux-headers-")
    for spec in default_specs():
        module_dir = render_module(spec, tmp_path)
        cmd = ["make", "-C", str(kdir), f"M={module_dir}", "ARCH=arm", f"CROSS_COMPILE={CROSS_COMPILE}",
               f"CC={CC}", "modules"]  # fmt: skip
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False)
        output = done.stdout + done.stderr
        assert done.returncode == 0, f"{spec.name} on {series} failed:\n{output}"
        assert "warning" not in output.lower(), f"{spec.name} on {series} warned:\n{output}"
        info = _modinfo(module_dir / f"{spec.name}.ko")
        assert info["license"] == "GPL"
        assert info["name"] == spec.name
        assert info["vermagic"].split()[0] == release
