"""Version-free checks of a printed layout block (issue 9 item 1): a capture without its `Linux version`
line still gets every rule that holds in all eras, and a wrong number still fails."""

from __future__ import annotations

import shutil
from pathlib import Path

from analysis.model.banner import stated_inputs
from analysis.verify.verify import verify_bundle

BUNDLES = Path(__file__).parent.parent / "data" / "bundles"
VERSION_FREE = ("no_overlap", "order", "vmalloc_start", "page_offset", "modules_end", "modules_start",
                "vmalloc_end", "size.vmalloc", "size.lowmem", "size.modules")


def without_version(name: str, tmp_path: Path) -> Path:
    root = shutil.copytree(BUNDLES / name, tmp_path / name)
    text = (root / "boot.log").read_text()
    (root / "boot.log").write_text("".join(line for line in text.splitlines(keepends=True)
                                           if "Linux version" not in line))
    (root / "target.toml").unlink(missing_ok=True)
    return root


def statuses(root: Path, **stated: str) -> dict[str, str]:
    return {c.id: c.status for c in verify_bundle(root, stated_inputs(**stated) if stated else None).checks}


def test_a_block_without_its_version_line_is_checked_by_the_rules_of_every_era(tmp_path: Path) -> None:
    for name in ("allwinner-3.4.39", "vexpress-4.9.240", "granite2-3.18", "fullhan-4.9.129"):
        checks = statuses(without_version(name, tmp_path))
        assert checks["layout.block.vmalloc"] == "skip"  # the model needs the version
        assert [checks[f"layout.invariant.{rule}"] for rule in VERSION_FREE] == ["pass"] * len(VERSION_FREE), name


def test_vmalloctotal_is_checked_against_the_printed_vmalloc_line_without_a_model(tmp_path: Path) -> None:
    root = without_version("fullhan-4.9.129", tmp_path)  # its meminfo: VmallocTotal 999424 kB, vmalloc 976 MB
    assert statuses(root)["meminfo.VmallocTotal"] == "pass"
    meminfo = root / "meminfo.txt"
    meminfo.write_text(meminfo.read_text().replace("VmallocTotal:     999424 kB", "VmallocTotal:     991232 kB"))
    assert statuses(root)["meminfo.VmallocTotal"] == "fail"


def test_vmallocinfo_areas_are_placed_against_the_printed_block_without_a_model(tmp_path: Path) -> None:
    root = without_version("fullhan-4.9.129", tmp_path)
    assert statuses(root)["vmallocinfo.snapshot.region"] == "pass"
    info = root / "vmallocinfo.txt"  # an area below the modules line, in no region the block prints
    info.write_text(info.read_text() + "0x30000000-0x30002000    8192 kit_outside+0x0/0x4 pages=1 vmalloc\n")
    assert statuses(root)["vmallocinfo.snapshot.region"] == "fail"


def test_what_the_engineer_states_brings_the_model_back(tmp_path: Path) -> None:
    root = without_version("allwinner-3.4.39", tmp_path)
    assert statuses(root, kernel="3.4")["layout.block.vmalloc"] == "pass"
    # a wrong statement is not taken on trust: 4.9's VMALLOC_END is 0xff800000, the block says 0xff000000
    assert statuses(root, kernel="4.9")["layout.block.vmalloc"] == "fail"


def test_a_thumb2_kernels_modules_area_is_accepted_and_named(tmp_path: Path) -> None:
    """A Thumb-2 kernel (4.x) puts MODULES_VADDR at PAGE_OFFSET - 8 MiB: the 4.9 vexpress capture's modules
    line moved there passes the model (THUMB2_KERNEL inferred from the line, and said) and the rule."""
    root = shutil.copytree(BUNDLES / "vexpress-4.9.240", tmp_path / "thumb2")
    log = root / "boot.log"
    log.write_text(log.read_text().replace("modules : 0x7f000000 - 0x80000000   (  16 MB)",
                                           "modules : 0x7f800000 - 0x80000000   (   8 MB)"))
    verdict = verify_bundle(root)
    checks = {c.id: c for c in verdict.checks}
    assert checks["layout.block.modules"].status == "pass"
    assert "CONFIG_THUMB2_KERNEL" in checks["layout.block.modules"].detail
    assert checks["layout.invariant.modules_start"].status == "pass"
    assert "THUMB2_KERNEL" in str(checks["layout.invariant.modules_start"].actual)
    log.write_text(log.read_text().replace("modules : 0x7f800000", "modules : 0x7f400000"))  # neither choice
    assert {c.id for c in verify_bundle(root).checks if c.status == "fail"} >= {"layout.invariant.modules_start"}
