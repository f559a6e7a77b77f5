"""One run's steps, each done once: kernel, render, build, ship, deploy, then boot-run-collect-verify."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
import traceback
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

from analysis.verify.check import Check
from analysis.verify.verify import BundleVerdict, verify_bundle
from deploy.base import BoardTransport, Transport
from deploy.bundle_io import module_name
from deploy.qemu import QemuTimeouts, QemuTransport
from deploy.session import GuestPaths, LostBatch, collect_bundle, guest_files
from deploy.ssh import SshTarget, SshTransport
from kbuild.kernels import KernelTree, process_alive
from kbuild.make import BuiltModule, build_modules, is_up_to_date, module_names, strip_debug
from kbuild.toolchain import find_toolchain
from kit.boards import PowerControl, board_link
from kit.errors import InfraError, Interrupted, KitError, UserError
from kit.locks import DirectoryLock
from kit.pipeline import (
    Log,
    RunOutcome,
    error_verdict,
    finish,
    get_kernel,
    guest_cmdline,
    new_bundle_dir,
    phase,
    render_test_modules,
    ship_user_modules,
    write_ktap_files,
    write_target_facts,
)
from kit.request import RunRequest
from kit.user_modules import (
    UserModule,
    check_built_modules,
    check_module_names,
    check_user_modules,
    check_user_vermagic,
    driver_stacks,
)
from kit.user_trees import build_user_trees, check_user_tree
from kit.verdict import Verdict


class RunSession:
    """build -> deploy -> run for one request; each step done once and reused by the next.

    ``invoke build deploy run`` calls the three in turn; ``invoke run`` alone does all of them, and
    when some module must be rebuilt it boots the guest meanwhile and pushes the fresh modules
    through the console afterwards (an edit-and-run cycle costs the boot, not boot + build).
    """

    def __init__(self, request: RunRequest, log: Log, transport: Transport | None = None,
                 tree: KernelTree | None = None) -> None:
        """``transport``: a target that is up already and outlives this run (``invoke watch``'s warm guest);
        by default the run makes its own (QEMU, or the board's link). ``tree``: the kernel tree an earlier
        session of the same request got (its user modules' vermagic checked then)."""
        # the --module files, checked from the files alone before any phase (a bad one: UserError, exit 2)
        self._user_checked: list[UserModule] = check_user_modules(request)
        self.request = request
        self.log = log
        self.outcome = RunOutcome()
        self._tree: KernelTree | None = tree
        # the modules this run loads (their driver stacks whole); None: all of them (invoke watch reruns
        # only the modules whose bytes changed)
        self.only: frozenset[str] | None = None
        self._dirs: list[Path] | None = None
        self._built: list[BuiltModule] | None = None
        self._shipped: list[Path] | None = None
        self._loading: list[Path] | None = None  # what this run loads: the shipped modules ``only`` keeps
        self._user: list[Path] | None = None
        self._user_every: list[UserModule] | None = None
        self._checked: BundleVerdict | None = None  # the bundle as verified (the report is drawn from it)
        self._transport: Transport | None = transport
        self._work: Path | None = None
        # generated/<target> (rendered sources, Kbuild output, shipped modules) is shared by every run of
        # this checkout: one run at a time renders, builds and strips there.
        self._generated = DirectoryLock(request.generated_root / request.target.name)

    def kernel(self) -> KernelTree:
        if self._tree is None:
            with phase(self.outcome, "kernel", self.log):
                tree = get_kernel(self.request, self.log)
            check_user_vermagic(self._user_checked, tree)  # what needs the kernel: before build, boot, bundle
            self._tree = tree
        return self._tree

    def module_dirs(self) -> list[Path]:
        """The rendered sources (rewritten only where a template or parameter changed)."""
        if self._dirs is None:
            with self._generated:
                self._dirs = render_test_modules(self.request, self.kernel())
        return self._dirs

    def needs_build(self) -> bool:
        toolchain = find_toolchain(self.request.target)
        return self._built is None and not all(is_up_to_date(self.kernel(), toolchain, d)
                                               for d in self.module_dirs())

    def build(self) -> list[BuiltModule]:
        if self._built is None:
            tree, dirs = self.kernel(), self.module_dirs()
            with phase(self.outcome, "build", self.log), self._generated:
                toolchain = find_toolchain(self.request.target)
                self._built = build_modules(tree, toolchain, dirs, jobs=os.cpu_count() or 2, log=self.log)
        return self._built

    @property
    def ship_dir(self) -> Path:
        return self.request.generated_root / self.request.target.name / "ship"

    def user_modules(self) -> list[Path]:
        """The user's modules as the guest loads them: the --module files decompressed, the --module
        directories built; all vermagic-checked, in the order given."""
        if self._user is None:
            with self._generated:
                self._user = ship_user_modules(self.request, self.kernel(), self._every_user_module())
        return self._user

    def _every_user_module(self) -> list[UserModule]:
        """Each --module in the order given: a file as checked at the start, a directory's modules as built."""
        if self._user_every is None:
            target, paths = self.request.target, self.request.user_modules
            trees = [check_user_tree(path) for path in paths if path.is_dir()]
            built = build_user_trees(trees, self.kernel(), find_toolchain(target),
                                     self.request.generated_root / target.name / "user-src",
                                     self.log) if trees else {}
            files = iter(self._user_checked)
            every: list[UserModule] = []
            for path, tree in ((p, next((t for t in trees if t.given == p), None)) for p in paths):
                every += check_built_modules(built[path], tree, target) if tree is not None else [next(files)]
            check_module_names(every, target)
            self._user_every = every
        return self._user_every

    def shipped_modules(self) -> list[Path]:
        """What the guest loads, in the contract's order (debug info stripped), then the user's modules."""
        if self._shipped is None:
            toolchain = find_toolchain(self.request.target)
            with self._generated:
                stripped = [strip_debug(b.ko, toolchain, self.ship_dir, self.log) for b in self.build()]
            self._shipped = stripped + self.user_modules()
        return self._shipped

    @property
    def guest_paths(self) -> GuestPaths:
        """QEMU: /kit in the kit's initramfs; a board: the board file's work dir (removed at the end)."""
        board = self.request.board
        return GuestPaths(board.work_dir) if board is not None else GuestPaths()

    def transport(self) -> Transport:
        if self._transport is None:
            self._transport = self._board_transport() if self.request.board is not None else self._qemu_transport()
        return self._transport

    def _board_transport(self) -> Transport:
        """Attach to the board (it is up already): over SSH or its serial console."""
        board = self.request.board
        assert board is not None
        link = board_link(board)
        if isinstance(link, SshTarget):
            return SshTransport(link, self.work_dir(), remote_work_dir=board.work_dir)
        from deploy.serial import SerialTransport

        return SerialTransport(link, self.work_dir(), remote_work_dir=board.work_dir)

    def _qemu_transport(self) -> QemuTransport:
        tree = self.kernel()
        if tree.image is None:
            raise UserError(f"no kernel image for {tree.release}: give --image with --kdir")
        if tree.busybox is None:
            raise UserError(f"no static busybox for {tree.release}: give --kdir a tree with one, or use a "
                            "Debian target (busybox-static is fetched with the kernel)")
        spec = replace(self.request.target.qemu, mem_mib=self.request.memory_mib)
        return QemuTransport(spec, tree.image, tree.busybox, self.work_dir(),
                             dtb=tree.dtb or self.request.dtb,
                             extra_append=self.request.append,
                             timeouts=QemuTimeouts(boot_s=self.request.boot_timeout_s),
                             log=self.log)

    def deploy(self) -> dict[str, Path]:
        """QEMU: stage the modules and the guest runner into the initramfs (built at boot); a board: they
        are pushed when the run attaches to it."""
        files = guest_files(self.shipped_modules(), self.guest_paths)
        with phase(self.outcome, "deploy", self.log):
            self.transport().push(files)
        return files

    def _stage_current_modules(self) -> None:
        """Before an early boot: the guest runner, and every module whose last shipped file is still
        current (its directory needs no build), go into the initramfs; the rest follow by console."""
        tree, toolchain = self.kernel(), find_toolchain(self.request.target)
        current: list[Path] = []
        for module_dir in self.module_dirs():
            if is_up_to_date(tree, toolchain, module_dir):
                for name in module_names(module_dir):
                    shipped = self.ship_dir / f"{name}.ko"
                    if shipped.is_file() and shipped.stat().st_mtime >= (module_dir / f"{name}.ko").stat().st_mtime:
                        current.append(shipped)
        self.transport().push(guest_files(current + self.user_modules()))

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

    def work_dir(self) -> Path:
        """This run's own QEMU work files (console log, initramfs): removed when the run ends."""
        if self._work is None:
            root = self.request.generated_root / self.request.target.name / "qemu"
            root.mkdir(parents=True, exist_ok=True)
            remove_abandoned_work_dirs(root)
            self._work = Path(tempfile.mkdtemp(prefix=f"run-{os.getpid()}-", dir=root))
        return self._work

    def run(self) -> RunOutcome:
        """Boot, run the plan, collect the bundle, verify it; a run error still writes its verdict.

        Ctrl-C kills the guest at once and raises ``Interrupted`` after the verdict is written; an error
        that is not the kit's own is reported as one (exit 3, its traceback in the bundle), never lost.
        """
        # bad input found with the kernel (a --module's vermagic or compile error, a --kdir that is no tree)
        # raises here: exit 2 before any bundle exists; only what happens from here on gets a bundle and a verdict
        tree = self.kernel()
        self._every_user_module()  # a --module directory that does not compile is bad input too
        try:
            verdict = self._collect_and_verify(tree)
        except KitError as err:
            self.outcome.error = err
            verdict = self._error_verdict(tree, err)
        except KeyboardInterrupt:
            kept = f"the partial bundle is in {self.outcome.bundle_dir}" if self.outcome.bundle_dir else "no bundle yet"
            interrupted = Interrupted(f"interrupted (Ctrl-C): the guest was stopped, {kept}")
            finish(self.outcome, self._error_verdict(tree, interrupted), self._checked)
            raise interrupted from None
        except Exception as err:  # a bug of the kit's: reported like any run error, with its traceback kept
            self.outcome.error = self._internal_error(err)
            verdict = self._error_verdict(tree, self.outcome.error)
        finally:
            self._remove_work_dir()
        return finish(self.outcome, verdict, self._checked)

    def _collect_and_verify(self, tree: KernelTree) -> Verdict:
        bundle = new_bundle_dir(self.request)
        self.outcome.bundle_dir = bundle
        write_target_facts(self.request, tree, guest_cmdline(self.request), bundle)
        if self.request.board is None and self.needs_build():
            with phase(self.outcome, "build+boot", self.log):
                self._boot_while_building()
        with phase(self.outcome, "collect", self.log):
            every = self.shipped_modules()
            stacks = driver_stacks(self._every_user_module())
            chosen = self._chosen(stacks)
            user = [ko for ko in self.user_modules() if chosen(ko)]
            kit_modules = [ko for ko in every[: len(every) - len(self.user_modules())] if chosen(ko)]
            shipped = kit_modules + user
            self._loading = shipped
            collected = collect_bundle(self.transport(), shipped, bundle, self.log,
                                       plan_timeout_s=self.request.plan_timeout_s, stacks=stacks,
                                       batches=self._batches(kit_modules, user, stacks), paths=self.guest_paths,
                                       kernel_release=tree.release if self.request.board is not None else None,
                                       recover=self._power_cycle if self._power is not None else None,
                                       after_batch=lambda _bundle: self._cut_ktap())
        self._cut_ktap()
        with phase(self.outcome, "verify", self.log):
            result = self._checked = verify_bundle(bundle)
        return Verdict(self.request.run_name, self.request.target.arch, tree.release, tree.version,
                       [*lost_checks(collected.lost), *result.checks], extra={"phases": self._phase_json()})

    @property
    def _power(self) -> PowerControl | None:
        return self.request.board.power if self.request.board is not None else None

    def _chosen(self, stacks: list[list[str]]) -> Callable[[Path], bool]:
        """Whether a module runs: all when ``only`` is None, else those named and their stacks' members."""
        if self.only is None:
            return lambda _ko: True
        names = set(self.only) | {m for stack in stacks if set(stack) & self.only for m in stack}
        return lambda ko: module_name(ko) in names

    def _batches(self, kit_modules: list[Path], user: list[Path], stacks: list[list[str]]) -> list[list[Path]]:
        """The user's modules (the ones that may crash the target) run after the kit's have been fetched; on
        a board that can be power-cycled, each of them (or each driver stack) in a plan run of its own, so
        that a crash loses that one only."""
        if self._power is None:
            return [b for b in (kit_modules, user) if b]
        by_name = {module_name(ko): ko for ko in user}
        in_stack = {name: stack for stack in stacks for name in stack}
        groups: list[list[Path]] = []
        for ko in user:
            name = module_name(ko)
            if name not in in_stack:
                groups.append([ko])
            elif in_stack[name][0] == name:
                groups.append([by_name[member] for member in in_stack[name] if member in by_name])
        return [b for b in (kit_modules, *groups) if b]

    def _power_cycle(self) -> None:
        """The board file's reset command, then wait for the board to answer again (bounded)."""
        power, transport = self._power, self.transport()
        assert power is not None and isinstance(transport, BoardTransport)
        transport.abort()
        run_reset_command(power.reset_command, self.log)
        transport.reattach(power.up_after_s)

    def _error_verdict(self, tree: KernelTree | None, err: KitError) -> Verdict:
        if self._transport is not None:
            self._transport.abort()  # a no-op when the guest is already off
        self._keep_console_log()
        with contextlib.suppress(KitError):  # a bundle that cannot be written: the verdict still says why
            self._cut_ktap()
        return error_verdict(self.request, tree, err, self._partial_checks(), self.outcome.bundle_dir)

    def _cut_ktap(self) -> None:
        """ktap/M.ktap of every module this run loads that began, from the bundle's dmesg.txt (partial too;
        a warm guest's ring buffer also holds earlier runs' windows, of these and of other modules)."""
        loading = self._loading if self._loading is not None else self._shipped
        if self.outcome.bundle_dir is not None and loading is not None:
            write_ktap_files(self.outcome.bundle_dir, [module_name(ko) for ko in loading])

    def _internal_error(self, err: Exception) -> InfraError:
        text = "".join(traceback.format_exception(err))
        bundle = self.outcome.bundle_dir
        where = ""
        if bundle is not None:
            with contextlib.suppress(OSError):  # a full disk: the line below still says what happened
                (bundle / "traceback.txt").write_text(text)
                where = f"; traceback in {bundle / 'traceback.txt'}"
        return InfraError(f"internal error {type(err).__name__}: {err}{where} (please report it)")

    def close(self) -> None:
        """Drop this session's QEMU work directory (a transport it made and handed on is the taker's)."""
        self._remove_work_dir()

    def _remove_work_dir(self) -> None:
        if self._work is not None:
            shutil.rmtree(self._work, ignore_errors=True)

    def _keep_console_log(self) -> None:
        """A boot that failed before the collection started still leaves its console in the bundle."""
        bundle, transport = self.outcome.bundle_dir, self._transport
        if bundle is None or transport is None or (bundle / "boot.log").is_file():
            return
        if transport.console_log.is_file():
            shutil.copyfile(transport.console_log, bundle / "boot.log")

    def _partial_checks(self) -> list[Check]:
        """What the partial bundle still proves (modules that finished before the crash)."""
        bundle = self.outcome.bundle_dir
        if bundle is None:
            return []
        try:
            self._checked = verify_bundle(bundle)
            return self._checked.checks
        except KitError as err:
            self.log(f"partial bundle not checkable: {err}")
            return []

    def _phase_json(self) -> list[dict[str, object]]:
        return [{"name": p.name, "status": p.status, "elapsed_s": round(p.elapsed_s, 3)} for p in self.outcome.phases]


RESET_TIMEOUT_S = 120.0  # the power-cycle command itself (a PDU's CLI answers in seconds)


def run_reset_command(command: str, log: Log) -> None:
    """The board file's power-cycle command, through the host's shell; an error if it fails."""
    log(f"power-cycling the board: $ {command}")
    try:
        done = subprocess.run(command, shell=True, capture_output=True, text=True, timeout=RESET_TIMEOUT_S)
    except subprocess.TimeoutExpired as err:
        raise InfraError(f"the power-cycle command did not finish within {RESET_TIMEOUT_S:g} s: {command}") from err
    if done.returncode != 0:
        said = (done.stderr or done.stdout).strip().splitlines()[-1:] or [f"exit status {done.returncode}"]
        raise InfraError(f"the power-cycle command failed (exit {done.returncode}): {said[0]}; check "
                         "[power] reset_command in the board file")


def lost_checks(lost: Sequence[LostBatch]) -> list[Check]:
    """One error per module whose plan run the board did not survive (it was power-cycled after)."""
    return [Check(f"{name}.board_down", "modules", "error", "the board survives the module", "board went down",
                  f"{batch.error}; the board was power-cycled and the run went on with the next module")
            for batch in lost for name in batch.modules]


def remove_abandoned_work_dirs(root: Path) -> None:
    """Work directories ``run-<pid>-*`` of runs whose process is gone (killed before cleaning up)."""
    for stale in root.glob("run-*-*"):
        pid = stale.name.split("-")[1]
        if pid.isdigit() and not process_alive(int(pid)):
            shutil.rmtree(stale, ignore_errors=True)

