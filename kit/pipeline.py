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
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path

from analysis.verify.check import Check
from analysis.verify.verify import verify_bundle
from deploy.qemu import QemuTimeouts, QemuTransport
from deploy.session import collect_bundle, guest_files
from kbuild.kernels import KernelTree, fetch_debian_kernel, local_kernel_tree
from kbuild.make import BuiltModule, build_modules, check_vermagic
from kbuild.render import TEMPLATES_DIR, default_specs, render_module, template_environment
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
    templates_dir: Path = TEMPLATES_DIR
    boot_timeout_s: float = 120.0
    plan_timeout_s: float = 300.0

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
    env = template_environment(request.templates_dir)
    dirs = [render_module(spec, out_root, env) for spec in default_specs(request.target, tree)]
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


class RunSession:
    """build -> deploy -> run for one request; each step done once and reused by the next.

    ``invoke build deploy run`` calls the three in turn; ``invoke run`` alone does all of them.
    """

    def __init__(self, request: RunRequest, log: Log) -> None:
        self.request = request
        self.log = log
        self.outcome = RunOutcome()
        self._tree: KernelTree | None = None
        self._built: list[BuiltModule] | None = None
        self._transport: QemuTransport | None = None
        self._modules: list[Path] | None = None
        self._pushed: dict[str, Path] = {}

    def kernel(self) -> KernelTree:
        if self._tree is None:
            with phase(self.outcome, "kernel", self.log):
                self._tree = get_kernel(self.request, self.log)
        return self._tree

    def build(self) -> list[BuiltModule]:
        if self._built is None:
            tree = self.kernel()
            with phase(self.outcome, "build", self.log):
                self._built = build_test_modules(self.request, tree, self.log)
        return self._built

    def modules(self) -> list[Path]:
        """What the guest loads, in the contract's order, then the user's modules."""
        if self._modules is None:
            built = [b.ko for b in self.build()]
            self._modules = built + check_user_modules(self.request, self.kernel())
        return self._modules

    def deploy(self) -> dict[str, Path]:
        """QEMU: stage the modules and the guest runner into the initramfs (built at boot)."""
        if self._transport is None:
            tree = self.kernel()
            if tree.busybox is None:
                raise UserError(f"no static busybox for {tree.release}: give --kdir a tree with one, or use a "
                                "Debian target (busybox-static is fetched with the kernel)")
            spec = replace(self.request.target.qemu, mem_mib=self.request.memory_mib)
            work = self.request.generated_root / self.request.target.name / "qemu"
            with phase(self.outcome, "deploy", self.log):
                transport = QemuTransport(spec, tree.image, tree.busybox, work, dtb=tree.dtb or self.request.dtb,
                                          extra_append=self.request.append,
                                          timeouts=QemuTimeouts(boot_s=self.request.boot_timeout_s),
                                          log=self.log)
                files = guest_files(self.modules())
                transport.push(files)
            self._transport = transport
            self._pushed = files
        return self._pushed

    def run(self) -> RunOutcome:
        """Boot, run the plan, collect the bundle, verify it; a run error still writes its verdict."""
        tree: KernelTree | None = None
        try:
            tree = self.kernel()
            self.deploy()
            assert self._transport is not None
            bundle = new_bundle_dir(self.request)
            self.outcome.bundle_dir = bundle
            write_target_facts(self.request, tree, guest_cmdline(self.request), bundle)
            with phase(self.outcome, "collect", self.log):
                collect_bundle(self._transport, self.modules(), bundle, self.log,
                               plan_timeout_s=self.request.plan_timeout_s)
            with phase(self.outcome, "verify", self.log):
                result = verify_bundle(bundle)
            verdict = Verdict(self.request.target.name, self.request.target.arch, tree.release, tree.version,
                              result.checks, extra={"phases": self._phase_json()})
        except KitError as err:
            verdict = error_verdict(self.request, tree, err, self._partial_checks())
        return finish(self.outcome, verdict)

    def _partial_checks(self) -> list[Check]:
        """What the partial bundle still proves (modules that finished before the crash)."""
        bundle = self.outcome.bundle_dir
        if bundle is None:
            return []
        try:
            return verify_bundle(bundle).checks
        except KitError as err:
            self.log(f"partial bundle not checkable: {err}")
            return []

    def _phase_json(self) -> list[dict[str, object]]:
        return [{"name": p.name, "status": p.status, "elapsed_s": round(p.elapsed_s, 3)} for p in self.outcome.phases]
