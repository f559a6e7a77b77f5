"""The run: kernel -> render -> build -> deploy and collect -> verify -> verdict. Each phase is timed.

Every phase takes plain inputs and returns a result; errors are raised (kit.errors) and only tasks.py
turns them into exit codes. A run that fails midway still writes its partial bundle and a verdict
with status ``error``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path

from analysis.model.banner import QEMU_VIRT_RAM_BASE
from analysis.parsers.ktap import extract_module_ktap
from analysis.report import headroom_lines, verdict_headroom, write_report
from analysis.verify.check import Check
from analysis.verify.report import format_table, worst_first
from analysis.verify.verify import BundleVerdict
from kbuild.kernels import KernelTree, fetch_busybox, fetch_debian_kernel, local_kernel_tree
from kbuild.render import default_specs, render_module, template_environment
from kit.boards import Board
from kit.errors import InfraError, KitError, ParseError, UserError
from kit.request import RunRequest
from kit.user_modules import UserModule, check_user_modules, check_user_vermagic, stage_user_modules
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
    error: KitError | None = None  # what stopped the run (its class gives the exit code), None if it ran
    headroom: tuple[str, ...] = ()  # report.html's headroom in a few lines, for the terminal

    @property
    def exit_code(self) -> int:
        """0 every check passed, 1 a check failed, 2 bad input found during the run (a board's host key,
        a refused login), 3 the kit could not tell (or the class of a foreign run error)."""
        if self.error is not None:
            return self.error.exit_code
        assert self.verdict is not None
        return {"pass": 0, "fail": 1}.get(self.verdict.status, 3)


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
    """Debian's kernel of the target, or the user's own prepared tree (with Debian's static busybox); a
    board's own tree is only built against (the board boots its kernel itself)."""
    if request.board is not None and request.kdir is not None:
        return local_kernel_tree(request.kdir, None)
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


def ship_user_modules(request: RunRequest, tree: KernelTree,
                      modules: Sequence[UserModule] | None = None) -> list[Path]:
    """A user's modules as the guest loads them: uncompressed (.ko.xz/.gz/.zst as Debian installs them),
    named after the module's own ``name=`` (the name /proc/modules shows), vermagic checked.

    ``modules``: what ``check_user_modules(request)`` returned before the run (read again when None).
    Every error names the user's path, never the staged copy."""
    checked = list(modules) if modules is not None else check_user_modules(request)
    check_user_vermagic(checked, tree)
    return stage_user_modules(checked, request.generated_root / request.target.name / "ship-user")


def write_ktap_files(bundle_dir: Path, modules: Sequence[str]) -> list[Path]:
    """``ktap/M.ktap`` for every module with a ``kit: begin M`` marker in the bundle's ``dmesg.txt``.

    A module never begun (the guest died before it) gets no file: missing means "not checked".
    """
    dmesg_path = bundle_dir / "dmesg.txt"
    if not dmesg_path.is_file():
        return []
    dmesg = dmesg_path.read_text(errors="replace")
    written = []
    for module in modules:
        try:
            ktap = extract_module_ktap(dmesg, module, str(dmesg_path))
        except ParseError:
            continue
        path = bundle_dir / "ktap" / f"{module}.ktap"
        try:
            path.parent.mkdir(exist_ok=True)
            path.write_text(ktap)
        except OSError as err:
            raise bundle_write_error(bundle_dir, err) from err
        written.append(path)
    return written


def new_bundle_dir(request: RunRequest) -> Path:
    """A new ``results/<target>/<run-id>/`` (unique even for runs started at the same instant), and
    ``results/latest`` pointing at it, replaced atomically (a reader never finds it missing)."""
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S-%f")
    parent = request.results_root / request.run_name
    try:
        parent.mkdir(parents=True, exist_ok=True)
        bundle = Path(tempfile.mkdtemp(prefix=f"{stamp}-", dir=parent))
        bundle.chmod(0o755)
        latest = request.results_root / "latest"
        link = latest.with_name(f".latest-{os.getpid()}-{bundle.name}")
        link.symlink_to(bundle.relative_to(request.results_root))
        os.replace(link, latest)
    except OSError as err:
        raise InfraError(f"cannot create a bundle under {request.results_root}: {err.strerror or err}; "
                         "free some space or make it writable") from err
    return bundle


def write_target_facts(request: RunRequest, tree: KernelTree, cmdline: str, bundle: Path) -> None:
    """target.toml: the facts the offline checker cannot read off the guest, about the kernel that ran.

    A Debian kernel: its release and version, and the target's Debian series and flavour. The user's
    own tree (--kdir): its release and version as the tree has them, series = their major.minor, where
    it came from (``source``, ``image``, ``dtb``, ``config``) and, when the release has one, its local
    version (``localversion``); no Debian flavour is claimed for it. ``config`` is the tree's .config.
    """
    target = request.target
    lines = [
        f"name = {toml_string(request.run_name)}",
        f"arch = {toml_string(target.arch)}",
        *(_machine_facts(request, cmdline) if request.board is None else _board_facts(request.board)),
        "",
        "[kernel]",
        f"release = {toml_string(tree.release)}",
        f"version = {toml_string(tree.version)}",
    ]
    if request.kdir is None:
        lines += [f"series = {toml_string(target.kernel.series)}",
                  f"flavour = {toml_string(target.kernel.flavour)}"]
    else:
        local = local_version(tree.release, tree.version)
        lines += [f"series = {toml_string(kernel_series(tree.version))}",
                  f"source = {toml_string(str(tree.kdir))}",
                  *([f"image = {toml_string(str(tree.image))}"] if tree.image is not None else []),
                  *([f"dtb = {toml_string(str(tree.dtb))}"] if tree.dtb is not None else []),
                  f"config = {toml_string(str(tree.config))}",
                  *([f"localversion = {toml_string(local)}"] if local else [])]
    try:
        (bundle / "target.toml").write_text("\n".join(lines) + "\n", encoding="utf-8")
        config = request.board.facts.config if request.board is not None else None
        shutil.copyfile(config or tree.config, bundle / "config")
    except OSError as err:
        raise bundle_write_error(bundle, err) from err


def _machine_facts(request: RunRequest, cmdline: str) -> list[str]:
    """The QEMU guest's facts: the kit chose its command line, RAM size and (virt's) RAM base."""
    return ['transport = "qemu"', f"cmdline = {toml_string(cmdline)}", f"mem_mib = {request.memory_mib}",
            f"ram_base = 0x{QEMU_VIRT_RAM_BASE:08x}"]


def _board_facts(board: Board) -> list[str]:
    """A board's: how it was reached and what its file says; its command line and RAM are the board's own
    (cmdline.txt, iomem.txt in the bundle) unless the file gives the RAM."""
    lines = [f"transport = {toml_string(board.transport)}", f"board = {toml_string(str(board.path))}"]
    if board.facts.ram_base is not None and board.facts.mem_mib is not None:
        lines += [f"mem_mib = {board.facts.mem_mib}", f"ram_base = 0x{board.facts.ram_base:08x}"]
    return lines


def bundle_write_error(bundle: Path, err: OSError) -> InfraError:
    return InfraError(f"cannot write the bundle {bundle}: {err.strerror or err}; free some space or give "
                      "another --results")


def toml_string(text: str) -> str:
    """A TOML basic string: JSON's escapes are TOML's, plus DEL (TOML forbids it raw); a path's
    undecodable bytes (surrogate escapes) become U+FFFD (TOML strings are Unicode scalar values)."""
    clean = re.sub("[\ud800-\udfff]", "\ufffd", text)
    return json.dumps(clean, ensure_ascii=False).replace("\x7f", "\\u007f")


def kernel_series(version: str) -> str:
    """``major.minor`` of a kernel version (``6.1.192`` -> ``6.1``); the version itself when it has no dot."""
    match = re.match(r"\d+\.\d+", version)
    return match.group(0) if match else version


def local_version(release: str, version: str) -> str:
    """What the release adds after the kernel's version: ``-57-armmp`` of ``6.1.0-57-armmp`` (Debian's ABI
    and flavour), ``-myboard+`` of ``6.6.12-myboard+``; empty when the release is the bare version."""
    if release.startswith(version) and not release[len(version):][:1].isdigit():
        return release[len(version):]
    match = re.match(r"\d+\.\d+(\.\d+)?", release)
    return release[match.end():] if match else release


def guest_cmdline(request: RunRequest) -> str:
    return " ".join(part for part in (request.target.qemu.append, request.append) if part)


def excerpt_of(err: KitError) -> str | None:
    text = getattr(err, "excerpt", "")
    return text if isinstance(text, str) and text else None


def finish(outcome: RunOutcome, verdict: Verdict, checked: BundleVerdict | None = None) -> RunOutcome:
    """The verdict into the bundle: verdict.json, junit.xml, report.txt, and (with ``checked``, the bundle
    as verified) the bring-up report.html with every check of ``verdict``; its headroom lines on ``outcome``."""
    outcome.verdict = verdict
    if outcome.bundle_dir is not None:
        write_verdict_json(verdict, outcome.bundle_dir / "verdict.json")
        write_junit(verdict, outcome.bundle_dir / "junit.xml")
        (outcome.bundle_dir / "report.txt").write_text(format_table(worst_first(verdict.checks)))
        if checked is not None:
            final = replace(checked, checks=list(verdict.checks))
            write_report(final, outcome.bundle_dir / "report.html")
            outcome.headroom = tuple(headroom_lines(verdict_headroom(final)))
    return outcome


def error_verdict(request: RunRequest, tree: KernelTree | None, err: KitError,
                  checks: Sequence[Check] = (), bundle: Path | None = None) -> Verdict:
    return Verdict(
        target=request.run_name,
        arch=request.target.arch,
        release=tree.release if tree else None,
        version=tree.version if tree else None,
        checks=list(checks),
        run_error=error_text(err, bundle),
        log_excerpt=excerpt_of(err),
    )


def error_text(err: KitError, bundle: Path | None) -> str:
    """The error's line, naming the bundle's boot.log (the transport's own console log is a work file)."""
    what = getattr(err, "what", None)
    if isinstance(what, str) and bundle is not None and (bundle / "boot.log").is_file():
        return f"{what} (console log: {bundle / 'boot.log'})"
    return str(err)
