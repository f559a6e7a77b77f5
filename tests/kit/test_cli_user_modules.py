"""invoke run --module BAD: exit 2 with one line naming the path as given, and no bundle (issue 12 row 5)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import debian_kernel, module_of_another_kernel

REPO = Path(__file__).resolve().parent.parent.parent


@pytest.mark.parametrize(("module", "says"), [
    ("no/such.ko", "--module no/such.ko: no such file"),
    ("tests/data", "--module tests/data: a directory without `obj-m += <name>.o`"),
    ("BROKEN-TREE", "module broken does not compile against {release}: {path}/broken.c:1:14: error: expected"),
    ("README.md", "--module README.md: a text file"),
    ("/bin/true", "--module /bin/true: x86-64 ELF, the target arm-6.1 is 32-bit little-endian ARM"),
    ("OTHER-KERNEL", "--module {path}: vermagic {claims} vs kernel 6.1.0-"),
])
def test_a_bad_module_exits_2_before_any_bundle(tmp_path: Path, module: str, says: str) -> None:
    if module == "OTHER-KERNEL":  # a real module of another 6.1 kernel than the cached one
        other, claims = module_of_another_kernel(tmp_path)
        module, says = str(other), says.format(path=other, claims=claims)
    if module == "BROKEN-TREE":  # a source tree with a compile error: the message names the user's file
        (tmp_path / "Kbuild").write_text("obj-m += broken.o\n")
        (tmp_path / "broken.c").write_text("int broken = ;\n")
        module, says = str(tmp_path), says.format(release=debian_kernel("6.1").release, path=tmp_path)
    results = REPO / "results"
    before = sorted(results.rglob("*")) if results.exists() else []
    latest = (results / "latest").resolve() if (results / "latest").exists() else None
    done = subprocess.run([sys.executable, "-m", "invoke", "run", "--module", module], cwd=REPO,
                          capture_output=True, text=True, check=False, timeout=300)
    assert done.returncode == 2, done.stderr
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith(f"error: {says}"), line
    assert "ship-user" not in line and "incoming" not in line
    assert (sorted(results.rglob("*")) if results.exists() else []) == before  # no new bundle
    assert ((results / "latest").resolve() if (results / "latest").exists() else None) == latest
