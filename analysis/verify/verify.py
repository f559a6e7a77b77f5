"""All checks of one bundle: the run's bookkeeping, each family's predictions, offline consistency."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from analysis.model.banner import StatedInputs
from analysis.verify.bundle import Bundle, load_bundle
from analysis.verify.check import Check, skip
from analysis.verify.consistency import consistency_checks
from analysis.verify.context import Context
from analysis.verify.facts_checks import facts_checks
from analysis.verify.families import FAMILY_CHECKS, own_areas_released
from analysis.verify.footprint_checks import footprint_checks
from analysis.verify.infer import infer_context
from analysis.verify.runs import (
    guest_health_checks,
    highmem_checks,
    kernel_layout_checks,
    layout_agreement_checks,
    module_run_checks,
)


@dataclass(frozen=True)
class BundleVerdict:
    bundle: Bundle
    context: Context
    checks: list[Check]


def _run_checks(bundle: Bundle, ctx: Context) -> list[Check]:
    checks: list[Check] = []
    runs = [run for run in bundle.runs if run.ktap is not None and run.ktap.result("layout") is not None]
    if runs:
        checks += kernel_layout_checks(runs[0], ctx.layout, ctx.why_no_layout)
        checks += highmem_checks(runs[0], bundle, ctx.layout)
        for other in runs[1:]:
            checks += layout_agreement_checks(runs[0], other)
    for run in bundle.runs:
        checks += module_run_checks(run)
        checks += own_areas_released(run)
        checks += footprint_checks(run, ctx)
        family = FAMILY_CHECKS.get(run.name)
        if family is None or run.ktap is None:
            continue
        if ctx.layout is None:
            checks.append(skip(f"{run.name}.model", run.name, ctx.why_no_layout or "no layout model"))
            continue
        checks += family(run, run.ktap, ctx, ctx.layout)
    if bundle.runs:
        checks += guest_health_checks(bundle)
    return checks


def verify_bundle(root: Path, stated: StatedInputs | None = None) -> BundleVerdict:
    """Load ``root`` and run every check that its files allow (``stated``: what the engineer knows and the
    capture lacks, over what the files say)."""
    bundle = load_bundle(root)
    ctx = infer_context(bundle, stated)
    checks = facts_checks(bundle) + _run_checks(bundle, ctx) + consistency_checks(bundle, ctx)
    return BundleVerdict(bundle, ctx, checks)
