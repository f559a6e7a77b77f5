"""The verifier on real run bundles (tests/data/runs/<target>/, written by `invoke run` on QEMU), and on
copies with one value changed: each change must fail exactly the check that covers it."""

from __future__ import annotations

import re
import shutil
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from analysis.verify.check import Check
from analysis.verify.verify import verify_bundle

RUNS = Path(__file__).resolve().parent.parent / "data" / "runs"
TARGETS = ("arm-5.10", "arm-6.1", "arm-6.12")
MODEL_FAMILIES = ("layout", "vmalloc", "ioremap", "kmap", "alloc", "footprint")


def statuses(root: Path) -> dict[str, str]:
    return {check.id: check.status for check in verify_bundle(root).checks}


def bad(checks: list[Check]) -> list[str]:
    return [f"{c.id}: expected {c.expected!r} got {c.actual!r}" for c in checks if c.status in ("fail", "error")]


@pytest.mark.parametrize("target", TARGETS)
def test_a_real_run_passes_every_check(target: str) -> None:
    checks = verify_bundle(RUNS / target).checks
    assert bad(checks) == []
    passed = Counter(c.family for c in checks if c.status == "pass")
    for family in MODEL_FAMILIES:
        assert passed[family] > 0, family
    assert sum(passed[f] for f in MODEL_FAMILIES) >= 40


def edit_line(path: Path, pattern: str, replace: Callable[[re.Match[str]], str]) -> None:
    text = path.read_text()
    changed, count = re.subn(pattern, replace, text, count=1, flags=re.M)
    assert count == 1, f"{pattern!r} not in {path}"
    path.write_text(changed)


def plus(delta: int) -> Callable[[re.Match[str]], str]:
    """Add ``delta`` to the number in group 2, keeping its base (0x... or decimal)."""
    def change(match: re.Match[str]) -> str:
        value = match.group(2)
        number = int(value, 0) + delta
        return match.group(1) + (f"0x{number:08x}" if value.startswith("0x") else str(number))
    return change


# (bundle file, line pattern with the number in group 2, change, the check that must fail)
MUTATIONS = [
    ("ktap/kit_vmalloc.ktap", r"^(# one_page\.addr=)(\S+)", plus(0x1000), "kit_vmalloc.one_page.address"),
    ("ktap/kit_vmalloc.ktap", r"^(# big\.highmem_pages=)(\S+)", plus(-1), "kit_vmalloc.big.highmem_pages"),
    ("ktap/kit_alloc.ktap", r"^(# vmap_fill\.small_count=)(\S+)", plus(1), "kit_alloc.vmap_fill.small_count"),
    ("ktap/kit_alloc.ktap", r"^(# vmalloc_loop\.5\.addr=)(\S+)", plus(0x1000), "kit_alloc.vmalloc_loop.5.address"),
    ("ktap/kit_kmap.ktap", r"^(# kmap_highmem\.2\.addr=)(\S+)", plus(0x1000), "kit_kmap.kmap_highmem.2.addr"),
    ("ktap/kit_kmap.ktap", r"^(# kmap_atomic\.addr=)(\S+)", plus(-0x1000), "kit_kmap.kmap_atomic.addr"),
    ("ktap/kit_ioremap.ktap", r"^(# rtc\.periph_id=)(\S+)", plus(1), "kit_ioremap.rtc.periph_id"),
    ("ktap/kit_ioremap.ktap", r"^(# large\.cookie=)(\S+)", plus(0x1000), "kit_ioremap.large.address"),
    ("ktap/kit_vmalloc.ktap", r"^(# layout\.VMALLOC_START=)(\S+)", plus(0x800000), "layout.VMALLOC_START"),
    ("modules/kit_ioremap.txt", r"^(kit_ioremap )(\d+)", plus(4096), "kit_ioremap.proc_modules.size"),
    ("sections/kit_kmap.txt", r"^(\.bss )(\S+)", plus(8), "kit_kmap.sections"),
    ("meminfo.txt", r"^(HighTotal:\s+)(\d+)", plus(-4), "meminfo.HighTotal_vs_kernel"),
    ("ktap/kit_vmalloc_exec.ktap", r"^(# symbols\.init_fn=)(\S+)", plus(4), "kit_vmalloc_exec.symbols.init_fn"),
    ("ktap/kit_vmalloc_exec.ktap", r"^(# regions\.core\.size=)(\S+)", plus(4096), "kit_vmalloc_exec.regions.core.size"),
]


@pytest.mark.parametrize(("relative", "pattern", "change", "check_id"), MUTATIONS,
                         ids=[m[3] for m in MUTATIONS])
def test_one_changed_value_fails_its_check(tmp_path: Path, relative: str, pattern: str,
                                           change: Callable[[re.Match[str]], str], check_id: str) -> None:
    original = statuses(RUNS / "arm-6.1")
    assert original[check_id] == "pass"
    copy = tmp_path / "bundle"
    shutil.copytree(RUNS / "arm-6.1", copy)
    edit_line(copy / relative, pattern, change)
    assert statuses(copy)[check_id] == "fail"


def test_a_leaked_area_after_rmmod_is_named(tmp_path: Path) -> None:
    copy = tmp_path / "bundle"
    shutil.copytree(RUNS / "arm-6.1", copy)
    after = copy / "vmallocinfo" / "kit_kmap.after.txt"
    lines = after.read_text().splitlines(keepends=True)
    lines.insert(-1, "0xfe000000-0xfe002000    8192 kit_leaky+0x10/0x40 [kit_kmap] pages=1 vmalloc\n")
    after.write_text("".join(sorted(lines, key=lambda line: (not line.startswith("0x"), line))))
    check = next(c for c in verify_bundle(copy).checks if c.id == "kit_kmap.no_leak")
    assert check.status == "fail"
    assert check.actual == ["0xfe000000-0xfe002000 kit_leaky+0x10/0x40"]


def test_a_wrong_ram_size_in_the_facts_fails_the_layout(tmp_path: Path) -> None:
    """The model takes the RAM from target.toml: claim 768 MiB for a 1 GiB guest and high_memory moves."""
    copy = tmp_path / "bundle"
    shutil.copytree(RUNS / "arm-6.1", copy)
    edit_line(copy / "target.toml", r"^(mem_mib = )(\d+)", plus(-256))
    result = statuses(copy)
    assert result["layout.high_memory"] == "pass"  # 768 MiB still fills lowmem up to 0xf0000000...
    assert result["layout.totalhigh_pages"] == "fail"  # ...but leaves no highmem, unlike the kernel
