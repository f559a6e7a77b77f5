"""The run: kernel -> render -> build -> deploy and collect -> verify -> verdict. Each phase is timed.

Every phase takes plain inputs and returns a result; errors are raised (kit.errors) and only tasks.py
turns them into exit codes. A run that fails midway still writes its partial bundle and a verdict
with status ``error``.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from analysis.elf.loader import read_module_bytes
from analysis.model.banner import QEMU_VIRT_RAM_BASE
from analysis.verify.check import Check
from analysis.verify.report import format_table, worst_first
from kbuild.kernels import KernelTree, fetch_busybox, fetch_debian_kernel, local_kernel_tree
from kbuild.make import (
    check_vermagic,
    modinfo_field,
)
from kbuild.render import default_specs, render_module, template_environment
from kit.errors import KitError, UserError
from kit.request import RunRequest
from kit.verdict import Verdict, write_junit, write_verdict_json

Log = Callable[[str], None]
REPO = Path(__file__).resolve().parent.parent


@dataclass
class PhaseResult:
    name: str
    status: str = "pass"
    elapsed_s: float = 0.0
    detail: str = ""


@dataclass
class RunOutcome:
    bundle_dir: Path | None = None
    verdict: Verdict | None = None
    phases: list[PhaseResult] = field(default_factory=list)


@contextmanager
def phase(outcome: RunOutcome, name: str, log: Log) -> Iterator[PhaseResult]:
    result = PhaseResult(name)
    outcome.phases.append(result)
    started = time.monotonic()
    try:
        yield result
    except BaseException as err:
        result.status = "error"
        result.detail = str(err)
        raise
    finally:
        result.elapsed_s = time.monotonic() - started
        log(f"[{name}] {result.status} in {result.elapsed_s:.1f} s{': ' + result.detail if result.detail else ''}")


def get_kernel(request: RunRequest, log: Log) -> KernelTree:
    """Debian's kernel of the target, or the user's own prepared tree (with Debian's static busybox)."""
    if request.kdir is not None or request.image is not None:
        if request.kdir is None or request.image is None:
            raise UserError("a local kernel needs both --kdir (prepared build tree) and --image (zImage)")
        return local_kernel_tree(request.kdir, request.image, request.dtb,
                                 busybox=fetch_busybox(request.target, log=log))
    return fetch_debian_kernel(request.target, log=log)


def render_test_modules(request: RunRequest, tree: KernelTree) -> list[Path]:
    """Render every family into generated/<target>/<module>/ (files rewritten only when they change)."""
    out_root = request.generated_root / request.target.name
    env = template_environment(request.templates_dir)
    return [render_module(spec, out_root, env) for spec in default_specs(request.target, tree)]


def ship_user_modules(request: RunRequest, tree: KernelTree) -> list[Path]:
    """A user's modules as the guest loads them: uncompressed (.ko.xz/.gz/.zst as Debian installs them),
    named after the module's own ``name=`` (the name /proc/modules shows), vermagic checked."""
    out = request.generated_root / request.target.name / "ship-user"
    shipped = []
    for ko in request.user_modules:
        if not ko.is_file():
            raise UserError(f"--module {ko}: no such file")
        out.mkdir(parents=True, exist_ok=True)
        raw = out / "incoming.ko"
        raw.write_bytes(read_module_bytes(ko))
        target = out / f"{modinfo_field(raw, 'name')}.ko"
        raw.replace(target)
        check_vermagic(target, tree)
        shipped.append(target)
    return shipped


def new_bundle_dir(request: RunRequest) -> Path:
    run_id = datetime.now(UTC).strftime("%Y%m%d-%H%M%S-%f")
    bundle = request.results_root / request.target.name / run_id
    bundle.mkdir(parents=True)
    latest = request.results_root / "latest"
    if latest.is_symlink() or latest.exists():
        latest.unlink()
    latest.symlink_to(bundle.relative_to(request.results_root))
    return bundle


def write_target_facts(request: RunRequest, tree: KernelTree, cmdline: str, bundle: Path) -> None:
    """target.toml: the facts the offline checker cannot read off the guest."""
    target = request.target
    lines = [
        f"name = {json.dumps(target.name)}",
        f"arch = {json.dumps(target.arch)}",
        'transport = "qemu"',
        f"cmdline = {json.dumps(cmdline)}",  # a JSON string is a valid TOML basic string
        f"mem_mib = {request.memory_mib}",
        f"ram_base = 0x{QEMU_VIRT_RAM_BASE:08x}",
        "",
        "[kernel]",
        f"release = {json.dumps(tree.release)}",
        f"version = {json.dumps(tree.version)}",
        f"series = {json.dumps(target.kernel.series)}",
        f"flavour = {json.dumps(target.kernel.flavour)}",
    ]
    (bundle / "target.toml").write_text("\n".join(lines) + "\n")
    shutil.copyfile(tree.config, bundle / "config")


def guest_cmdline(request: RunRequest) -> str:
    return " ".join(part for part in (request.target.qemu.append, request.append) if part)


def excerpt_of(err: KitError) -> str | None:
    text = getattr(err, "excerpt", "")
    return text if isinstance(text, str) and text else None


def finish(outcome: RunOutcome, verdict: Verdict) -> RunOutcome:
    outcome.verdict = verdict
    if outcome.bundle_dir is not None:
        write_verdict_json(verdict, outcome.bundle_dir / "verdict.json")
        write_junit(verdict, outcome.bundle_dir / "junit.xml")
        (outcome.bundle_dir / "report.txt").write_text(format_table(worst_first(verdict.checks)))
    return outcome


def error_verdict(request: RunRequest, tree: KernelTree | None, err: KitError,
                  checks: Sequence[Check] = ()) -> Verdict:
    return Verdict(
        target=request.target.name,
        arch=request.target.arch,
        release=tree.release if tree else None,
        version=tree.version if tree else None,
        checks=list(checks),
        run_error=str(err),
        log_excerpt=excerpt_of(err),
    )
