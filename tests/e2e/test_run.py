"""End to end: real Debian kernels in QEMU, the five families, the verdict (issue 2's "Done when").

Each test runs the whole pipeline (fetch or reuse the kernel, render, Kbuild, boot, collect, verify)
and asserts on the verdict. Results go to a temporary directory, not to the repository's results/.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from kbuild.targets import load_target
from kit.pipeline import RunOutcome
from kit.request import RunRequest
from kit.session import RunSession

pytestmark = pytest.mark.e2e

FAMILIES = ("layout", "vmalloc", "ioremap", "kmap", "alloc", "footprint")
# Checks that compare a value the kernel reported with a value the model computed (not bookkeeping).
MODEL_FAMILIES = {"layout", "vmalloc", "ioremap", "kmap", "alloc", "footprint"}


def run(tmp_path: Path, target: str, **overrides: object) -> RunOutcome:
    request = RunRequest(load_target(target), results_root=tmp_path / "results",
                         generated_root=tmp_path / "generated", **overrides)  # type: ignore[arg-type]
    return RunSession(request, lambda _line: None).run()


def verdict_json(outcome: RunOutcome) -> dict[str, object]:
    assert outcome.bundle_dir is not None
    doc: dict[str, object] = json.loads((outcome.bundle_dir / "verdict.json").read_text())
    return doc


def failing(outcome: RunOutcome) -> list[str]:
    assert outcome.verdict is not None
    return [f"{c.id}: expected {c.expected} got {c.actual} ({c.detail})" for c in outcome.verdict.checks
            if c.status in ("fail", "error")]


@pytest.mark.parametrize("target", ["arm-6.1", "arm-5.10", "arm-6.12", "arm-lpae-6.1"])
def test_default_suite_passes_with_model_backed_checks(tmp_path: Path, target: str) -> None:
    outcome = run(tmp_path, target)
    assert outcome.verdict is not None
    assert outcome.verdict.run_error is None, outcome.verdict.run_error
    assert failing(outcome) == []
    doc = verdict_json(outcome)
    assert doc["status"] == "pass"
    assert doc["target"] == target
    checks = doc["checks"]
    assert isinstance(checks, list)
    passed = Counter(c["family"] for c in checks if c["status"] == "pass")
    for family in FAMILIES:
        assert passed[family] > 0, f"no passing {family} check"
    assert sum(passed[f] for f in MODEL_FAMILIES) >= 40
    assert outcome.bundle_dir is not None
    assert (outcome.bundle_dir / "junit.xml").is_file()
    report = (outcome.bundle_dir / "report.html").read_text()  # the bring-up report, drawn from this run
    assert "<svg" in report and f"{len(checks)} checks: " in report and "= (high_memory 0x" in report
    assert any(line.startswith("largest free block ") for line in outcome.headroom), outcome.headroom
    assert (tmp_path / "results" / "latest").resolve() == outcome.bundle_dir.resolve()
    for module in ("kit_vmalloc", "kit_vmalloc_exec", "kit_ioremap", "kit_kmap", "kit_alloc"):
        assert (outcome.bundle_dir / "ktap" / f"{module}.ktap").read_text().startswith("KTAP version 1")


@pytest.mark.parametrize(("target", "mem", "append", "vmalloc_kb"), [
    # 6.1 early_vmalloc: lowmem ends at VMALLOC_END - N - 8M, the window is roundup(N, 8M)
    # (kernel-model.md §1.4): 400M -> 400 MiB, lowmem 608 MiB, highmem 672 MiB
    ("arm-6.1", 1280, "vmalloc=400M", 400 * 1024),
    # 5.10: roundup(N, 8M) - 8M: 300M -> 296 MiB
    ("arm-5.10", 1536, "vmalloc=300M", 296 * 1024),
    # RAM-limited, no highmem: 640 MiB of lowmem, the window grows to VMALLOC_END - (0xe8000000 + 8M)
    ("arm-6.12", 640, "", (0xFF800000 - 0xE8800000) // 1024),
    # LPAE (armmp-lpae): 3 GiB from 0x40000000 ends at 4 GiB physical; lowmem 768 MiB as without LPAE, the
    # window the default 240 MiB: VMALLOC_END 0xff800000 - (0xf0000000 + 8M)
    ("arm-lpae-6.1", 3072, "", (0xFF800000 - 0xF0800000) // 1024),
])
def test_other_memory_sizes_and_vmalloc_arguments(tmp_path: Path, target: str, mem: int, append: str,
                                                  vmalloc_kb: int) -> None:
    outcome = run(tmp_path, target, mem_mib=mem, append=append)
    assert failing(outcome) == []
    assert outcome.verdict is not None and outcome.verdict.status == "pass"
    assert outcome.bundle_dir is not None
    meminfo = (outcome.bundle_dir / "meminfo.txt").read_text()
    assert f"VmallocTotal:   {vmalloc_kb:8d} kB" in meminfo


OOPS_MODULE = """\
#include <linux/module.h>
static int __init kit_oops_init(void)
{
\tpr_info("kit_oops: about to write through NULL\\n");
\t*(volatile int *)0 = 1;
\treturn 0;
}
module_init(kit_oops_init);
MODULE_LICENSE("GPL");
"""


def test_module_that_oopses_gives_an_error_verdict_and_keeps_the_bundle(tmp_path: Path) -> None:
    from kbuild.kernels import fetch_debian_kernel
    from kbuild.make import build_modules
    from kbuild.toolchain import find_toolchain

    target = load_target("arm-6.1")
    source = tmp_path / "kit_oops"
    source.mkdir()
    (source / "kit_oops.c").write_text(OOPS_MODULE)
    (source / "Kbuild").write_text("obj-m += kit_oops.o\n")
    (ko,) = build_modules(fetch_debian_kernel(target), find_toolchain(target), [source])
    outcome = run(tmp_path, "arm-6.1", user_modules=(ko.ko,), boot_timeout_s=60.0, plan_timeout_s=120.0)
    assert outcome.verdict is not None
    assert outcome.verdict.status == "error"
    excerpt = outcome.verdict.log_excerpt or ""
    assert "Internal error:" in excerpt and "PC is at kit_oops_init" in excerpt, excerpt
    doc = verdict_json(outcome)
    assert doc["status"] == "error"
    assert outcome.bundle_dir is not None and (outcome.bundle_dir / "boot.log").stat().st_size > 0


@pytest.mark.parametrize("target", ["arm-6.1", "arm-6.12"])  # 6.12 installs it as crc7.ko.xz
def test_a_users_prebuilt_module_gets_its_footprint_checked(tmp_path: Path, target: str) -> None:
    from kbuild.kernels import fetch_debian_kernel

    tree = fetch_debian_kernel(load_target(target))
    assert tree.modules_dir is not None
    (crc7,) = tree.modules_dir.rglob("crc7.ko*")
    outcome = run(tmp_path, target, user_modules=(crc7,))
    assert failing(outcome) == []
    assert outcome.verdict is not None
    ids = {c.id: c.status for c in outcome.verdict.checks}
    assert ids["crc7.proc_modules.size"] == "pass"
    assert ids["crc7.sections"] == "pass"
    assert ids["crc7.proc_modules.address"] == "pass"


def test_a_kernel_that_panics_at_boot_gives_an_error_verdict_quickly(tmp_path: Path) -> None:
    """vmalloc=1000M leaves 32 MiB of lowmem (early_vmalloc's clamp): too little for the memory map of
    1 GiB, so 6.12 panics in paging_init. earlycon (in the targets' command line) shows it at once."""
    import time

    started = time.monotonic()
    outcome = run(tmp_path, "arm-6.12", append="vmalloc=1000M", boot_timeout_s=60.0)
    assert time.monotonic() - started < 40
    assert outcome.verdict is not None and outcome.verdict.status == "error"
    assert "Kernel panic" in (outcome.verdict.log_excerpt or "")
    assert outcome.bundle_dir is not None and "Kernel panic" in (outcome.bundle_dir / "boot.log").read_text()
