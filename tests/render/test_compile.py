"""Real compile of every rendered module against each target's Debian armhf kernel, with no warnings.

The trees are the targets' Debian kernels from the kit's cache (``invoke setup --all`` fetches them;
tests/conftest.py). make runs directly here, not through kbuild.make, because the test reads its output.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from elftools.elf.elffile import ELFFile

from kbuild.render import default_specs, render_module
from tests.conftest import SERIES, debian_kernel, target_toolchain


def _modinfo(ko: Path) -> dict[str, str]:
    with ko.open("rb") as f:
        section = ELFFile(f).get_section_by_name(".modinfo")
        assert section is not None, f"{ko} has no .modinfo"
        data: bytes = section.data()
    pairs = (entry.decode().split("=", 1) for entry in data.split(b"\0") if b"=" in entry)
    return {key: value for key, value in pairs}


@pytest.mark.parametrize("series", SERIES)
def test_every_module_compiles_without_warnings(series: str, tmp_path: Path) -> None:
    tree = debian_kernel(series)
    toolchain = target_toolchain(series)
    for spec in default_specs():
        module_dir = render_module(spec, tmp_path)
        cmd = ["make", "-C", str(tree.kdir), f"M={module_dir}", *toolchain.make_variables(), "modules"]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False)
        output = done.stdout + done.stderr
        assert done.returncode == 0, f"{spec.name} on {series} failed:\n{output}"
        assert "warning" not in output.lower(), f"{spec.name} on {series} warned:\n{output}"
        info = _modinfo(module_dir / f"{spec.name}.ko")
        assert info["license"] == "GPL"
        assert info["name"] == spec.name
        assert info["vermagic"].split()[0] == tree.release
