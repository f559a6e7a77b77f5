"""Boot-log inference for bundles without target.toml (analysis/verify/infer.py), on real captures."""

from __future__ import annotations

import shutil
from pathlib import Path

from analysis.parsers import parse_boot_log
from analysis.verify.bundle import load_bundle
from analysis.verify.consistency import consistency_checks
from analysis.verify.infer import arch_from_boot, banks_from_node_ranges, infer_context, refined_version

DATA = Path(__file__).parent.parent / "data"


def test_debian_banner_gives_the_stable_version_not_the_gcc_version() -> None:
    """5.10's banner says "(gcc-10 (Debian 10.2.1-6) ...) #1 SMP Debian 5.10.223-1": the first
    "Debian x.y.z" is gcc's; the kernel's is the one in the same series."""
    text = (DATA / "live" / "5.10" / "dmesg.txt").read_text()
    boot = parse_boot_log(text)
    assert refined_version(boot, (5, 10, 0)) == (5, 10, 223)
    assert refined_version(boot, (5, 10, 7)) == (5, 10, 7)   # a stated patch level is kept


def test_qemu_console_gives_arm_and_the_ram_bank() -> None:
    text = (DATA / "live" / "6.1" / "dmesg.txt").read_text()
    assert arch_from_boot(parse_boot_log(text), text) == "arm"
    assert banks_from_node_ranges(text) == ((0x40000000, 1 << 30),)


def test_x86_32_layout_block_is_not_taken_for_arm() -> None:
    """x86-32 prints pkmap too (above vmalloc, pgtable_32_areas.h); ARM prints it below PAGE_OFFSET."""
    text = (DATA / "bundles" / "x86-32-3.8.0" / "boot.log").read_text()
    assert arch_from_boot(parse_boot_log(text), text) == "x86"


def test_layout_block_gives_ram_and_config_with_notes() -> None:
    """granite2-like inference on the Allwinner 3.4 log: 256 MB lowmem, "0K highmem", no pkmap line."""
    bundle = load_bundle(DATA / "bundles" / "allwinner-3.4.39")
    ctx = infer_context(bundle)
    assert (ctx.arch, ctx.version, ctx.banks) == ("arm", (3, 4, 39), ((0, 256 << 20),))
    assert ctx.config == {"CONFIG_PAGE_OFFSET": "0xc0000000", "CONFIG_HIGHMEM": "n"}
    assert ctx.layout is not None and any("PAGE_OFFSET" in note for note in ctx.notes)


def test_zeroed_addresses_skip_address_checks(tmp_path: Path) -> None:
    """kptr_restrict=2: every address 0; guard still checked (sizes are real), the rest skipped."""
    shutil.copy(DATA / "qemu-virt-6.1" / "vmallocinfo.zeroed.txt", tmp_path / "vmallocinfo.txt")
    shutil.copy(DATA / "bundles" / "hashed-6.1" / "target.toml", tmp_path / "target.toml")
    bundle = load_bundle(tmp_path)
    checks = {check.id: check for check in consistency_checks(bundle, infer_context(bundle))}
    assert checks["vmallocinfo.snapshot.guard"].status == "pass"
    assert checks["vmallocinfo.snapshot.overlap"].status == "skip"
    assert "zeroed" in checks["vmallocinfo.snapshot.overlap"].detail
