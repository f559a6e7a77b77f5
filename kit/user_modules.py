"""The user's own prebuilt modules (``--module X.ko``), checked before the run spends anything on them.

``check_user_modules(request)`` needs the files alone and runs before any phase: each path exists, is
a regular file, is (after decompressing .ko.xz/.gz/.zst) an ELF relocatable object for the target's
machine with a ``.modinfo`` that names the module and its vermagic. ``check_user_vermagic(modules,
tree)`` needs the kernel and runs right after the kernel phase, before build, boot and bundle. Every
message names the path as the user gave it (never the kit's own staged copy).
"""

from __future__ import annotations

import errno
import os
import re
import stat
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from analysis.elf.header import ARCH_ELF, EM_NAMES, ET_REL, ElfKind, read_elf_header, read_modinfo
from analysis.elf.loader import read_module_bytes
from kbuild.kernels import KernelTree
from kbuild.make import expected_vermagic
from kbuild.render import default_specs
from kbuild.targets import Target
from kit.errors import InfraError, UserError
from kit.request import RunRequest
from kit.user_trees import UserTree, check_user_tree

# (what, magic, the suffix read_module_bytes decompresses by)
COMPRESSIONS: tuple[tuple[str, bytes, str], ...] = (
    ("xz", b"\xfd7zXZ\x00", ".xz"),
    ("gzip", b"\x1f\x8b", ".gz"),
    ("zstd", b"\x28\xb5\x2f\xfd", ".zst"),
)
# include/linux/module.h: MODULE_NAME_LEN = MAX_PARAM_PREFIX_LEN = 64 - sizeof(unsigned long), the NUL
# included: 59 characters on a 32-bit kernel, 55 on a 64-bit one (the stricter bound for every target).
MODULE_NAME = re.compile(r"[A-Za-z0-9_-]{1,55}")
LINKED_KO = "pass the .ko that `make modules` links"


@dataclass(frozen=True)
class UserModule:
    """One --module file, checked: its path as given, its module name and vermagic, its ELF bytes."""

    given: Path
    name: str  # .modinfo name= (what /proc/modules shows; the guest loads it as <name>.ko)
    vermagic: str
    data: bytes = field(repr=False)  # uncompressed
    depends: tuple[str, ...] = ()  # .modinfo depends= (modules whose symbols it uses; modpost writes it)

    @property
    def where(self) -> str:
        return f"--module {self.given}"


def check_user_modules(request: RunRequest) -> list[UserModule]:
    """Every --module of the request, read and checked from the file alone (UserError on the first bad one)."""
    if not request.user_modules:
        return []
    target = request.target
    kind = ARCH_ELF.get(target.arch)
    if kind is None:
        known = ", ".join(sorted(ARCH_ELF))
        raise UserError(f"target {target.name} has arch {target.arch!r}, whose modules' ELF machine is not known "
                        f"(known: {known}); fix the target's arch")
    trees = [check_user_tree(path) for path in request.user_modules if path.is_dir()]
    modules = [_check_one(path, target, kind) for path in request.user_modules if not path.is_dir()]
    _check_tree_names(trees, modules, kit_module_names(target))
    return modules


def check_built_modules(kos: Sequence[Path], tree: UserTree, target: Target) -> list[UserModule]:
    """The modules Kbuild built from a --module directory, read and checked like a --module file (named
    after the directory: the files are the kit's build copies)."""
    kind = ARCH_ELF[target.arch]
    return [replace(_check_one(ko, target, kind), given=tree.given) for ko in kos]


def kit_module_names(target: Target) -> set[str]:
    return {spec.name for spec in default_specs(target)}


def check_module_names(modules: Sequence[UserModule], target: Target) -> None:
    """UserError when a user's module has the name of a kit module, or two of them share a name."""
    _check_names(modules, kit_module_names(target))


def check_user_vermagic(modules: Sequence[UserModule], tree: KernelTree) -> None:
    """UserError unless every module's vermagic is the one ``tree``'s kernel expects (names both)."""
    if not modules:
        return
    expected = expected_vermagic(tree)
    for module in modules:
        if module.vermagic == expected:
            continue
        words = module.vermagic.split()
        built_for = words[0] if words else "(empty)"
        if built_for != tree.release:
            raise UserError(f"{module.where}: vermagic {built_for} vs kernel {tree.release}: "
                            f"rebuild it against {tree.kdir}")
        raise UserError(f"{module.where}: vermagic {module.vermagic.strip()!r} vs the kernel's "
                        f"{expected.strip()!r}: rebuild it against {tree.kdir} with that kernel's .config")


def stage_user_modules(modules: Sequence[UserModule], out_dir: Path) -> list[Path]:
    """``out_dir/<name>.ko`` per module, uncompressed (rewritten only when its bytes change; atomically)."""
    staged = []
    for module in modules:
        dest = out_dir / f"{module.name}.ko"
        try:
            if not (dest.is_file() and dest.read_bytes() == module.data):
                out_dir.mkdir(parents=True, exist_ok=True)
                tmp = out_dir / f".{module.name}.ko.tmp-{os.getpid()}"
                tmp.write_bytes(module.data)
                os.replace(tmp, dest)
        except OSError as err:
            raise InfraError(f"{module.where}: cannot stage it for the guest under {out_dir.parent}: "
                             f"{err.strerror or err}; free some space or make it writable") from err
        staged.append(dest)
    return staged


def _check_one(path: Path, target: Target, kind: ElfKind) -> UserModule:
    where = f"--module {path}"
    _check_regular_file(path, where)
    compression = next((c for c in COMPRESSIONS if path.name.endswith(c[2])), None)
    if compression is not None:
        what, magic, suffix = compression
        if not _head(path, where).startswith(magic):
            raise UserError(f"{where}: named {suffix} but not {what}-compressed; pass the module as it was "
                            "installed (.ko, .ko.xz, .ko.gz or .ko.zst)")
    raw = read_module_bytes(path)
    header = read_elf_header(raw)
    if header is None:
        content = _not_elf(raw, path)
        raise UserError(f"{where}: {'decompressed, ' if compression else ''}{content}")
    if header.kind != kind:
        raise UserError(f"{where}: {_found(header.kind, kind)} ELF, the target {target.name} is "
                        f"{kind.describe()}: pass a module built for it")
    machine = EM_NAMES.get(kind.machine, "ELF")
    if header.e_type != ET_REL:
        raise UserError(f"{where}: an {machine} {header.type_name}, not a kernel module "
                        f"(a .ko is a relocatable object, ET_REL): {LINKED_KO}")
    info = read_modinfo(raw, where)
    if info is None:
        raise UserError(f"{where}: an {machine} object without a .modinfo section, not a kernel module "
                        f"(a .o?): {LINKED_KO}")
    name = info.get("name")
    if name is None:
        raise UserError(f"{where}: its .modinfo has no name=, not a linked kernel module (a .o?): {LINKED_KO}")
    if not MODULE_NAME.fullmatch(name):
        raise UserError(f"{where}: its .modinfo name={name!r} is not a module name; rebuild it with Kbuild")
    vermagic = info.get("vermagic")
    if vermagic is None:
        raise UserError(f"{where}: its .modinfo has no vermagic=, which the kernel refuses; rebuild it with Kbuild")
    depends = tuple(d for d in info.get("depends", "").split(",") if d)
    return UserModule(path, name, vermagic, raw, depends)


def _check_regular_file(path: Path, where: str) -> None:
    try:
        mode = path.stat().st_mode
    except OSError as err:
        if err.errno in (errno.ENOENT, errno.ENOTDIR):
            broken = " (a broken symbolic link)" if path.is_symlink() else ""
            raise UserError(f"{where}: no such file{broken}; check the path") from err
        raise UserError(f"{where}: cannot read it ({err.strerror or err}); check the path") from err
    if stat.S_ISDIR(mode):
        raise UserError(f"{where}: is a directory; pass the module file itself (X.ko)")
    if not stat.S_ISREG(mode):
        raise UserError(f"{where}: not a regular file; pass the module file itself (X.ko)")


def _head(path: Path, where: str) -> bytes:
    try:
        with path.open("rb") as f:
            return f.read(8)
    except OSError as err:
        raise UserError(f"{where}: cannot read it ({err.strerror or err}); check the path") from err


def _not_elf(raw: bytes, path: Path) -> str:
    """What a file that is not an ELF image is, and what to pass instead."""
    if not raw:
        return "an empty file, not a kernel module; copy it again"
    for what, magic, suffix in COMPRESSIONS:
        if raw.startswith(magic):
            return f"{what}-compressed data; name it {path.name}{suffix} (or decompress it)"
    head = raw[:4096]
    if b"\0" not in head:
        try:
            head.decode()
        except UnicodeDecodeError:
            pass
        else:
            return "a text file, not a kernel module; pass the .ko itself"
    return "not an ELF file (no \\x7fELF magic), not a kernel module; pass the .ko itself"


def _found(found: ElfKind, wanted: ElfKind) -> str:
    """The file's ELF kind, saying only what differs from the target's (e.g. ``x86-64``, ``big-endian ARM``)."""
    name = EM_NAMES.get(found.machine, f"e_machine {found.machine}")
    if found.machine != wanted.machine:
        return name
    words = []
    if found.little_endian != wanted.little_endian:
        words.append("little-endian" if found.little_endian else "big-endian")
    if found.bits != wanted.bits:
        words.append(f"{found.bits}-bit")
    return " ".join([*words, name])


def _check_tree_names(trees: Sequence[UserTree], files: Sequence[UserModule], kit_names: set[str]) -> None:
    """Before any build: a directory's obj-m names vs the kit's modules and the --module files."""
    _check_names(files, kit_names)
    named = {module.name: module.where for module in files}
    for tree in trees:
        for name in tree.names:
            if name in kit_names:
                raise UserError(f"{tree.where}: its module name {name} is one of the kit's own test modules; "
                                "rename it (its obj-m in Kbuild)")
            if name in named:
                raise UserError(f"{named[name]} and {tree.where} are both module {name}: the kernel loads "
                                "one module of a name; pass it once")
            named[name] = tree.where


def _check_names(modules: Sequence[UserModule], kit_names: set[str]) -> None:
    seen: dict[str, UserModule] = {}
    for module in modules:
        if module.name in kit_names:
            raise UserError(f"{module.where}: its module name {module.name} is one of the kit's own test modules; "
                            "rename it (its obj-m in Kbuild)")
        first = seen.setdefault(module.name, module)
        if first is not module:
            raise UserError(f"{first.where} and {module.where} are both module {module.name}: the kernel loads "
                            "one module of a name; pass it once")


def driver_stacks(modules: Sequence[UserModule]) -> list[list[str]]:
    """The user's modules that depend on each other (``depends=``), as stacks in load order: each stack is a
    group of modules linked by dependencies, its members ordered so that a module comes after every one it
    depends on (ties: the order given). A module alone is no stack. A dependency cycle is a UserError."""
    by_name = {m.name: m for m in modules}
    deps = {m.name: [d for d in m.depends if d in by_name] for m in modules}
    ordered = _dependency_order([m.name for m in modules], deps, by_name)
    component = {name: name for name in by_name}

    def root(name: str) -> str:
        while component[name] != name:
            name = component[name]
        return name

    for name, needed in deps.items():
        for dep in needed:
            component[root(name)] = root(dep)
    stacks: dict[str, list[str]] = {}
    for name in ordered:
        stacks.setdefault(root(name), []).append(name)
    return [stack for stack in stacks.values() if len(stack) > 1]


def _dependency_order(names: list[str], deps: dict[str, list[str]], by_name: dict[str, UserModule]) -> list[str]:
    """``names`` with every module after its dependencies (depth first, in the order given)."""
    done: list[str] = []
    visiting: list[str] = []

    def visit(name: str) -> None:
        if name in done:
            return
        if name in visiting:
            cycle = " -> ".join([*visiting[visiting.index(name):], name])
            raise UserError(f"{by_name[name].where}: its modules depend on each other in a cycle ({cycle}); "
                            "the kernel cannot load them")
        visiting.append(name)
        for dep in deps[name]:
            visit(dep)
        visiting.pop()
        done.append(name)

    for name in names:
        visit(name)
    return done
