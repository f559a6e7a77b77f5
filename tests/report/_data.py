"""Bundles shared by the report tests: real captures and real kit runs (tests/data), verified once."""

from __future__ import annotations

import functools
from pathlib import Path

from analysis.verify.verify import BundleVerdict, verify_bundle

DATA = Path(__file__).parent.parent / "data"
RUN_6_1 = DATA / "runs" / "arm-6.1"          # QEMU virt 1 GiB, kit run, five modules
RUN_5_10 = DATA / "runs" / "arm-5.10"
FULLHAN = DATA / "bundles" / "fullhan-4.9.129"  # board capture: boot.log, meminfo, one vmallocinfo
X86 = DATA / "bundles" / "x86-32-3.8.0"        # boot log only, arch not modelled
RPI = DATA / "bundles" / "rpi-4.14"            # /proc/modules and config only
HASHED = DATA / "bundles" / "hashed-6.1"       # kptr_restrict=0: hashed addresses

MiB = 1 << 20


@functools.cache
def verdict(path: Path) -> BundleVerdict:
    return verify_bundle(path)


def fullhan_snapshot_only(tmp: Path) -> Path:
    """A partial capture: only the FH8856 board's /proc/vmallocinfo (no boot log: no layout)."""
    root = tmp / "fullhan-vmallocinfo-only"
    root.mkdir()
    (root / "vmallocinfo.txt").write_text((FULLHAN / "vmallocinfo.txt").read_text())
    return root
