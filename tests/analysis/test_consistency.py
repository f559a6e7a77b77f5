"""Consistency checks must fail exactly where a number is wrong, name cross-boot modules, and reject garbage.

Mutations start from bundles that pass (tests/data/bundles/, tests/data/live/), change one number in a
copy, and assert the set of failing check ids is exactly the one covering that number.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from analysis.verify.bundle import load_bundle
from analysis.verify.check import Check
from analysis.verify.consistency import consistency_checks
from analysis.verify.infer import infer_context
from analysis.verify.report import format_table, summary_line, worst_first
from kit.errors import ParseError, UserError

DATA = Path(__file__).parent.parent / "data"
BUNDLES = DATA / "bundles"


def checks_of(path: Path) -> list[Check]:
    bundle = load_bundle(path)
    return consistency_checks(bundle, infer_context(bundle))


def failed(path: Path) -> dict[str, Check]:
    return {check.id: check for check in checks_of(path) if check.status in ("fail", "error")}


def copy_bundle(source: Path, tmp_path: Path) -> Path:
    target = tmp_path / source.name
    shutil.copytree(source, target)
    return target


def live_bundle(version: str, tmp_path: Path) -> Path:
    """A copy of tests/data/live/<version> the bundle loader accepts. The live captures predate the guest
    runner contract: status.txt starts with '#' provenance lines (bundle._read_status does not skip them)
    and dmesg.txt has no 'kit: begin M' markers (KTAP extraction refuses it), so the copy strips the
    status header and keeps the console as boot.log. No value is changed."""
    target = copy_bundle(DATA / "live" / version, tmp_path)
    status = target / "status.txt"
    status.write_text("".join(line for line in status.read_text().splitlines(keepends=True)
                              if not line.startswith("#")))
    (target / "dmesg.txt").rename(target / "boot.log")
    return target


def replace_once(path: Path, old: str, new: str) -> int:
    """Replace one occurrence; return its 1-based line number in the file (headers included)."""
    text = path.read_text()
    assert text.count(old) == 1, f"{old!r} must occur once in {path}"
    path.write_text(text.replace(old, new))
    return text[: text.index(old)].count("\n") + 1


# --- real run bundles (QEMU 5.10 / 6.1 / 6.12) ------------------------------------------------------

@pytest.mark.parametrize("version", ["5.10", "6.1", "6.12"])
def test_live_run_bundles_are_consistent(version: str, tmp_path: Path) -> None:
    checks = {check.id: check for check in checks_of(live_bundle(version, tmp_path))}
    assert [c for c in checks.values() if c.status in ("fail", "error")] == []
    # five modules, before and during each: 10 snapshots, every invariant checked, none skipped
    snapshot_checks = [c for c in checks.values() if c.family == "vmallocinfo"]
    assert len(snapshot_checks) == 10 * 6 and all(c.status == "pass" for c in snapshot_checks)
    for check_id in ("meminfo.VmallocTotal", "meminfo.LowTotal+HighTotal", "meminfo.HighTotal",
                     "meminfo.VmallocUsed", "modules.kh5alloc.kh5foot.vmalloc_line",
                     "modules.kh5alloc.kh5alloc.vmalloc_line", "modules.kh5alloc.region"):
        assert checks[check_id].status == "pass", checks[check_id]
    # 1 GiB at 0x40000000 on the default split: 240 MiB of vmalloc space (kernel-model.md §1.5)
    assert checks["meminfo.VmallocTotal"].expected == "245760 kB"


def test_live_5_10_module_lines_carry_a_guard_page(tmp_path: Path) -> None:
    """kh5foot: Live 24576 (6 pages) -> vmallocinfo 0xbf000000-0xbf007000 28672 pages=6 (read by eye)."""
    check = {c.id: c for c in checks_of(live_bundle("5.10", tmp_path))}["modules.kh5foot.kh5foot.vmalloc_line"]
    assert (check.status, check.expected) == ("pass", "size 28672")


def test_changed_module_size_fails_only_that_module(tmp_path: Path) -> None:
    bundle = live_bundle("6.1", tmp_path)
    replace_once(bundle / "modules" / "kh5alloc.txt", "kh5alloc 16384", "kh5alloc 20480")
    bad = failed(bundle)
    assert list(bad) == ["modules.kh5alloc.kh5alloc.vmalloc_line"]
    assert "expected 24576 pages=5" in bad["modules.kh5alloc.kh5alloc.vmalloc_line"].detail


def test_changed_vmalloc_used_fails_only_meminfo(tmp_path: Path) -> None:
    bundle = live_bundle("6.1", tmp_path)
    replace_once(bundle / "meminfo.txt", "VmallocUsed:         716 kB", "VmallocUsed:         720 kB")
    bad = failed(bundle)
    assert list(bad) == ["meminfo.VmallocUsed"]
    assert (bad["meminfo.VmallocUsed"].expected, bad["meminfo.VmallocUsed"].actual) == ("716 kB", "720 kB")


def test_changed_low_total_fails_only_the_sum(tmp_path: Path) -> None:
    bundle = live_bundle("6.1", tmp_path)
    replace_once(bundle / "meminfo.txt", "LowTotal:         757844 kB", "LowTotal:         757848 kB")
    assert list(failed(bundle)) == ["meminfo.LowTotal+HighTotal"]


# --- board bundles ----------------------------------------------------------------------------------

def test_changed_pages_fails_only_the_guard_check_naming_the_line(tmp_path: Path) -> None:
    bundle = copy_bundle(BUNDLES / "fullhan-4.9.129", tmp_path)
    line = replace_once(bundle / "vmallocinfo.txt", "274432 jffs2_zlib_init+0x14/0x74 pages=66",
                        "274432 jffs2_zlib_init+0x14/0x74 pages=65")
    bad = failed(bundle)
    assert list(bad) == ["vmallocinfo.snapshot.guard"]
    assert f"vmallocinfo.txt line {line}:" in bad["vmallocinfo.snapshot.guard"].detail


def test_changed_size_fails_only_the_arithmetic_check(tmp_path: Path) -> None:
    bundle = copy_bundle(BUNDLES / "fullhan-4.9.129", tmp_path)
    line = replace_once(bundle / "vmallocinfo.txt", "0xc2848000-0xc284d000   20480", "0xc2848000-0xc284d000   24576")
    bad = failed(bundle)
    assert list(bad) == ["vmallocinfo.snapshot.arithmetic"]
    assert f"line {line}:" in bad["vmallocinfo.snapshot.arithmetic"].detail


def test_misaligned_ioremap_fails_only_the_alignment_check(tmp_path: Path) -> None:
    """A 1 MiB ioremap (+guard) must be 1 MiB aligned (get_count_order_long, capped at 2^19 or 2^24)."""
    bundle = copy_bundle(BUNDLES / "fullhan-4.9.129", tmp_path)
    replace_once(bundle / "vmallocinfo.txt", "0xc3100000-0xc3201000 1052672", "0xc30ff000-0xc3200000 1052672")
    assert list(failed(bundle)) == ["vmallocinfo.snapshot.ioremap_align"]


def test_overlapping_lines_fail_only_the_overlap_check(tmp_path: Path) -> None:
    """Move a 2-page ioremap down by one page: it keeps its size and order but overlaps its predecessor."""
    bundle = copy_bundle(BUNDLES / "fullhan-4.9.129", tmp_path)
    replace_once(bundle / "vmallocinfo.txt", "0xc30a5000-0xc30a7000    8192 dma_alloc",
                 "0xc30a4000-0xc30a6000    8192 dma_alloc")
    assert list(failed(bundle)) == ["vmallocinfo.snapshot.overlap"]


def test_line_outside_every_area_fails_only_the_region_check(tmp_path: Path) -> None:
    """mem=36M: VMALLOC_START is 0xc2800000 (layout block); a line at 0xc2400000 sits in the guard gap."""
    bundle = copy_bundle(BUNDLES / "fullhan-4.9.129", tmp_path)
    replace_once(bundle / "vmallocinfo.txt", "0xc2804000-0xc2845000  266240 atomic",
                 "0xc2400000-0xc2441000  266240 atomic")
    assert list(failed(bundle)) == ["vmallocinfo.snapshot.region"]


def test_changed_layout_line_fails_only_that_region(tmp_path: Path) -> None:
    bundle = copy_bundle(BUNDLES / "allwinner-3.4.39", tmp_path)
    replace_once(bundle / "boot.log", "vmalloc : 0xd0800000", "vmalloc : 0xd0000000")
    # the model's region; and with no version needed: its printed size, VMALLOC_START = lowmem end + 8M rounded
    assert sorted(failed(bundle)) == ["layout.block.vmalloc", "layout.invariant.size.vmalloc",
                                      "layout.invariant.vmalloc_start"]


def test_grown_module_overlaps_its_neighbour(tmp_path: Path) -> None:
    """3.18 stepper_api_b0 at 0xbf165000: 29000 bytes -> 8 pages + guard end at 0xbf16e000, past dros at
    0xbf16d000. Sizes are unrounded in 3.18, so only the overlap check can see it."""
    bundle = copy_bundle(BUNDLES / "granite2-3.18", tmp_path)
    replace_once(bundle / "modules.txt", "stepper_api_b0 12711", "stepper_api_b0 29000")
    bad = failed(bundle)
    assert list(bad) == ["modules.snapshot.overlap"]
    assert bad["modules.snapshot.overlap"].actual == ["dros"]


def test_module_outside_the_module_area_fails_region(tmp_path: Path) -> None:
    bundle = copy_bundle(BUNDLES / "rpi-4.14", tmp_path)
    replace_once(bundle / "modules.txt", "Live 0x7f57f000", "Live 0x8057f000")
    assert list(failed(bundle)) == ["modules.snapshot.region"]


# --- cross-capture ----------------------------------------------------------------------------------

def crosscapture(name: str) -> Check:
    return {check.id: check for check in checks_of(BUNDLES / name)}["crosscapture.modules_vs_vmallocinfo"]


def test_modules_and_vmallocinfo_from_different_boots_name_every_module() -> None:
    """live/6.1 modules (kh5foot at 0xbf000000 is 24576 bytes) vs the kit_h3demo boot's vmallocinfo (a
    20480-byte line at 0xbf000000, nothing else in the module area): all five disagree, in ONE check."""
    bundle = BUNDLES / "crossboot-6.1"
    check = crosscapture("crossboot-6.1")
    assert check.status == "fail"
    assert isinstance(check.actual, list)
    assert sorted(check.actual) == ["crc7", "kh5alloc", "kh5foot", "nls_cp437", "ts_kmp"]
    assert "not from the same boot" in check.detail
    assert [c.id for c in checks_of(bundle) if c.status == "fail"] == [check.id]


def test_modules_read_two_loads_later_name_exactly_the_new_modules() -> None:
    """Same boot, vmallocinfo read while crc7 was the last module: ts_kmp has no line of its size at
    0xbf011000 (crc7's init area is there) and kh5alloc none at all."""
    check = crosscapture("crossmoment-6.1")
    assert (check.status, check.actual) == ("fail", ["kh5alloc", "ts_kmp"])


def test_modules_and_vmallocinfo_of_one_moment_agree() -> None:
    check = crosscapture("samemoment-6.1")
    assert check.status == "pass" and "all 5 Live modules" in check.detail


# --- garbage ----------------------------------------------------------------------------------------

@pytest.mark.parametrize(("name", "text"), [
    ("vmallocinfo.txt", "this is not vmallocinfo\n"),
    ("modules.txt", "ext4 lots of bytes Live\n"),
    ("meminfo.txt", "MemTotal: many kB\n"),
    ("target.toml", "name = [unclosed\n"),
])
def test_garbage_files_raise_parse_error(name: str, text: str, tmp_path: Path) -> None:
    (tmp_path / name).write_text(text)
    with pytest.raises(ParseError):
        checks_of(tmp_path)


def test_empty_directory_and_missing_path_raise_user_error(tmp_path: Path) -> None:
    with pytest.raises(UserError):
        checks_of(tmp_path)
    with pytest.raises(UserError):
        checks_of(tmp_path / "absent")


# --- report -----------------------------------------------------------------------------------------

def test_report_table_and_summary() -> None:
    checks = checks_of(BUNDLES / "technicolor-4.1")
    table = format_table(worst_first(checks))
    lines = table.splitlines()
    assert lines[0].split() == ["status", "id", "expected", "actual", "detail"]
    assert len(lines) == 1 + len(checks)
    assert lines[1].startswith("FAIL") and "layout.block.modules" in lines[1] and "0xbec00000-0xbfe00000" in lines[1]
    # the vendor's modules area fails the model and the version-free MODULES_VADDR rule
    assert summary_line(checks) == f"{len(checks)} checks: {len(checks) - 2} pass, 2 fail, 0 skip, 0 error"
