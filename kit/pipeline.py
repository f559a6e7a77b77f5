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
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path

from analysis.elf.loader import read_module_bytes
from analysis.verify.check import Check
from analysis.verify.verify import verify_bundle
from deploy.qemu import QemuTimeouts, QemuTransport
from deploy.session import collect_bundle, guest_files
from kbuild.kernels import KernelTree, fetch_busybox, fetch_debian_kernel, local_kernel_tree
from kbuild.make import (
    BuiltModule,
    build_modules,
    check_vermagic,
    is_up_to_date,
    modinfo_field,
    module_names,
    strip_debug,
)
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
    """Debian's kernel of the target, or the user's own prepared tree (with Debian's static busybox)."""
    if request.kdir is not None or request.image is not None:
        if request.kdir is None or request.image is None:
            raise UserError("a local kernel needs both --kdir (prepared build tree) and --image (zImage)")
        return local_kernel_tree(request.kdir, request.image, request.dtb,
                                 busybox=fetch_busybox(request.target, log=log))
    return fetch_debian_kernel(request.target, log=log)


MEM_RANGE_MIB = (64, 3072)  # armmp-lpae guests crash at /init with -m 4096 (debian-kernels.md)


def parse_mem_mib(text: str | int) -> int:
    """--mem as people type it: 768, 768M, 1G (MiB when no unit)."""
    from analysis.model.units import parse_size

    value = str(text).strip()
    mib = int(value) if value.isdigit() else parse_size(value) >> 20 if value else 0
    if not MEM_RANGE_MIB[0] <= mib <= MEM_RANGE_MIB[1]:
        raise UserError(f"--mem {text}: give the guest RAM in MiB between {MEM_RANGE_MIB[0]} and "
                        f"{MEM_RANGE_MIB[1]} (e.g. --mem 768 or --mem 1G)")
    return mib


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

    ``invoke build deploy run`` calls the three in turn; ``invoke run`` alone does all of them, and
    when some module must be rebuilt it boots the guest meanwhile and pushes the fresh modules
    through the console afterwards (an edit-and-run cycle costs the boot, not boot + build).
    """

    def __init__(self, request: RunRequest, log: Log) -> None:
        self.request = request
        self.log = log
        self.outcome = RunOutcome()
        self._tree: KernelTree | None = None
        self._dirs: list[Path] | None = None
        self._built: list[BuiltModule] | None = None
        self._shipped: list[Path] | None = None
        self._transport: QemuTransport | None = None

    def kernel(self) -> KernelTree:
        if self._tree is None:
            with phase(self.outcome, "kernel", self.log):
                self._tree = get_kernel(self.request, self.log)
        return self._tree

    def module_dirs(self) -> list[Path]:
        """The rendered sources (rewritten only where a template or parameter changed)."""
        if self._dirs is None:
            self._dirs = render_test_modules(self.request, self.kernel())
        return self._dirs

    def needs_build(self) -> bool:
        toolchain = find_toolchain(self.request.target)
        return self._built is None and not all(is_up_to_date(self.kernel(), toolchain, d)
                                               for d in self.module_dirs())

    def build(self) -> list[BuiltModule]:
        if self._built is None:
            tree, dirs = self.kernel(), self.module_dirs()
            with phase(self.outcome, "build", self.log):
                toolchain = find_toolchain(self.request.target)
                self._built = build_modules(tree, toolchain, dirs, jobs=os.cpu_count() or 2, log=self.log)
        return self._built

    def shipped_modules(self) -> list[Path]:
        """What the guest loads, in the contract's order (debug info stripped), then the user's modules."""
        if self._shipped is None:
            toolchain = find_toolchain(self.request.target)
            out = self.request.generated_root / self.request.target.name / "ship"
            stripped = [strip_debug(b.ko, toolchain, out, self.log) for b in self.build()]
            self._shipped = stripped + ship_user_modules(self.request, self.kernel())
        return self._shipped

    def transport(self) -> QemuTransport:
        if self._transport is None:
            tree = self.kernel()
            if tree.busybox is None:
                raise UserError(f"no static busybox for {tree.release}: give --kdir a tree with one, or use a "
                                "Debian target (busybox-static is fetched with the kernel)")
            spec = replace(self.request.target.qemu, mem_mib=self.request.memory_mib)
            work = self.request.generated_root / self.request.target.name / "qemu"
            self._transport = QemuTransport(spec, tree.image, tree.busybox, work, dtb=tree.dtb or self.request.dtb,
                                            extra_append=self.request.append,
                                            timeouts=QemuTimeouts(boot_s=self.request.boot_timeout_s),
                                            log=self.log)
        return self._transport

    def deploy(self) -> dict[str, Path]:
        """QEMU: stage the modules and the guest runner into the initramfs (built at boot)."""
        files = guest_files(self.shipped_modules())
        with phase(self.outcome, "deploy", self.log):
            self.transport().push(files)
        return files

    def _stage_current_modules(self) -> None:
        """Before an early boot: the guest runner, and every module whose last shipped file is still
        current (its directory needs no build), go into the initramfs; the rest follow by console."""
        tree, toolchain = self.kernel(), find_toolchain(self.request.target)
        out = self.request.generated_root / self.request.target.name / "ship"
        current = []
        for module_dir in self.module_dirs():
            if is_up_to_date(tree, toolchain, module_dir):
                for name in module_names(module_dir):
                    shipped = out / f"{name}.ko"
                    if shipped.is_file() and shipped.stat().st_mtime >= (module_dir / f"{name}.ko").stat().st_mtime:
                        current.append(shipped)
        self.transport().push(guest_files(current))

    def _boot_while_building(self) -> None:
        """Boot while Kbuild runs (in a thread: QEMU must be started by the main thread, since it dies
        with the thread that started it, see deploy.qemu); the rebuilt modules then go by console."""
        transport = self.transport()
        self._stage_current_modules()
        with ThreadPoolExecutor(max_workers=1) as pool:
            building = pool.submit(self.shipped_modules)
            try:
                transport.boot()
            finally:
                error = building.exception()
            if error is not None:
                transport.power_off()
                raise error

    def run(self) -> RunOutcome:
        """Boot, run the plan, collect the bundle, verify it; a run error still writes its verdict."""
        tree: KernelTree | None = None
        try:
            tree = self.kernel()
            if self.needs_build():
                with phase(self.outcome, "build+boot", self.log):
                    self._boot_while_building()
            bundle = new_bundle_dir(self.request)
            self.outcome.bundle_dir = bundle
            write_target_facts(self.request, tree, guest_cmdline(self.request), bundle)
            with phase(self.outcome, "collect", self.log):
                collect_bundle(self.transport(), self.shipped_modules(), bundle, self.log,
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
