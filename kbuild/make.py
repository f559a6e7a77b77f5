"""Build out-of-tree modules with Kbuild, in parallel, and check a module's vermagic against a tree.

``make -C KDIR M=DIR ARCH=.. CROSS_COMPILE=.. CC=.. modules`` per module directory (threads, one
``make`` each). make's own dependency tracking decides what to recompile; in addition ``make`` is
not even started when every ``.ko`` is newer than every source of its directory and the last build
used the same command (saves ~0.5 s per module).
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from elftools.common.exceptions import ELFError
from elftools.elf.elffile import ELFFile

from kbuild.kernels import KernelTree
from kbuild.toolchain import Log, Toolchain, no_log, run, shell_line
from kit.errors import InfraError, ParseError, UserError

STAMP = ".kmodkit-build"  # the make command of the last successful build, in the module directory
# Files Kbuild writes into M=DIR; everything else in the directory counts as a source.
BUILD_OUTPUT_SUFFIXES = (".o", ".ko", ".mod", ".mod.c", ".cmd", ".order", ".symvers", ".a")
MAX_ERROR_LINES = 8
V = TypeVar("V")


@dataclass(frozen=True)
class BuiltModule:
    """One module after ``build_modules``: where its .ko is and whether make produced a new one."""

    name: str
    ko: Path
    rebuilt: bool
    elapsed_s: float


def build_modules(
    tree: KernelTree,
    toolchain: Toolchain,
    module_dirs: Sequence[Path],
    jobs: int = 2,
    log: Log = no_log,
) -> list[BuiltModule]:
    """Build every module directory (``jobs`` makes at a time); results in ``module_dirs`` order.

    A module that does not compile raises UserError with the compiler's ``error:`` lines; when
    several fail, all of them are reported in one error.
    """
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        futures = [pool.submit(build_module_dir, tree, toolchain, d, log) for d in module_dirs]
    built: list[BuiltModule] = []
    failures: list[str] = []
    for future in futures:
        error = future.exception()
        if isinstance(error, UserError):
            failures.append(str(error))
        elif error is not None:
            raise error
        else:
            built.extend(future.result())
    if failures:
        raise UserError(" || ".join(failures))
    return built


def _make_command(tree: KernelTree, toolchain: Toolchain, module_dir: Path) -> list[str]:
    return ["make", "-C", str(tree.kdir), f"M={module_dir}", *toolchain.make_variables(), "modules"]


def is_up_to_date(tree: KernelTree, toolchain: Toolchain, module_dir: Path) -> bool:
    """True when build_module_dir would not run make (same command, every .ko newer than its sources)."""
    module_dir = module_dir.resolve()
    kos = [module_dir / f"{name}.ko" for name in module_names(module_dir)]
    return _up_to_date(module_dir, kos, shell_line(_make_command(tree, toolchain, module_dir)) + "\n")


def strip_debug(ko: Path, toolchain: Toolchain, dest_dir: Path, log: Log = no_log) -> Path:
    """``<cross>strip --strip-debug`` into ``dest_dir`` (redone only when ``ko`` is newer).

    Debug sections are not SHF_ALLOC: the loaded layout, the symbol table and /proc/modules are the
    same, and the file is ~12x smaller to ship (it goes through a serial console when pushed late).
    """
    dest_dir.mkdir(parents=True, exist_ok=True)
    out = dest_dir / ko.name
    if not out.is_file() or _mtime(out) < _mtime(ko):
        run([f"{toolchain.cross_compile}strip", "--strip-debug", "-o", str(out), str(ko)], log)
    return out


def build_module_dir(
    tree: KernelTree, toolchain: Toolchain, module_dir: Path, log: Log = no_log
) -> list[BuiltModule]:
    """Build the modules (``obj-m``) of one directory against ``tree``."""
    module_dir = module_dir.resolve()
    names = module_names(module_dir)
    kos = [module_dir / f"{name}.ko" for name in names]
    cmd = _make_command(tree, toolchain, module_dir)
    stamp_text = shell_line(cmd) + "\n"
    if _up_to_date(module_dir, kos, stamp_text):
        log(f"# up to date, make not run: {' '.join(str(k) for k in kos)}")
        pairs = zip(names, kos, strict=True)
        return [BuiltModule(name, ko, rebuilt=False, elapsed_s=0.0) for name, ko in pairs]
    before = {ko: _mtime(ko) for ko in kos}
    started = time.monotonic()
    result = run(cmd, log, check=False, env=toolchain.make_environment())
    elapsed = time.monotonic() - started
    if result.returncode != 0:
        raise UserError(compile_error_message(", ".join(names), tree.release, result.stdout + result.stderr))
    missing = [str(ko) for ko in kos if not ko.is_file()]
    if missing:
        raise InfraError(f"make succeeded but did not produce {', '.join(missing)}; run `{shell_line(cmd)}`")
    (module_dir / STAMP).write_text(stamp_text)
    return [
        BuiltModule(name, ko, rebuilt=_mtime(ko) != before[ko], elapsed_s=elapsed)
        for name, ko in zip(names, kos, strict=True)
    ]


def module_names(module_dir: Path) -> list[str]:
    """The ``obj-m`` modules of a directory, from its Kbuild (or Makefile)."""
    for file_name in ("Kbuild", "Makefile"):
        path = module_dir / file_name
        if path.is_file():
            lines = re.findall(r"^\s*obj-m\s*[:+]?=\s*(.*)$", path.read_text(), re.M)
            words = [word for line in lines for word in line.split()]
            names = [word.removesuffix(".o") for word in words if word.endswith(".o")]
            if names:
                return names
    raise UserError(f"{module_dir}: no `obj-m += <name>.o` in a Kbuild or Makefile: not a module directory")


def compile_error_message(name: str, release: str, output: str) -> str:
    """One line: which module failed, and the compiler's ``file:line: error:`` lines (or make's tail)."""
    errors = [
        line.strip()
        for line in output.splitlines()
        if re.search(r"(^|\s)(fatal )?error: ", line) or line.startswith(("ERROR:", "make: ***"))
    ]
    errors = [e for e in errors if not e.startswith("make")] or errors
    if not errors:
        errors = [line.strip() for line in output.splitlines() if line.strip()][-3:]
    shown = "; ".join(dict.fromkeys(errors[:MAX_ERROR_LINES]))
    more = f" (+{len(errors) - MAX_ERROR_LINES} more)" if len(errors) > MAX_ERROR_LINES else ""
    return f"module {name} does not compile against {release}: {shown}{more}"


def _up_to_date(module_dir: Path, kos: list[Path], stamp_text: str) -> bool:
    stamp = module_dir / STAMP
    if not stamp.is_file() or stamp.read_text() != stamp_text or not all(ko.is_file() for ko in kos):
        return False
    newest_source = max((_mtime(p) for p in source_files(module_dir)), default=0.0)
    return all(_mtime(ko) > newest_source for ko in kos)


def source_files(module_dir: Path) -> list[Path]:
    """What a module directory's build reads: every file but Kbuild's output and hidden files."""
    return [
        p
        for p in module_dir.rglob("*")
        if p.is_file()
        and not any(part.startswith(".") for part in p.relative_to(module_dir).parts)
        and not p.name.endswith(BUILD_OUTPUT_SUFFIXES)
    ]


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except FileNotFoundError:
        return 0.0


# ---------------------------------------------------------------------------------------------
# vermagic


def modinfo_field(ko: Path, field: str) -> str:
    """One ``field=`` value of a module's ``.modinfo`` section (``vermagic``, ``name``...)."""
    try:
        with ko.open("rb") as f:
            section = ELFFile(f).get_section_by_name(".modinfo")
            data = section.data() if section is not None else None
    except (ELFError, OSError) as e:
        raise ParseError(str(ko), None, f"not a readable ELF module: {e}") from e
    if data is None:
        raise ParseError(str(ko), None, "no .modinfo section: not a kernel module")
    prefix = field.encode() + b"="
    for entry in data.split(b"\0"):
        if entry.startswith(prefix):
            return entry.removeprefix(prefix).decode(errors="replace")
    raise ParseError(str(ko), None, f"no {field}= in .modinfo")


def vermagic_of(ko: Path) -> str:
    """The ``vermagic=`` string of a module's ``.modinfo`` section."""
    return modinfo_field(ko, "vermagic")


def check_vermagic(ko: Path, tree: KernelTree) -> None:
    """UserError unless the module's vermagic is the one the tree's kernel expects."""
    actual = vermagic_of(ko)
    expected = expected_vermagic(tree)
    if actual != expected:
        raise UserError(
            f"{ko} was built for {actual!r}, the kernel expects {expected!r}: rebuild it against {tree.kdir}"
        )


def expected_vermagic(tree: KernelTree) -> str:
    """VERMAGIC_STRING of the tree: UTS_RELEASE, then flag words from the .config.

    include/linux/vermagic.h, VERMAGIC_STRING (5.10, 6.1, 6.12):
    UTS_RELEASE " " SMP PREEMPT MODULE_UNLOAD MODVERSIONS MODULE_ARCH_VERMAGIC RANDSTRUCT.
    """
    config = read_config(tree.config)
    series = _series(tree.version)
    words = [tree.release]
    if _on(config, "CONFIG_SMP"):
        words.append("SMP")
    preempt_symbol = _by_version(PREEMPT_SYMBOL, series)
    if _on(config, preempt_symbol):
        words.append("preempt")
    elif _on(config, "CONFIG_PREEMPT_RT"):
        words.append("preempt_rt")
    if _on(config, "CONFIG_MODULE_UNLOAD"):
        words.append("mod_unload")
    if _on(config, "CONFIG_MODVERSIONS"):
        words.append("modversions")
    words.extend(_arch_vermagic(config))
    text = " ".join(words) + " "
    return text + _randstruct(config, series, tree.kdir)


# The config symbol behind MODULE_VERMAGIC_PREEMPT, include/linux/vermagic.h: 5.10 `CONFIG_PREEMPT`,
# 6.1 and 6.12 `CONFIG_PREEMPT_BUILD` (read in those versions' headers; the change lies in between).
PREEMPT_SYMBOL: tuple[tuple[tuple[int, int], str], ...] = (
    ((5, 10), "CONFIG_PREEMPT"),
    ((6, 1), "CONFIG_PREEMPT_BUILD"),
)
# MODULE_RANDSTRUCT, include/linux/vermagic.h: (config symbol, prefix, generated header with the seed).
# 5.10: RANDSTRUCT_PLUGIN (gcc plugin); 6.1, 6.12: RANDSTRUCT. No trailing space.
RANDSTRUCT: tuple[tuple[tuple[int, int], tuple[str, str, str]], ...] = (
    ((5, 10), ("CONFIG_GCC_PLUGIN_RANDSTRUCT", "RANDSTRUCT_PLUGIN_", "randomize_layout_hash.h")),
    ((6, 1), ("CONFIG_RANDSTRUCT", "RANDSTRUCT_", "randstruct_hash.h")),
)
# __LINUX_ARM_ARCH__, arch/arm/Makefile `arch-$(CONFIG_CPU_32vX)` (5.10, 6.1, 6.12): later lines
# override earlier ones, so the oldest enabled architecture wins. Listed in the Makefile's order as
# (symbol, level, also required): the v6K line sits inside `ifeq ($(CONFIG_CPU_32v6),y)` (armmp has
# CPU_32v6K=y with CPU_32v7=y and is ARMv7).
ARM_ARCH_LEVELS: tuple[tuple[str, int, str], ...] = (
    ("CONFIG_CPU_32v7M", 7, ""),
    ("CONFIG_CPU_32v7", 7, ""),
    ("CONFIG_CPU_32v6", 6, ""),
    ("CONFIG_CPU_32v6K", 6, "CONFIG_CPU_32v6"),
    ("CONFIG_CPU_32v5", 5, ""),
    ("CONFIG_CPU_32v4T", 4, ""),
    ("CONFIG_CPU_32v4", 4, ""),
    ("CONFIG_CPU_32v3", 3, ""),
)


def _arch_vermagic(config: dict[str, str]) -> list[str]:
    """MODULE_ARCH_VERMAGIC, arch/arm/include/asm/vermagic.h (5.10, 6.1, 6.12): ARMvN [thumb2] [p2v8]."""
    if not _on(config, "CONFIG_ARM"):
        raise UserError("vermagic check: only 32-bit ARM kernels (CONFIG_ARM=y) are modelled")
    levels = [
        level
        for symbol, level, required in ARM_ARCH_LEVELS
        if _on(config, symbol) and (not required or _on(config, required))
    ]
    if not levels:
        raise UserError("vermagic check: no CONFIG_CPU_32v* in the kernel config")
    words = [f"ARMv{levels[-1]}"]
    if _on(config, "CONFIG_THUMB2_KERNEL"):
        words.append("thumb2")
    if _on(config, "CONFIG_ARM_PATCH_PHYS_VIRT"):
        words.append("p2v8")
    return words


def _randstruct(config: dict[str, str], series: tuple[int, int], kdir: Path) -> str:
    symbol, prefix, header = _by_version(RANDSTRUCT, series)
    if not _on(config, symbol):
        return ""
    path = kdir / "include/generated" / header
    match = re.search(r'RANDSTRUCT_HASHED_SEED\s+"([0-9a-f]+)"', path.read_text()) if path.is_file() else None
    if not match:
        raise UserError(f"{symbol}=y but {path} has no RANDSTRUCT_HASHED_SEED: prepare the tree")
    return prefix + match.group(1)


def read_config(path: Path) -> dict[str, str]:
    """``CONFIG_X=value`` lines of a kernel .config (unset options are absent)."""
    try:
        text = path.read_text()
    except OSError as e:
        raise UserError(f"cannot read the kernel config {path}: {e}") from e
    return dict(re.findall(r"^(CONFIG_\w+)=(.*)$", text, re.M))


def _on(config: dict[str, str], symbol: str) -> bool:
    return config.get(symbol) == "y"


def _series(version: str) -> tuple[int, int]:
    match = re.match(r"(\d+)\.(\d+)", version)
    if not match:
        raise UserError(f"cannot read major.minor from kernel version {version!r}")
    return int(match.group(1)), int(match.group(2))


def _by_version(table: tuple[tuple[tuple[int, int], V], ...], series: tuple[int, int]) -> V:
    """The entry of the newest version <= ``series`` (the oldest entry for older kernels)."""
    chosen = table[0][1]
    for since, value in table:
        if series >= since:
            chosen = value
    return chosen
