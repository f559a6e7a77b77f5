"""invoke tasks: thin wrappers over plain functions. The only place that turns errors into exit codes.

    invoke setup build deploy run [--target NAME] [--mem MiB] [--append "ARGS"] [--module X.ko ...]
    invoke run --board boards/NAME.toml [--module X.ko ...]   (a board that is up: SSH or serial console)
    invoke model --arch arm --kernel 6.1 --ram 1G [--cmdline "vmalloc=300M"] [--json]
    invoke check --bundle results/latest [--json FILE]
    invoke targets | invoke boards | invoke qa
"""

from __future__ import annotations

import json as jsonlib
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path
from typing import Any, TypeVar

from invoke import task
from invoke.exceptions import Exit

from kit.errors import KitError

REPO = Path(__file__).resolve().parent
T = TypeVar("T")

# `invoke build deploy run --target X`: invoke hands the flags to the last task only, so every task
# reads the run flags given anywhere on the command line (one run, one target).
RUN_FLAGS = ("--target", "--mem", "--append", "--module", "--kdir", "--image", "--dtb", "--timeout", "--results",
             "--board")


def _argv_flags(argv: list[str]) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for index, word in enumerate(argv):
        name, eq, value = word.partition("=")
        if name in RUN_FLAGS:
            if not eq:
                value = argv[index + 1] if index + 1 < len(argv) else ""
            found.setdefault(name, []).append(value)
    return found


def _flag(name: str, given: Any) -> Any:
    if given not in (None, "", [], ()):
        return given
    values = _argv_flags(sys.argv).get(name)
    if not values:
        return given
    return values if name == "--module" else values[-1]


def _log(line: str) -> None:
    print(line, flush=True)


@contextmanager
def _exit_codes() -> Iterator[None]:
    """One clear line and a non-zero exit for every error the kit raises on purpose."""
    try:
        yield
    except KitError as err:
        print(f"error: {err}", file=sys.stderr)
        raise Exit(code=err.exit_code) from None
    except Exit:
        raise
    except KeyboardInterrupt:
        print("error: interrupted (Ctrl-C)", file=sys.stderr)
        raise Exit(code=130) from None
    except Exception as err:  # a bug of the kit's: one line and "could not tell", not a traceback and exit 1
        print(f"error: internal error {type(err).__name__}: {err} (please report it; rerun with "
              "KMODKIT_TRACEBACK=1 for the traceback)", file=sys.stderr)
        if os.environ.get("KMODKIT_TRACEBACK"):
            raise
        raise Exit(code=3) from None


def _request(target: str | None, mem: str | None, append: str | None, module: list[str] | None,
             kdir: str | None, image: str | None, dtb: str | None, timeout: float | None,
             results: str | None, board: str | None = None) -> Any:
    from kbuild.targets import default_target_name, load_target
    from kit.boards import load_board
    from kit.errors import UserError
    from kit.request import RunRequest, parse_mem_mib

    board_value = _flag("--board", board)
    the_board = load_board(board_value) if board_value else None
    if the_board is not None and (_flag("--target", target) or _flag("--kdir", kdir)):
        raise UserError(f"--board {board_value} names its own target and kernel tree: drop --target and --kdir "
                        f"(or edit {the_board.path})")
    target = the_board.target if the_board else _flag("--target", target) or default_target_name()
    mem_value = _flag("--mem", mem)
    timeout_value = _flag("--timeout", timeout)
    modules = _flag("--module", module) or []
    kdir, image, dtb = _flag("--kdir", kdir), _flag("--image", image), _flag("--dtb", dtb)
    if the_board is not None and the_board.kdir is not None:
        kdir = str(the_board.kdir)
    results = _flag("--results", results)
    return RunRequest(
        target=load_target(target),
        mem_mib=parse_mem_mib(mem_value) if mem_value else None,
        append=_flag("--append", append) or "",
        user_modules=tuple(Path(m) for m in modules),  # as given: every message names it so
        kdir=Path(kdir) if kdir else None,
        image=Path(image) if image else None,
        dtb=Path(dtb) if dtb else None,
        **({"boot_timeout_s": float(timeout_value)} if timeout_value else {}),
        **({"results_root": Path(results).resolve()} if results else {}),
        **({"board": the_board, "plan_timeout_s": the_board.plan_timeout_s} if the_board else {}),
    )


@cache
def _session(request: Any) -> Any:
    from kit.session import RunSession

    return RunSession(request, _log)


def _memo(request: Any, step: Callable[[Any], T]) -> T:
    return step(_session(request))


RUN_HELP = {
    "target": "target name (invoke targets); default from kbuild/targets/DEFAULT.toml",
    "mem": "guest RAM in MiB (overrides the target)",
    "append": "extra kernel command line, e.g. vmalloc=300M",
    "module": "a prebuilt .ko, or a module source directory (built with Kbuild), to load and check too (repeatable)",
    "kdir": "a prepared kernel build tree instead of Debian's (needs --image)",
    "image": "the kernel image (zImage) for --kdir",
    "dtb": "a device tree blob for --kdir",
    "timeout": "seconds before a boot is declared hung",
    "results": "where the bundles go (default: results/ in the checkout)",
    "board": "a board that is up already: boards/NAME.toml or its name (invoke boards); SSH or serial",
}


@task
def targets(c: Any) -> None:
    """List the targets (* the default) and whether their kernel is in the cache."""
    from kbuild.kernels import cached_releases
    from kbuild.targets import default_target_name, load_target, target_names

    with _exit_codes():
        default, names = default_target_name(), target_names()
        width = max(len(name) for name in names)
        for name in names:
            target = load_target(name)
            cached = cached_releases(target)
            state = f"cached {cached[-1]}" if cached else "not fetched (invoke setup --target " + name + ")"
            print(f"{'*' if name == default else ' '} {name:{width}}  {state:36}  {target.description}")


@task
def boards(c: Any) -> None:
    """List the board files in boards/ (invoke run --board NAME)."""
    from kit.boards import BOARDS_DIR, board_files, load_board

    with _exit_codes():
        for path in board_files():
            board = load_board(str(path))
            print(f"  {board.name:16} {board.where:40} {board.description}")
        if not board_files():
            print(f"no board files in {BOARDS_DIR}")


@task(help={"target": RUN_HELP["target"], "all": "every target's kernel, and what the tests need (chromium)"})
def setup(c: Any, target: str | None = None, all: bool = False) -> None:
    """Install the host packages (apt-get) and fetch the kernel(s). Idempotent."""
    from kbuild.hostpkgs import TEST_PACKAGES, host_packages, install_command, missing_packages, update_command
    from kbuild.kernels import fetch_debian_kernel
    from kbuild.targets import default_target_name, load_target, target_names

    with _exit_codes():
        names = target_names() if all else [_flag("--target", target) or default_target_name()]
        chosen = [load_target(name) for name in names]
        wanted = [p for t in chosen for p in host_packages(t)] + (list(TEST_PACKAGES) if all else [])
        missing = missing_packages(list(dict.fromkeys(wanted)))
        if missing:
            if os.geteuid() != 0 and not shutil.which("sudo"):
                raise Exit(f"not root and no sudo: run as root: {' '.join(install_command(missing, 0))}", code=2)
            env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
            for command in (update_command(), install_command(missing)):
                _log("$ " + " ".join(command))
                subprocess.run(command, check=True, env=env)
        for one in chosen:
            tree = fetch_debian_kernel(one, log=_log)
            _log(f"{one.name}: kernel {tree.release} ({tree.version}) ready in {tree.kdir}")


@task(help=RUN_HELP, iterable=["module"])
def build(c: Any, target: str | None = None, mem: str | None = None, append: str | None = None,
          module: list[str] | None = None, kdir: str | None = None, image: str | None = None,
          dtb: str | None = None, timeout: float | None = None, results: str | None = None,
        board: str | None = None) -> None:
    """Fetch the kernel, render the test modules and build them with Kbuild (only what changed)."""
    with _exit_codes():
        request = _request(target, mem, append, module, kdir, image, dtb, timeout, results, board)
        built = _memo(request, lambda s: s.build())
        for item in built:
            _log(f"  {item.ko.relative_to(REPO) if item.ko.is_relative_to(REPO) else item.ko}"
                 f" ({'rebuilt' if item.rebuilt else 'up to date'})")


@task(help=RUN_HELP, iterable=["module"])
def deploy(c: Any, target: str | None = None, mem: str | None = None, append: str | None = None,
           module: list[str] | None = None, kdir: str | None = None, image: str | None = None,
           dtb: str | None = None, timeout: float | None = None, results: str | None = None,
        board: str | None = None) -> None:
    """Push the modules and the guest runner to the target (QEMU: into the initramfs)."""
    with _exit_codes():
        request = _request(target, mem, append, module, kdir, image, dtb, timeout, results, board)
        pushed = _memo(request, lambda s: s.deploy())
        _log(f"deployed {len(pushed)} files")


@task(help=RUN_HELP, iterable=["module"])
def run(c: Any, target: str | None = None, mem: str | None = None, append: str | None = None,
        module: list[str] | None = None, kdir: str | None = None, image: str | None = None,
        dtb: str | None = None, timeout: float | None = None, results: str | None = None,
        board: str | None = None) -> None:
    """Boot, run every test module, collect the bundle, verify it. Exit 0 only if every check passed."""
    from analysis.verify.report import family_summary, format_table, summary_line, worst_first

    with _exit_codes():
        request = _request(target, mem, append, module, kdir, image, dtb, timeout, results, board)
        outcome = _memo(request, lambda s: s.run())
        verdict = outcome.verdict
        not_passed = [check for check in worst_first(verdict.checks) if check.status != "pass"]
        if not_passed:
            print(format_table(not_passed))
        print(family_summary(verdict.checks), end="")
        for line in outcome.headroom:
            print(f"  {line}")
        print(summary_line(verdict.checks) + "  (every check: report.txt in the bundle; report.html: the map, "
              "the headroom, each rule)")
        if verdict.run_error:
            # bad input found only during the run (exit 2) reads like any bad input: "error: ..."
            print(f"{'error' if outcome.exit_code == 2 else 'run error'}: {verdict.run_error}", file=sys.stderr)
            if verdict.log_excerpt:
                print(verdict.log_excerpt, file=sys.stderr)
        print(f"bundle: {outcome.bundle_dir}  status: {verdict.status}")
        if outcome.exit_code:
            raise Exit(code=outcome.exit_code)


@task(help={**RUN_HELP, "iterations": "stop after this many runs (default: until Ctrl-C)"}, iterable=["module"])
def watch(c: Any, target: str | None = None, mem: str | None = None, append: str | None = None,
          module: list[str] | None = None, kdir: str | None = None, image: str | None = None,
          dtb: str | None = None, timeout: float | None = None, results: str | None = None,
          board: str | None = None, iterations: int = 0) -> None:
    """Boot once, run the suite, and run it again on the same guest after every change of a template, of a
    --module file or of a --module source tree: each verdict, and what newly fails or passes. Ctrl-C powers
    the guest off."""
    from kit.watch import Iteration, WatchLoop, suite_summary

    def report(it: Iteration) -> None:
        if it.error is not None:
            print(f"[{it.number}] build failed: {it.error}; waiting for the next change", flush=True)
            return
        if it.outcome is None:
            print(f"[{it.number}] no module changed (the .ko files are byte-identical): nothing to run", flush=True)
            return
        how = "fresh boot" if it.fresh_boot else "warm"
        print(f"[{it.number}] {suite_summary(it.checks)}  {it.elapsed_s:.2f} s ({how}, ran {', '.join(it.ran)}), "
              f"bundle {it.outcome.bundle_dir}", flush=True)
        for label, ids in (("newly failing", it.newly_failing), ("newly passing", it.newly_passing)):
            if ids:
                print(f"    {label}: {', '.join(ids[:20])}{' ...' if len(ids) > 20 else ''}", flush=True)
        if it.outcome.verdict is not None and it.outcome.verdict.run_error:
            print(f"    run error: {it.outcome.verdict.run_error}", flush=True)
        if it.restarts_next:
            print("    the guest will be booted afresh for the next run", flush=True)

    with _exit_codes():
        request = _request(target, mem, append, module, kdir, image, dtb, timeout, results, board)
        loop = WatchLoop(request, lambda _line: None)
        try:
            trees = sum(1 for path in request.user_modules if path.is_dir())
            print(f"watching {request.templates_dir}, {len(request.user_modules) - trees} --module file(s) and "
                  f"{trees} --module source tree(s); Ctrl-C to stop", flush=True)
            loop.watch(report, keep_going=lambda: not iterations or loop.iterations < iterations)
        finally:
            loop.close()


@task(help={
    "arch": "arm (full model); others are not modelled",
    "kernel": "kernel version as people type it: 3.18, 6.1, 6.1.0-50-armmp",
    "ram": "RAM size: 1G, 1024M, 0x40000000",
    "ram_base": "physical base of RAM (default 0x40000000, QEMU virt)",
    "cmdline": "kernel command line (vmalloc=, mem=)",
    "page_offset": "PAGE_OFFSET (VMSPLIT), e.g. 0x80000000",
    "config": "CONFIG_X=y (repeatable)",
    "json": "print a JSON object instead of the kernel's layout banner",
    "vmalloc_end": "a kernel before 3.3: the machine's VMALLOC_END (mach/vmalloc.h), e.g. 0xf6000000",
}, iterable=["config"])
def model(c: Any, kernel: str, ram: str, arch: str = "arm", ram_base: str | None = None, cmdline: str = "",
          page_offset: str | None = None, config: list[str] | None = None, json: bool = False,
          vmalloc_end: str | None = None) -> None:
    """Print the predicted virtual memory layout."""
    from analysis.model.banner import format_layout_banner, layout_json, model_layout

    with _exit_codes():
        layout = model_layout(arch, kernel, ram, ram_base, cmdline, page_offset, config or [], vmalloc_end)
        print(jsonlib.dumps(layout_json(layout), indent=2) if json else format_layout_banner(layout))


@task(help={"bundle": "bundle directory (a run's results/<target>/<id>, or files copied off a board), or one "
                      "pasted capture file",
            "json": "write the verdict JSON here",
            "report": "write the bring-up report here (default: report.html in the bundle directory, or "
                      "NAME.report.html beside a pasted capture file)",
            "kernel": "what the capture lacks: the kernel version (e.g. 4.9), as invoke model takes it",
            "ram": "the RAM size (64M, 1G)", "ram_base": "the RAM's physical base (default 0 with --ram)",
            "page_offset": "PAGE_OFFSET (VMSPLIT), e.g. 0x80000000", "config": "CONFIG_X=y (repeatable)",
            "cmdline": "the kernel command line (vmalloc=, mem=)"}, iterable=["config"])
def check(c: Any, bundle: str, json: str | None = None, report: str | None = None, kernel: str | None = None,
          ram: str | None = None, ram_base: str | None = None, page_offset: str | None = None,
          config: list[str] | None = None, cmdline: str | None = None) -> None:
    """Check a bundle offline. Exit 0 when consistent, 1 when a check fails, 2 when the input is unusable,
    3 when nothing in it could be checked."""
    from analysis.model.banner import stated_inputs
    from analysis.report import headroom_lines, verdict_headroom, write_report
    from analysis.verify.report import family_summary, format_table, summary_line, worst_first
    from analysis.verify.verify import verify_bundle
    from kit.errors import CouldNotTell
    from kit.verdict import Verdict, check_output_path, write_verdict_json

    with _exit_codes():
        stated = stated_inputs(kernel, ram, ram_base, cmdline, page_offset, config or [])
        given = Path(bundle)  # a bundle directory, or one pasted capture: its report beside it
        default = given / "report.html" if not given.is_file() else given.with_name(given.stem + ".report.html")
        report_path = Path(report) if report else default
        for path in ([Path(json)] if json else []) + [report_path]:
            check_output_path(path)  # a bad --json or --report (or a read-only bundle) fails at once
        result = verify_bundle(Path(bundle), stated)
        ctx = result.context
        verdict = Verdict(
            target=str(result.bundle.facts.get("name", Path(bundle).name)),
            arch=ctx.arch or "unknown",
            release=ctx.release,
            version=".".join(map(str, ctx.version)) if ctx.version else None,
            checks=result.checks,
        )
        print(format_table(worst_first(result.checks)))
        print(family_summary(result.checks), end="")
        for line in headroom_lines(verdict_headroom(result)):
            print(f"  {line}")
        print(summary_line(result.checks))
        if json:
            write_verdict_json(verdict, Path(json))
        write_report(result, report_path)
        print(f"report: {report_path}")
        if not any(check.status != "skip" for check in result.checks):
            reasons = "; ".join(dict.fromkeys(check.detail for check in result.checks))
            raise CouldNotTell(f"could not tell: nothing in {bundle} could be checked ({reasons or 'no checks'}); "
                               "give what the capture lacks: --kernel, --ram, --ram-base, --page-offset, --config, "
                               "--cmdline")
        if verdict.summary["fail"] or verdict.summary["error"]:
            raise Exit(code=1)


@task
def qa(c: Any) -> None:
    """The gate: ruff, mypy --strict, and the tests."""
    c.run("ruff check .", pty=False)
    c.run("mypy", pty=False)
    c.run(f"{sys.executable} -m pytest -q", pty=False)
