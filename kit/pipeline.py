"""The run: kernel -> render -> build -> deploy and collect -> verify -> verdict. Each phase is timed.

Every phase takes plain inputs and returns a result; errors are raised (kit.errors) and only tasks.py
turns them into exit codes. A run that fails midway still writes its partial bundle and a verdict
with status ``error``.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from kbuild.kernels import KernelTree, fetch_debian_kernel, local_kernel_tree
from kbuild.make import BuiltModule, build_modules, check_vermagic
from kbuild.render import default_specs, render_module
from kbuild.targets import Target
from kbuild.toolchain import find_toolchain
from kit.errors import KitError, UserError
from kit.verdict import Verdict, write_junit, write_verdict_json

Log = Callable[[str], None]
REPO = Path(__file__).resolve().parent.parent
QEMU_VIRT_RAM_BASE = 0x40000000  # hw/arm/virt.c memmap[VIRT_MEM].base


@dataclass(frozen=True)
class RunRequest:
    target: Target
    mem_mib: int | None = None
    append: str = ""
    user_modules: tuple[Path, ...] = ()
    kdir: Path | None = None
    image: Path | None = None
    dtb: Path | None = None
    results_root: Path = REPO / "results"
    generated_root: Path = REPO / "generated"
    boot_timeout_s: float = 180.0

    @property
    def memory_mib(self) -> int:
        return self.mem_mib if self.mem_mib is not None else self.target.qemu.mem_mib


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
    if request.kdir is not None or request.image is not None:
        if request.kdir is None or request.image is None:
            raise UserError("a local kernel needs both --kdir (prepared build tree) and --image (zImage)")
        return local_kernel_tree(request.kdir, request.image, request.dtb)
    return fetch_debian_kernel(request.target, log=log)


def build_test_modules(request: RunRequest, tree: KernelTree, log: Log) -> list[BuiltModule]:
    """Render every family into generated/<target>/ and build what changed."""
    out_root = request.generated_root / request.target.name
    dirs = [render_module(spec, out_root) for spec in default_specs(request.target, tree)]
    return build_modules(tree, find_toolchain(request.target), dirs, jobs=os.cpu_count() or 2, log=log)


def check_user_modules(request: RunRequest, tree: KernelTree) -> list[Path]:
    for ko in request.user_modules:
        if not ko.is_file():
            raise UserError(f"--module {ko}: no such file")
        check_vermagic(ko, tree)
    return list(request.user_modules)


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
        f'name = "{target.name}"',
        f'arch = "{target.arch}"',
        'transport = "qemu"',
        f"cmdline = {cmdline!r}".replace("'", '"'),
        f"mem_mib = {request.memory_mib}",
        f"ram_base = 0x{QEMU_VIRT_RAM_BASE:08x}",
        "",
        "[kernel]",
        f'release = "{tree.release}"',
        f'version = "{tree.version}"',
        f'series = "{target.kernel.series}"',
        f'flavour = "{target.kernel.flavour}"',
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
    return outcome


def error_verdict(request: RunRequest, tree: KernelTree | None, err: KitError,
                  checks: Sequence[object] = ()) -> Verdict:
    from analysis.verify.check import Check

    return Verdict(
        target=request.target.name,
        arch=request.target.arch,
        release=tree.release if tree else None,
        version=tree.version if tree else None,
        checks=[c for c in checks if isinstance(c, Check)],
        run_error=str(err),
        log_excerpt=excerpt_of(err),
    )
