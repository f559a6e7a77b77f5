"""Gzip'd cpio (newc) initramfs, written in pure Python (no root needed for the /dev/console node).

The image is two concatenated gzip'd cpio archives, which the kernel unpacks in order
(Documentation/driver-api/early-userspace/buffer-format.rst: ``initramfs := ("\\0"*4 | cpio_gzip_archive)*``):
a *base* (busybox, /init, directories, /dev/console) that is cached by content hash, and a small
*overlay* with the pushed files (modules, guest scripts) rebuilt on every run.
"""

from __future__ import annotations

import gzip
import hashlib
import stat
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from kit.errors import InfraError, UserError

GUEST_DIR = Path(__file__).parent / "guest"
BASE_DIRS = ("/bin", "/sbin", "/dev", "/proc", "/sys", "/tmp", "/kit")
CONSOLE_RDEV = (5, 1)  # /dev/console: major 5, minor 1 (Documentation/admin-guide/devices.txt)
NEWC_MAGIC = b"070701"
TRAILER = "TRAILER!!!"


@dataclass(frozen=True)
class CpioEntry:
    """One archive member. ``mode`` includes the file type bits (stat.S_IFREG, S_IFDIR, ...)."""

    path: str
    mode: int
    data: bytes = b""
    rdev: tuple[int, int] = (0, 0)


@dataclass(frozen=True)
class InitramfsResult:
    path: Path
    base_cached: bool
    elapsed_s: float


def directory(path: str) -> CpioEntry:
    return CpioEntry(path, stat.S_IFDIR | 0o755)


def regular_file(path: str, data: bytes, executable: bool) -> CpioEntry:
    return CpioEntry(path, stat.S_IFREG | (0o755 if executable else 0o644), data)


def symlink(path: str, target: str) -> CpioEntry:
    return CpioEntry(path, stat.S_IFLNK | 0o777, target.encode())


def char_device(path: str, rdev: tuple[int, int]) -> CpioEntry:
    return CpioEntry(path, stat.S_IFCHR | 0o600, rdev=rdev)


def _pad4(length: int) -> bytes:
    return b"\0" * (-length % 4)


def _newc_member(ino: int, entry: CpioEntry) -> bytes:
    name = entry.path.lstrip("/").encode() + b"\0"
    nlink = 2 if stat.S_ISDIR(entry.mode) else 1
    fields = (ino, entry.mode, 0, 0, nlink, 0, len(entry.data), 0, 0, *entry.rdev, len(name), 0)
    header = NEWC_MAGIC + b"".join(b"%08X" % value for value in fields)
    head = header + name
    return head + _pad4(len(head)) + entry.data + _pad4(len(entry.data))


def cpio_newc(entries: Iterable[CpioEntry]) -> bytes:
    """The cpio 'newc' archive of ``entries`` (root-owned, mtime 0), ending with the trailer."""
    members = [_newc_member(ino, entry) for ino, entry in enumerate(entries, start=1)]
    members.append(_newc_member(0, CpioEntry(TRAILER, 0)))
    return b"".join(members)


def gzip_padded(data: bytes) -> bytes:
    """gzip with mtime 0 (reproducible), zero-padded to 4 bytes so the next archive starts aligned."""
    packed = gzip.compress(data, compresslevel=6, mtime=0)
    return packed + _pad4(len(packed))


def parent_dirs(path: str) -> list[str]:
    parents = PurePosixPath(path).parents
    return [str(p) for p in reversed(parents) if str(p) != "/"]


def base_entries(busybox: bytes, init_script: bytes) -> list[CpioEntry]:
    """busybox (applet links are made by /init with ``--install -s``), /init and /dev/console."""
    entries = [directory(d) for d in BASE_DIRS]
    entries.append(char_device("/dev/console", CONSOLE_RDEV))
    entries.append(regular_file("/bin/busybox", busybox, executable=True))
    entries.append(symlink("/bin/sh", "busybox"))
    entries.append(regular_file("/init", init_script, executable=True))
    return entries


def overlay_entries(files: Mapping[str, bytes]) -> list[CpioEntry]:
    """The pushed files at their absolute guest paths, with any missing parent directory."""
    seen_dirs: set[str] = set(BASE_DIRS)
    entries: list[CpioEntry] = []
    for remote in sorted(files):
        check_remote_path(remote)
        for parent in parent_dirs(remote):
            if parent not in seen_dirs:
                seen_dirs.add(parent)
                entries.append(directory(parent))
        entries.append(regular_file(remote, files[remote], executable=remote.endswith(".sh")))
    return entries


def check_remote_path(remote: str) -> None:
    path = PurePosixPath(remote)
    if not path.is_absolute() or ".." in path.parts or remote in ("/", "/init"):
        raise UserError(f"guest path {remote!r} must be absolute, without '..', and not /init")


def check_removable_paths(remotes: Sequence[str]) -> None:
    """Paths a board transport removes with ``rm -rf`` when it leaves: checked like any guest path, and at
    least two levels down (a work dir such as /tmp/kmodkit, never /tmp or /)."""
    for remote in remotes:
        check_remote_path(remote)
        if len(PurePosixPath(remote).parts) < 3:
            raise UserError(f"remote path {remote!r} is removed at power-off: give a path two levels "
                            "down at least (default work dir /tmp/kmodkit)")


def read_local(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as err:
        raise UserError(f"cannot read {path}: {err.strerror}; build it first or fix the path") from err


def cached_base(busybox: Path, init_script: Path, cache_dir: Path) -> tuple[bytes, bool]:
    """The gzip'd base archive, from ``cache_dir`` when busybox and /init are unchanged."""
    busybox_data, init_data = read_local(busybox), read_local(init_script)
    key = hashlib.sha256(busybox_data + b"\0" + init_data).hexdigest()[:16]
    cached = cache_dir / f"base-{key}.cpio.gz"
    if cached.is_file():
        return cached.read_bytes(), True
    packed = gzip_padded(cpio_newc(base_entries(busybox_data, init_data)))
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        partial = cached.with_suffix(".part")
        partial.write_bytes(packed)
        partial.replace(cached)
    except OSError as err:
        raise InfraError(f"cannot write the initramfs cache {cached}: {err.strerror}") from err
    return packed, False


def build_initramfs(
    busybox: Path, files: Mapping[str, Path], out: Path, cache_dir: Path, init_script: Path | None = None
) -> InitramfsResult:
    """Write ``out``: the cached base plus an overlay holding ``files`` (guest path -> local file)."""
    start = time.monotonic()
    base, was_cached = cached_base(busybox, init_script or GUEST_DIR / "init.sh", cache_dir)
    overlay = gzip_padded(cpio_newc(overlay_entries({r: read_local(p) for r, p in files.items()})))
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(base + overlay)
    except OSError as err:
        raise InfraError(f"cannot write the initramfs {out}: {err.strerror}") from err
    return InitramfsResult(out, was_cached, time.monotonic() - start)
