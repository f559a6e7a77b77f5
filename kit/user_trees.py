"""The user's module *source trees* (``--module path/to/driver/``): built with Kbuild against the target's kernel.

A directory given to --module is an out-of-tree module directory (a Kbuild or Makefile with ``obj-m``). Its
sources are mirrored into ``generated/<target>/user-src/<dir>-<hash>/`` (a file is copied only when its bytes
change, one that is gone is removed) and built there with ``make -C KDIR M=<mirror> modules``: the user's tree
gets no .o, .ko or .cmd files, and Kbuild's own dependency tracking rebuilds only what an edit touched.
Compiler messages name the user's files, not the mirror's.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from kbuild.kernels import KernelTree
from kbuild.make import build_modules, module_names, source_files
from kbuild.toolchain import Log, Toolchain
from kit.errors import InfraError, UserError


@dataclass(frozen=True)
class UserTree:
    """One --module directory: its path as given and the modules its Kbuild names."""

    given: Path
    names: tuple[str, ...]

    @property
    def where(self) -> str:
        return f"--module {self.given}"


def check_user_tree(path: Path) -> UserTree:
    """A directory given to --module, checked before anything is built (UserError when it holds no module)."""
    try:
        names = module_names(path)
    except UserError as err:
        raise UserError(f"--module {path}: a directory without `obj-m += <name>.o` in a Kbuild or Makefile; "
                        "pass a module's source directory or the .ko itself") from err
    if not source_files(path):
        raise UserError(f"--module {path}: no source files in it; pass a module's source directory")
    return UserTree(path, tuple(names))


def tree_sources(tree: UserTree) -> list[Path]:
    """The files of the user's tree whose change means a rebuild (what ``invoke watch`` polls)."""
    return sorted(source_files(tree.given))


def mirror_dir(tree: UserTree, root: Path) -> Path:
    """Where a tree is built: its name and a hash of its absolute path (two trees of one name stay apart)."""
    absolute = str(tree.given.resolve())
    return root / f"{tree.given.resolve().name}-{hashlib.sha256(absolute.encode()).hexdigest()[:10]}"


def mirror_sources(source: Path, mirror: Path) -> None:
    """Make ``mirror``'s sources those of ``source``: changed files copied (a new mtime, so make sees them),
    files gone from ``source`` removed; Kbuild's output in ``mirror`` is kept for the incremental build."""
    wanted = {path.relative_to(source): path for path in source_files(source)}
    for relative, path in wanted.items():
        dest = mirror / relative
        data = path.read_bytes()
        if dest.is_file() and dest.read_bytes() == data:
            continue
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(f".{dest.name}.tmp-{os.getpid()}")
        tmp.write_bytes(data)
        shutil.copymode(path, tmp)
        os.replace(tmp, dest)
    if mirror.is_dir():
        for stale in source_files(mirror):
            if stale.relative_to(mirror) not in wanted:
                stale.unlink()


def build_user_trees(trees: Sequence[UserTree], kernel: KernelTree, toolchain: Toolchain, root: Path,
                     log: Log) -> dict[Path, list[Path]]:
    """Mirror and build every tree (in parallel); its given path -> the .ko files built from it."""
    mirrors = {tree.given: mirror_dir(tree, root) for tree in trees}
    for tree in trees:
        try:
            mirror_sources(tree.given, mirrors[tree.given])
        except OSError as err:
            raise InfraError(f"{tree.where}: cannot copy its sources to {mirrors[tree.given]}: "
                             f"{err.strerror or err}; free some space or make it writable") from err
    try:
        built = build_modules(kernel, toolchain, list(mirrors.values()), jobs=os.cpu_count() or 2, log=log)
    except UserError as err:
        raise UserError(_user_paths(str(err), mirrors)) from err
    by_dir: dict[Path, list[Path]] = {given: [] for given in mirrors}
    for module in built:
        given = next(g for g, mirror in mirrors.items() if module.ko.parent == mirror.resolve())
        by_dir[given].append(module.ko)
    return by_dir


def _user_paths(message: str, mirrors: dict[Path, Path]) -> str:
    """A compiler message with each mirror's path replaced by the user's own (what their editor opens)."""
    for given, mirror in mirrors.items():
        message = message.replace(str(mirror.resolve()) + "/", str(given) + "/").replace(str(mirror), str(given))
    return message
