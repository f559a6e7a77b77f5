"""The pure-Python initramfs, read back by the host's GNU cpio and gzip (independent readers)."""

from __future__ import annotations

import subprocess
import zlib
from pathlib import Path

import pytest

from deploy.initramfs import build_initramfs, cpio_newc, directory, overlay_entries, regular_file
from kit.errors import UserError
from tests.conftest import debian_busybox


def cpio_listing(archive: bytes) -> list[str]:
    done = subprocess.run(["cpio", "-itv", "--quiet"], input=archive, capture_output=True, check=True)
    return done.stdout.decode().splitlines()


def members(initrd: bytes) -> list[bytes]:
    """Split concatenated gzip members (each archive is one member, zero-padded to 4 bytes)."""
    parts, rest = [], initrd
    while rest.strip(b"\0"):
        rest = rest.lstrip(b"\0")
        stream = zlib.decompressobj(31)
        parts.append(stream.decompress(rest))
        rest = stream.unused_data
    return parts


def test_cpio_members_are_read_back_by_gnu_cpio() -> None:
    overlay = overlay_entries({"/kit/modules/m.ko": b"\x7fELF"})
    archive = cpio_newc([directory("/dev"), regular_file("/kit/a.sh", b"echo\n", executable=True), *overlay])
    listing = "\n".join(cpio_listing(archive))
    assert "kit/a.sh" in listing and "kit/modules/m.ko" in listing
    assert "-rwxr-xr-x" in listing.splitlines()[1]


def test_build_reuses_the_base_and_puts_pushed_files_in_the_overlay(tmp_path: Path) -> None:
    busybox = debian_busybox("6.1")  # the arm-6.1 target's busybox-static, fetched with its kernel
    module = tmp_path / "m.ko"
    module.write_bytes(b"first")
    first = build_initramfs(busybox, {"/kit/modules/m.ko": module}, tmp_path / "a.gz", tmp_path / "cache")
    module.write_bytes(b"second version")
    second = build_initramfs(busybox, {"/kit/modules/m.ko": module}, tmp_path / "b.gz", tmp_path / "cache")
    assert (first.base_cached, second.base_cached) == (False, True)

    base, overlay = members(second.path.read_bytes())
    base_listing = "\n".join(cpio_listing(base))
    assert "crw-------" in base_listing and "dev/console" in base_listing
    assert "bin/busybox" in base_listing and "init" in base_listing
    assert [line.split()[-1] for line in cpio_listing(overlay)] == ["kit/modules", "kit/modules/m.ko"]
    extracted = subprocess.run(["cpio", "-i", "--quiet", "--to-stdout", "kit/modules/m.ko"],
                               input=overlay, capture_output=True, check=True).stdout
    assert extracted == b"second version"
    assert members(first.path.read_bytes())[0] == base  # same base bytes, only the overlay differs


def test_pushed_paths_must_be_absolute_and_safe() -> None:
    for bad in ("kit/m.ko", "/kit/../etc/passwd", "/init"):
        with pytest.raises(UserError):
            overlay_entries({bad: b""})


def test_a_board_transport_refuses_to_remove_a_shallow_or_relative_path(tmp_path: Path) -> None:
    from deploy.serial import SerialTarget, SerialTransport
    from deploy.ssh import SshTarget, SshTransport

    for bad in ("/tmp", "/", "tmp/kmodkit", "/tmp/../etc/x"):
        with pytest.raises(UserError):
            SerialTransport(SerialTarget("/dev/ttyUSB0"), tmp_path, remote_work_dir=bad)
        with pytest.raises(UserError):
            SshTransport(SshTarget("127.0.0.1"), tmp_path, owned_paths=[bad])
    SerialTransport(SerialTarget("/dev/ttyUSB0"), tmp_path, remote_work_dir="/tmp/kmodkit")  # nothing opened yet
