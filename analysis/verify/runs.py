"""Checks of a run's own bookkeeping: exit statuses, KTAP results, the kernel's layout vs the model."""

from __future__ import annotations

import re

from analysis.model.layout_arm import ArmLayout
from analysis.parsers import KtapDocument
from analysis.verify.bundle import Bundle, ModuleRun
from analysis.verify.check import Check, compare, compare_address, skip

# Kernel messages that mean the guest is not healthy (arch/arm/kernel/traps.c die(), lib/bug.c,
# kernel/panic.c, mm/page_alloc.c warn_alloc is expected during the vmap fill and not listed).
_TROUBLE = re.compile(r"Internal error:|Unable to handle kernel|\bOops\b|BUG:|Kernel panic|"
                      r"WARNING: CPU:|general protection fault|Call trace:")

KIT_PREFIX = "kit_"  # the generated test modules (kbuild/render.py); others are users' modules
LAYOUT_KEYS = ("PAGE_OFFSET", "high_memory", "VMALLOC_START", "VMALLOC_END", "MODULES_VADDR", "MODULES_END",
               "PKMAP_BASE", "LAST_PKMAP", "FIXADDR_START", "FIXADDR_TOP")


def module_run_checks(run: ModuleRun) -> list[Check]:
    """insmod and rmmod succeeded, the KTAP is complete, and every case the module ran passed."""
    family = "run"
    if run.loaded:
        checks = [
            compare(f"{run.name}.insmod", family, 0, run.insmod_rc, "insmod exit status"),
            compare(f"{run.name}.rmmod", family, 0, run.rmmod_rc, "rmmod exit status"),
        ]
    else:  # one result, in the kernel's own words; nothing of it is compared with what is not there
        said = "; ".join(run.load_messages[-4:]) or "neither the kernel nor insmod said why"
        checks = [Check(f"{run.name}.insmod", family, "fail", 0, run.insmod_rc, f"did not load: {said}"),
                  skip(f"{run.name}.rmmod", family, "not loaded, nothing to unload")]
    doc = run.ktap
    if doc is None or (doc.version is None and doc.plan is None and not doc.results):
        if run.name.startswith(KIT_PREFIX):
            return [*checks, Check(f"{run.name}.ktap", family, "error", "KTAP output", None,
                                   "no KTAP from this test module in the ring buffer")]
        return [*checks, skip(f"{run.name}.ktap", family, "a user module: it prints no KTAP")]
    checks.append(compare(f"{run.name}.ktap.complete", family, doc.plan, len(doc.results),
                          "results announced by the plan vs results printed"))
    for result in doc.results:
        check_id = f"{run.name}.ktap.{result.name}"
        if result.directive == "SKIP":
            checks.append(skip(check_id, family, result.reason or "skipped by the module"))
        else:
            checks.append(Check(check_id, family, "pass" if result.ok else "fail", "ok",
                                "ok" if result.ok else "not ok", result.reason or ""))
    return checks


def guest_health_checks(bundle: Bundle) -> list[Check]:
    if bundle.dmesg is None:
        return [skip("guest.dmesg_clean", "run", "no dmesg.txt")]
    trouble = [line.strip() for line in bundle.dmesg.splitlines() if _TROUBLE.search(line)]
    return [compare("guest.dmesg_clean", "run", [], trouble[:5],
                    "no oops, BUG, WARNING or panic in the ring buffer")]


def layout_value(doc: KtapDocument, key: str) -> int | None:
    return doc.diag_int(f"layout.{key}")


def kernel_layout_checks(run: ModuleRun, layout: ArmLayout | None, why: str | None) -> list[Check]:
    """The layout the kernel reports from its own macros (case ``layout``) against the model."""
    family = "layout"
    doc = run.ktap
    if doc is None or doc.result("layout") is None:
        return []
    if layout is None:
        return [skip(f"layout.{key}", family, why or "no model") for key in LAYOUT_KEYS]
    return [(compare if key == "LAST_PKMAP" else compare_address)(
                f"layout.{key}", family, getattr(layout, key), layout_value(doc, key),
                f"kernel's {key} (reported by {run.name}) vs the model") for key in LAYOUT_KEYS]


def layout_agreement_checks(first: ModuleRun, other: ModuleRun) -> list[Check]:
    """Every module reports the same layout (the kernel does not move it between loads)."""
    if first.ktap is None or other.ktap is None or other.ktap.result("layout") is None:
        return []
    ours = {k: layout_value(other.ktap, k) for k in LAYOUT_KEYS}
    theirs = {k: layout_value(first.ktap, k) for k in LAYOUT_KEYS}
    return [compare(f"{other.name}.layout_same", "layout", theirs, ours, f"same as {first.name}'s")]


def highmem_checks(run: ModuleRun, bundle: Bundle, layout: ArmLayout | None) -> list[Check]:
    """totalhigh_pages (managed highmem) vs the model's highmem RAM and /proc/meminfo HighTotal."""
    doc = run.ktap
    if doc is None or layout is None:
        return []
    pages = doc.diag_int("layout.totalhigh_pages")
    checks = []
    if bundle.meminfo is not None and "HighTotal" in bundle.meminfo:
        # fs/proc/meminfo.c: HighTotal = totalhigh_pages() << (PAGE_SHIFT - 10)
        checks.append(compare("meminfo.HighTotal_vs_kernel", "layout", bundle.meminfo["HighTotal"],
                              pages * 4 if pages is not None else None, "HighTotal kB == totalhigh_pages * 4"))
    # Managed pages can only be fewer than the RAM in the zone (memblock reservations), never more;
    # on QEMU virt nothing is reserved in highmem, so equality is expected.
    checks.append(compare("layout.totalhigh_pages", "layout", layout.highmem_bytes // 4096, pages,
                          "RAM above arm_lowmem_limit, in pages (adjust_lowmem_bounds)"))
    return checks
