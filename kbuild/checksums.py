"""The cached packages' own checksums: each ``.deb``'s ``DEBIAN/md5sums``, kept beside the unpacked tree
and checked before the tree is used, so a truncated or edited file is named (and fetched again) instead
of turning into a guest that never reaches its shell.

Two manifests (JSON, paths relative to the tree's root as in ``DEBIAN/md5sums``):

- ``kmodkit-md5sums.json``: every file of every package, with the (size, mtime) stamp each file had when
  its content last matched. The whole tree is hashed once, when it is unpacked (or, for an entry from
  before the manifests, when it is first verified); after that a full check ``lstat``-s every file and
  hashes only those whose stamp moved (``dpkg-deb -x`` keeps the packages' mtimes and any write moves
  the mtime). That pass costs ~0.16 s of CPU for 20k files here (0.3 s on two busy cores), over the
  per-run budget, so it runs on the first use of an entry in each ``FULL_CHECK_INTERVAL_S``.
- ``kmodkit-md5sums-boot.json``: the files a run cannot do without (the caller's choice: kernel image,
  busybox, .config, Module.symvers, the kbuild tools...), hashed in full on every use (~0.03 s).
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from kbuild.toolchain import Log, no_log, run
from kit.errors import InfraError

MANIFEST = "kmodkit-md5sums.json"
BOOT_MANIFEST = "kmodkit-md5sums-boot.json"
FULL_CHECK_STAMP = "kmodkit-full-check"  # its mtime: when every file's stamp was last checked
FULL_CHECK_INTERVAL_S = 3600
_FORMAT = 1


@dataclass(frozen=True)
class FileSum:
    """One file of a package: its md5 (from the package), and its stamp when its content last matched."""

    package: str
    md5: str
    size: int = -1  # -1: not hashed yet
    mtime_ns: int = -1


Manifest = dict[str, FileSum]  # path relative to the tree's root -> its checksum and stamp


@dataclass(frozen=True)
class Damage:
    """A file of a cached tree that is not what its package shipped."""

    path: str  # relative to the tree's root, as in DEBIAN/md5sums
    package: str
    problem: str

    def __str__(self) -> str:
        return f"{self.path} (from {self.package}) {self.problem}"


@dataclass(frozen=True)
class EntryCheck:
    """What checking a cached entry found and cost."""

    damage: Damage | None
    files: int  # how many files were checked
    full: bool  # every file's stamp checked (else only the boot files)
    elapsed_s: float


def package_name(deb: Path) -> str:
    """``linux-kbuild-6.1`` of ``linux-kbuild-6.1_6.1.192-3_amd64.deb`` (how apt-get download names files)."""
    return deb.name.split("_", 1)[0]


def package_md5sums(deb: Path, log: Log = no_log) -> Manifest:
    """The ``DEBIAN/md5sums`` of ``deb`` (``dpkg-deb --info DEB md5sums``), not yet stamped."""
    text = run(["dpkg-deb", "--info", str(deb), "md5sums"], log).stdout
    package = package_name(deb)
    sums: Manifest = {}
    for line in text.splitlines():
        md5, sep, path = line.partition("  ")
        if not sep or len(md5) != 32:
            raise InfraError(f"{deb.name}: unreadable DEBIAN/md5sums line {line!r}: Debian's packaging changed?")
        sums[path] = FileSum(package, md5)
    return sums


def md5_of(path: Path | str) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, lambda: hashlib.md5(usedforsecurity=False)).hexdigest()


def record(directory: Path, root: Path, sums: Manifest, boot: Callable[[Manifest], set[str]]) -> Damage | None:
    """Hash every file of ``sums`` under ``root``; when all match, save both manifests in ``directory``.

    ``boot(manifest)``: the paths to hash on every use. Returns the first damaged file, if any."""
    manifest, damage = find_damage(root, sums, hash_all=True)
    if damage is not None:
        return damage
    save(directory, MANIFEST, manifest)
    save(directory, BOOT_MANIFEST, {path: manifest[path] for path in sorted(boot(manifest))})
    (directory / FULL_CHECK_STAMP).touch()
    return None


def check_entry(directory: Path, root: Path) -> EntryCheck | None:
    """The per-use check of a tree recorded by ``record``; None when it has no (readable) manifests."""
    started = time.monotonic()
    boot = load(directory, BOOT_MANIFEST)
    if boot is None:
        return None
    _, damage = find_damage(root, boot, hash_all=True)
    if damage is not None or not _full_check_due(directory):
        return EntryCheck(damage, len(boot), False, time.monotonic() - started)
    manifest = load(directory, MANIFEST)
    if manifest is None:
        return None
    restamped, damage = find_damage(root, manifest, hash_all=False)
    if damage is None:
        if restamped is not manifest:
            save(directory, MANIFEST, restamped)
        (directory / FULL_CHECK_STAMP).touch()
    return EntryCheck(damage, len(manifest), True, time.monotonic() - started)


def _full_check_due(directory: Path) -> bool:
    try:
        return time.time() - (directory / FULL_CHECK_STAMP).stat().st_mtime >= FULL_CHECK_INTERVAL_S
    except FileNotFoundError:
        return True


def find_damage(root: Path, manifest: Manifest, hash_all: bool) -> tuple[Manifest, Damage | None]:
    """Check the files of ``manifest`` under ``root``: every one hashed (``hash_all``), or only those
    whose (size, mtime) moved since they last matched.

    Returns the manifest with the new stamps of moved files that still match (the same object when none
    moved), and the first damaged file."""
    base = str(root) + os.sep
    restamped: Manifest = {}
    for path, expected in manifest.items():
        try:
            st = os.lstat(base + path)
        except FileNotFoundError:
            return manifest, Damage(path, expected.package, "is missing")
        if not stat.S_ISREG(st.st_mode):
            return manifest, Damage(path, expected.package, "is not a regular file")
        unmoved = st.st_size == expected.size and st.st_mtime_ns == expected.mtime_ns
        if unmoved and not hash_all:
            continue
        if md5_of(base + path) != expected.md5:
            return manifest, Damage(path, expected.package, _mismatch(st.st_size, expected))
        if not unmoved:
            restamped[path] = replace(expected, size=st.st_size, mtime_ns=st.st_mtime_ns)
    return ({**manifest, **restamped} if restamped else manifest), None


def _mismatch(size: int, expected: FileSum) -> str:
    if expected.size >= 0 and size != expected.size:
        return f"does not match the package's md5sums: {size} bytes, {expected.size} when verified"
    return f"does not match the package's md5sums ({size} bytes)"


def save(directory: Path, name: str, manifest: Manifest) -> None:
    """Write ``directory/name`` atomically (concurrent runs read it)."""
    packages = sorted({s.package for s in manifest.values()})
    index = {p: i for i, p in enumerate(packages)}
    files = {path: [index[s.package], s.md5, s.size, s.mtime_ns] for path, s in manifest.items()}
    tmp = directory / f"{name}.tmp-{os.getpid()}"
    tmp.write_text(json.dumps({"format": _FORMAT, "packages": packages, "files": files}, separators=(",", ":")))
    tmp.replace(directory / name)


def load(directory: Path, name: str) -> Manifest | None:
    """``directory/name``; None when there is none (an entry from before manifests were kept) or it is
    unreadable (the caller verifies the tree again from its packages, as for an entry without one)."""
    try:
        data = json.loads((directory / name).read_text())
        if data["format"] != _FORMAT:
            return None
        packages: list[str] = data["packages"]
        return {path: FileSum(packages[i], md5, size, mtime) for path, (i, md5, size, mtime) in data["files"].items()}
    except (OSError, ValueError, KeyError, TypeError, IndexError):
        return None
