"""One collection run: push the modules and the guest plan, boot, run the plan, fetch the bundle.

The result is a bundle directory (docs/contracts.md section 2). On any failure the files received so
far are still written (boot.log, ko/, and whatever the guest output directory held if its shell
still answers), the guest is powered off, and the error is re-raised with a note naming the
partial bundle (``err.partial_bundle`` on a DeployError).
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from deploy.base import Transport
from deploy.bundle_io import (
    copy_console_log,
    copy_modules,
    guest_output_names,
    module_name,
    write_guest_files,
)
from deploy.errors import CommandTimeout, DeployError, GuestCrashed, GuestOutputRefused, TransportLost, WrongKernel
from deploy.initramfs import GUEST_DIR
from kit.errors import InfraError, KitError, UserError

QEMU_GUEST_ROOT = "/kit"  # the kit's own initramfs; a board gets its work dir (/tmp/kmodkit by default)
T = TypeVar("T")
PLAN_BASE_TIMEOUT_S = 60.0
PLAN_TIMEOUT_PER_MODULE_S = 60.0
INIT_WAIT_S = 20  # how long the clean-up waits for a module still in its init before unloading it
LEFTOVER_TIMEOUT_S = 30.0 + INIT_WAIT_S  # the clean-up command as a whole


@dataclass(frozen=True)
class LostBatch:
    """Modules whose plan run the board did not survive (it was power-cycled, the run went on)."""

    modules: tuple[str, ...]
    error: str


@dataclass(frozen=True)
class CollectResult:
    """A complete bundle: where, which files, how long each phase took, and what a power-cycle lost."""

    bundle_dir: Path
    files: tuple[Path, ...]
    boot_s: float
    plan_s: float
    fetch_s: float
    total_s: float
    lost: tuple[LostBatch, ...] = ()


# What a board does not survive: the power-cycle command (when the board file has one) brings it back.
BOARD_DOWN = (GuestCrashed, TransportLost, CommandTimeout)


@dataclass(frozen=True)
class GuestPaths:
    """Where the plan, the modules and the output live on the target: all under one ``root``."""

    root: str = QEMU_GUEST_ROOT

    @property
    def plan(self) -> str:
        return f"{self.root}/kitrun.sh"

    @property
    def modules(self) -> str:
        return f"{self.root}/modules"

    @property
    def out(self) -> str:
        return f"{self.root}/out"


def guest_files(modules: Sequence[Path], paths: GuestPaths = GuestPaths()) -> dict[str, Path]:
    names = [module_name(ko) for ko in modules]
    if len(set(names)) != len(names):
        raise UserError(f"module names must be unique: {', '.join(names)}")
    files = {f"{paths.modules}/{ko.name}": ko for ko in modules}
    files[paths.plan] = GUEST_DIR / "kitrun.sh"
    return files


def plan_command(modules: Sequence[Path], stacks: Sequence[Sequence[str]] = (),
                 paths: GuestPaths = GuestPaths()) -> str:
    """The guest plan's command: each module alone, in order, except the driver ``stacks`` (names in
    dependency order), each loaded as one group where its first member comes (guest/kitrun.sh)."""
    names = [module_name(ko) for ko in modules]
    grouped = {name: tuple(stack) for stack in stacks if set(stack) & set(names) for name in stack}
    missing = set(grouped) - set(names)  # a stack split over two plan runs could not stay loaded
    if missing:
        raise UserError(f"driver stack members not among the modules to load: {', '.join(sorted(missing))}")
    groups = [",".join(grouped.get(name, (name,))) for name in names if grouped.get(name, (name,))[0] == name]
    return f"sh {paths.plan} {paths.out} {paths.modules} {' '.join(groups)}"


STILL_LOADED = "KIT-STILL-LOADED"


def unload_leftovers_command(modules: Sequence[Path], paths: GuestPaths) -> str:
    """Board shell code that undoes a plan cut short (a timeout, Ctrl-C): stop the plan, wait a while for
    a module still in its init (``Loading`` in /proc/modules), unload every one of ``modules`` still
    loaded, the last loaded first, and print ``KIT-STILL-LOADED M`` for any that stays.
    ``[k]itrun``: the pattern does not match this command's own command line."""
    names = " ".join(module_name(ko).replace("-", "_") for ko in reversed(modules))
    plan = paths.plan.replace("kitrun", "[k]itrun")
    loading = f"grep -q \"^$m .* Loading\" /proc/modules && [ $i -lt {INIT_WAIT_S} ]"
    return (f"pkill -f 'sh {plan}'; for m in {names}; do i=0; "
            f"while {loading}; do sleep 1; i=$((i+1)); done; "
            f"grep -q \"^$m \" /proc/modules && rmmod \"$m\"; grep -q \"^$m \" /proc/modules && "
            f"echo \"{STILL_LOADED} $m\"; done; true")


def collect_bundle(transport: Transport, modules: Sequence[Path], bundle_dir: Path,
                   log: Callable[[str], None], plan_timeout_s: float | None = None,
                   stacks: Sequence[Sequence[str]] = (), batches: Sequence[Sequence[Path]] = (),
                   paths: GuestPaths = GuestPaths(), kernel_release: str | None = None,
                   recover: Callable[[], None] | None = None,
                   after_batch: Callable[[Path], None] | None = None) -> CollectResult:
    """Boot ``transport`` with ``modules``, run the plan, and write the bundle into ``bundle_dir``.

    ``plan_timeout_s`` bounds each run of the guest plan (default: a base plus a minute per module);
    ``stacks``: driver stacks (module names in dependency order) loaded together (plan_command);
    ``batches``: the modules split into plan runs, each fetched before the next starts, so that what
    an earlier batch measured is kept when a later one kills the guest (default: one batch);
    ``paths``: where on the target (QEMU: /kit in the initramfs; a board: its work dir, removed at the end).
    A target that stays up (a board) gets its leftover kit modules unloaded before the transport closes.
    ``kernel_release``: what ``uname -r`` must say on the target (the modules' vermagic), checked before
    anything is loaded (a board may run another kernel than the tree the modules were built against).
    ``recover``: brings a board back after a batch it did not survive (BOARD_DOWN: power-cycle and
    reattach); that batch is reported in ``CollectResult.lost`` and the next one runs. ``after_batch``:
    called with the bundle after each batch's files are written (the pipeline cuts the KTAP there, before
    a power-cycle's new boot replaces dmesg.txt).
    """
    if not modules:
        raise UserError("no modules to load: build them first")
    start = time.monotonic()
    bundle_dir.mkdir(parents=True, exist_ok=True)
    files: list[Path] = copy_modules(bundle_dir, modules)
    lost: list[LostBatch] = []
    phase = _Phases(log)
    try:
        transport.push(guest_files(modules, paths))
        phase.run("boot", transport.boot)
        if kernel_release is not None:
            check_kernel_release(transport, kernel_release)
        for batch in batches or [modules]:
            timeout = plan_timeout_s or PLAN_BASE_TIMEOUT_S + PLAN_TIMEOUT_PER_MODULE_S * len(batch)
            try:
                files += _run_batch(transport, batch, stacks, paths, timeout, phase, bundle_dir, modules, log)
            except BOARD_DOWN as err:
                if recover is None:
                    raise
                lost.append(LostBatch(tuple(module_name(ko) for ko in batch), str(err)))
                log(f"the board went down during {', '.join(lost[-1].modules)}: {err}; power-cycling it")
                phase.run("power-cycle", recover)
                transport.push(guest_files(modules, paths))
                if kernel_release is not None:
                    check_kernel_release(transport, kernel_release)
            if after_batch is not None:
                after_batch(bundle_dir)
    except KitError as err:
        if isinstance(err, CommandTimeout) and not transport.stays_up:
            transport.abort()  # the guest shell is busy (or QEMU stopped): no graceful poweroff through it
        files += _salvage(transport, err, bundle_dir, modules, log, paths)
        _mark_partial(err, bundle_dir)
        _unload_leftovers(transport, modules, log, paths, err)
        raise
    except BaseException:
        if not transport.stays_up:
            transport.abort()  # Ctrl-C or a host-side bug: no graceful shutdown through a busy console
        _unload_leftovers(transport, modules, log, paths)  # a board: undo the plan (bounded), then go
        raise
    else:
        if not _every_module_unloaded(bundle_dir, modules):
            _unload_leftovers(transport, modules, log, paths)
    finally:
        transport.power_off()  # a no-op after abort(); a board: removes what the kit put there
        files.append(copy_console_log(transport.console_log, bundle_dir))
    total = time.monotonic() - start
    log(f"bundle {bundle_dir}: {len(files)} files in {total:.1f} s")
    return CollectResult(bundle_dir, tuple(files), phase.times.get("boot", 0.0), phase.times.get("plan", 0.0),
                         phase.times.get("fetch", 0.0), total, tuple(lost))


def _run_batch(transport: Transport, batch: Sequence[Path], stacks: Sequence[Sequence[str]], paths: GuestPaths,
               timeout: float, phase: _Phases, bundle_dir: Path, modules: Sequence[Path],
               log: Callable[[str], None]) -> list[Path]:
    """One plan run over ``batch``, then its output fetched into the bundle."""
    command = plan_command(batch, stacks, paths)
    result = phase.run("plan", functools.partial(transport.run, command, timeout))
    if result.exit_status != 0:
        raise InfraError(f"the guest plan failed (exit {result.exit_status}): {result.output.strip()[:300]}")
    return _write_guest_output(phase.run("fetch", lambda: transport.fetch(paths.out)), bundle_dir, modules, log,
                               refuse=True)


class _Phases:
    """Times each phase and logs it."""

    def __init__(self, log: Callable[[str], None]) -> None:
        self.log = log
        self.times: dict[str, float] = {}

    def run(self, name: str, action: Callable[[], T]) -> T:
        start = time.monotonic()
        value = action()
        elapsed = time.monotonic() - start
        self.times[name] = self.times.get(name, 0.0) + elapsed
        self.log(f"{name}: {elapsed:.2f} s")
        return value


def check_kernel_release(transport: Transport, expected: str) -> None:
    result = transport.run("uname -r", 30.0)
    running = result.output.strip()
    if result.exit_status != 0 or running != expected:
        raise WrongKernel(f"the board runs kernel {running or '(uname -r failed)'}, the modules are built for "
                          f"{expected}: set the board file's target (or kdir, the board's own kernel tree) to "
                          "the kernel it runs")


def _every_module_unloaded(bundle_dir: Path, modules: Sequence[Path]) -> bool:
    """The plan says it unloaded every module it loaded (status.txt: ``M insmod=0 rmmod=0`` for each): no
    command is needed to look for leftovers (one console round trip less per run on a warm target)."""
    try:
        lines = set((bundle_dir / "status.txt").read_text().splitlines())
    except OSError:
        return False
    return all(f"{module_name(ko)} insmod=0 rmmod=0" in lines for ko in modules)


def _unload_leftovers(transport: Transport, modules: Sequence[Path], log: Callable[[str], None],
                      paths: GuestPaths, error: KitError | None = None) -> None:
    """On a target that stays up, unload what the plan left loaded (nothing, when it finished). What
    cannot be unloaded (a module stuck in its init) is logged and noted on the run's ``error``."""
    if not transport.stays_up:
        return
    try:
        result = transport.run(unload_leftovers_command(modules, paths), LEFTOVER_TIMEOUT_S)
    except KitError as err:
        stuck = f"could not check the board for kit modules left loaded: {err}"
    else:
        names = [line.split()[1] for line in result.output.splitlines() if line.startswith(STILL_LOADED + " ")]
        if not names:
            return
        stuck = (f"kit module(s) still loaded on the board, stuck in their init or in use: {', '.join(names)}; "
                 "reboot the board to remove them")
    log(stuck)
    if error is not None:
        error.add_note(stuck)


def _salvage(transport: Transport, err: KitError, bundle_dir: Path, modules: Sequence[Path],
             log: Callable[[str], None], paths: GuestPaths) -> list[Path]:
    """Fetch what the guest wrote so far, unless its shell is gone or busy (crash, timeout)."""
    if isinstance(err, GuestCrashed | TransportLost | CommandTimeout | GuestOutputRefused | UserError):
        return []
    try:
        files = transport.fetch(paths.out)
    except KitError as again:
        log(f"could not fetch the partial output: {again}")
        return []
    return _write_guest_output(files, bundle_dir, modules, log, refuse=False)


def _write_guest_output(files: Mapping[str, bytes], bundle_dir: Path, modules: Sequence[Path],
                        log: Callable[[str], None], refuse: bool) -> list[Path]:
    """The guest's files that its plan writes; the rest is refused:
    an error when ``refuse`` (a complete fetch), a log line when salvaging a partial one."""
    names = [module_name(ko) for ko in modules]
    written, refused = write_guest_files(bundle_dir, files, guest_output_names(names))
    if refused:
        shown = ", ".join(repr(name[:80]) for name in refused[:5]) + (" ..." if len(refused) > 5 else "")
        message = f"the guest sent {len(refused)} file(s) its plan does not write, refused: {shown}"
        if refuse:
            error = GuestOutputRefused(message)
            error.add_note(f"{len(written)} expected files kept")
            raise error
        log(message)
    return written


def _mark_partial(err: KitError, bundle_dir: Path) -> None:
    if isinstance(err, DeployError):
        err.partial_bundle = bundle_dir
    err.add_note(f"partial bundle kept in {bundle_dir} (boot.log has the console)")
