"""Every shared capture, split into a bundle (tests/data/bundles/), through the consistency checks.

Each bundle file keeps the capture's ``#`` provenance header. Expected values below were read by eye
from the capture files (their layout blocks and headers), never from the checker's output. Each test
also names checks that must PASS, so a bundle cannot pass by skipping everything.

Not a bundle: ``test_vmalloc-summary-lines-real-runs.txt`` holds lib/test_vmalloc.c result lines, not
/proc files or a boot log; it has nothing these checks read.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from analysis.verify.bundle import load_bundle
from analysis.verify.check import Check
from analysis.verify.consistency import consistency_checks
from analysis.verify.infer import infer_context

BUNDLES = Path(__file__).parent.parent / "data" / "bundles"

SNAPSHOT_INVARIANTS = ("guard", "arithmetic", "order", "overlap", "region", "ioremap_align")
ARM_BLOCK = tuple(f"layout.block.{region}" for region in ("vector", "fixmap", "vmalloc", "lowmem", "pkmap", "modules"))


def run(name: str) -> dict[str, Check]:
    bundle = load_bundle(BUNDLES / name)
    checks = consistency_checks(bundle, infer_context(bundle))
    ids = [check.id for check in checks]
    assert len(ids) == len(set(ids)), f"duplicate check ids in {name}"
    return {check.id: check for check in checks}


def failures(checks: dict[str, Check]) -> list[str]:
    bad = [check for check in checks.values() if check.status in ("fail", "error")]
    return [f"{c.id}: {c.expected} != {c.actual} ({c.detail})" for c in bad]


def assert_passed(checks: dict[str, Check], *ids: str) -> None:
    for check_id in ids:
        assert check_id in checks, f"{check_id} missing"
        assert checks[check_id].status == "pass", checks[check_id]


# (bundle, checks that must pass, {check id: expected span read from the capture's layout block})
CONSISTENT = [
    ("allwinner-3.4.39", ARM_BLOCK, {"layout.block.vmalloc": "0xd0800000-0xff000000",
                                      "layout.block.fixmap": "0xfff00000-0xfffe0000"}),
    ("vexpress-4.9.240", ARM_BLOCK, {"layout.block.vmalloc": "0xa0800000-0xff800000",
                                      "layout.block.modules": "0x7f000000-0x80000000"}),
    ("florentrevest-4.x", ARM_BLOCK, {"layout.block.vmalloc": "0xe0000000-0xff800000"}),
    ("kasan-5.4.24", ARM_BLOCK[1:], {"layout.block.vmalloc": "0xbf800000-0xff800000",
                                      "layout.block.pkmap": "0x7fe00000-0x80000000"}),
    ("granite2-3.18", ARM_BLOCK, {"layout.block.vmalloc": "0xf0000000-0xff000000",
                                   "layout.block.lowmem": "0xc0000000-0xef800000"}),
    ("x86-32-2.6.32", ("layout.block.vmalloc", "layout.block.lowmem"), {"layout.block.vmalloc": "0xf7ffe000-0xff7fe000",
                                                            "layout.block.lowmem": "0xc0000000-0xf77fe000"}),
    ("x86-32-3.8.0", ("layout.block.vmalloc", "layout.block.lowmem"), {"layout.block.vmalloc": "0xdfbfe000-0xffbfe000",
                                                           "layout.block.lowmem": "0xc0000000-0xdf3fe000"}),
]


@pytest.mark.parametrize(("name", "must_pass", "spans"), CONSISTENT, ids=[case[0] for case in CONSISTENT])
def test_layout_block_captures_are_consistent(name: str, must_pass: tuple[str, ...], spans: dict[str, str]) -> None:
    checks = run(name)
    assert failures(checks) == []
    assert_passed(checks, *must_pass)
    for check_id, span in spans.items():
        assert checks[check_id].expected == span and checks[check_id].actual == span


def test_kasan_vendor_block_without_vector_line_is_skipped_not_passed() -> None:
    """The 5.4 vendor tree prints no vector line: that region is not checked, and says so."""
    vector = run("kasan-5.4.24")["layout.block.vector"]
    assert vector.status == "skip" and "not printed" in vector.detail


def test_no_highmem_board_expects_no_pkmap_line() -> None:
    """Allwinner 3.4 has no HIGHMEM: the model predicts no pkmap region and the block prints none."""
    pkmap = run("allwinner-3.4.39")["layout.block.pkmap"]
    assert (pkmap.status, pkmap.expected, pkmap.actual) == ("pass", "not printed", "not printed")


def test_technicolor_vendor_modules_area_fails_only_that_region() -> None:
    """Genuinely inconsistent with upstream: the Broadcom BSP moved MODULES_VADDR down to 0xbec00000
    (18 MB, capture header), upstream asm/memory.h has PAGE_OFFSET - 16M (- 8M with Thumb-2). Only the
    modules region fails: against the model, and the version-free MODULES_VADDR rule."""
    checks = run("technicolor-4.1")
    modules, start = checks["layout.block.modules"], checks["layout.invariant.modules_start"]
    assert [c.id for c in checks.values() if c.status in ("fail", "error")] == [modules.id, start.id]
    assert (modules.expected, modules.actual) == ("0xbf000000-0xbfe00000", "0xbec00000-0xbfe00000")
    assert start.actual == "0xbec00000" and "0xbf000000 (PAGE_OFFSET - 16 MiB)" in str(start.expected)
    assert_passed(checks, *(check_id for check_id in ARM_BLOCK if check_id != modules.id))


def test_fullhan_boot_meminfo_and_vmallocinfo_agree() -> None:
    """4.9.129, mem=36M: VmallocTotal 999424 kB (header), VmallocUsed hard-coded 0 in 4.4..5.2, 97 lines
    all guarded, ascending, disjoint, in vmalloc/modules/static areas; ioremaps aligned (UP kernel)."""
    checks = run("fullhan-4.9.129")
    assert failures(checks) == []
    assert_passed(checks, *ARM_BLOCK[:4], "layout.block.modules", "meminfo.VmallocTotal", "meminfo.VmallocUsed",
                  *(f"vmallocinfo.snapshot.{name}" for name in SNAPSHOT_INVARIANTS))
    assert checks["meminfo.VmallocTotal"].expected == "999424 kB"
    assert checks["meminfo.VmallocUsed"].expected == "0 kB"
    assert checks["vmallocinfo.snapshot.guard"].actual == "97 lines hold"


def test_granite2_modules_fit_the_3_18_module_area() -> None:
    """3.18: unrounded sizes (e.g. galcore 161066), so size_pages depends on DEBUG_SET_MODULE_RONX (not
    stated: skipped); the 26 modules are page aligned, disjoint with their guard pages, in 0xbf000000-0xbfe00000."""
    checks = run("granite2-3.18")
    assert failures(checks) == []
    assert_passed(checks, *ARM_BLOCK, "modules.snapshot.aligned", "modules.snapshot.overlap",
                  "modules.snapshot.region")
    assert checks["modules.snapshot.size_pages"].status == "skip"
    assert "0xbf000000-0xbfe00000" in str(checks["modules.snapshot.region"].expected)


def test_rpi_modules_alone_are_checked() -> None:
    """A /proc/modules alone (4.14, VMSPLIT_2G): page-multiple sizes, aligned, disjoint, in 0x7f000000-0x80000000."""
    checks = run("rpi-4.14")
    assert failures(checks) == []
    assert_passed(checks, "modules.snapshot.size_pages", "modules.snapshot.aligned", "modules.snapshot.overlap",
                  "modules.snapshot.region")
    assert "0x7f000000-0x80000000" in str(checks["modules.snapshot.region"].expected)


def test_hashed_vmallocinfo_skips_address_checks_with_the_reason() -> None:
    """kptr_restrict=0: addresses are hashed; sizes and pages= are still real, so the guard check runs."""
    checks = run("hashed-6.1")
    assert failures(checks) == []
    assert_passed(checks, "vmallocinfo.snapshot.guard")
    for name in SNAPSHOT_INVARIANTS[1:]:
        check = checks[f"vmallocinfo.snapshot.{name}"]
        assert check.status == "skip" and "hashed" in check.detail
    assert checks["crosscapture.modules_vs_vmallocinfo"].status == "skip"
