"""A QEMU guest that acts as a board reached only over its serial console: the kit's 6.1 kernel, a
busybox userland whose PL011 console (ttyAMA0) runs getty and login with a root password, kernel
messages on the same console at the kernel's default loglevel, and optionally a chatty driver (a loop
writing a kernel line to /dev/kmsg every ``noise_ms``), as on a bring-up board.

QEMU's end of the console is a pty (``-serial pty``: the device is the pty's slave, as a USB adapter's
/dev/ttyUSB0 would be) or a TCP server on 127.0.0.1 (``socket://``, as a console server). Started
independently of the kit: the fixture waits for the login prompt, closes the port, and the kit attaches.
No network device: the guest reaches nothing.
"""

from __future__ import annotations

import re
import socket
import subprocess
import threading
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import serial
from serial.rfc2217 import PortManager

from deploy.console import KERNEL_CONSOLE_LINE
from deploy.initramfs import CpioEntry, cached_base, cpio_newc, directory, gzip_padded, regular_file
from deploy.qemu import qemu_command, start_qemu, stop_process
from kbuild.kernels import KernelTree
from kbuild.targets import QemuSpec
from tests.boards.guest import BoardError, free_port

PTY_LINE = re.compile(r"char device redirected to (/dev/pts/\d+)")
LOGIN = re.compile(rb"login: *$")

INIT = """#!/bin/sh
# /init of the serial board guest: getty and login on the console, kernel messages on it too.
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /tmp /root
hostname kitboard
{noise}
while true; do getty -L 115200 ttyAMA0 vt100; done
"""
NOISE = ('(i=0; while true; do echo "<3>kitnoise: a chatty driver says $i" > /dev/kmsg; i=$((i+1)); '
         'usleep {us}; done) &')


def password_hash(password: str) -> str:
    """SHA-512 crypt(3) of ``password`` (busybox login checks /etc/shadow with it). Python 3.11's crypt
    module (deprecated, still shipped) is the host's libcrypt; the board guest is test-only."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import crypt

        return crypt.crypt(password, crypt.mksalt(crypt.METHOD_SHA512))


def build_serial_initramfs(busybox: Path, password: str, noise_ms: int, out: Path, cache_dir: Path) -> Path:
    init = out.with_name("serial-init.sh")
    noise = NOISE.replace("{us}", str(noise_ms * 1000)) if noise_ms else ""
    init.write_text(INIT.replace("{noise}", noise))
    base, _ = cached_base(busybox, init, cache_dir)
    entries: list[CpioEntry] = [directory("/etc"), directory("/root")]
    entries += [regular_file("/etc/passwd", b"root:x:0:0:root:/root:/bin/sh\n", executable=False),
                regular_file("/etc/group", b"root:x:0:\n", executable=False),
                regular_file("/etc/shells", b"/bin/sh\n", executable=False),
                regular_file("/etc/issue", b"kit serial board\n", executable=False),
                regular_file("/etc/shadow", f"root:{password_hash(password)}:19000:0:99999:7:::\n".encode(),
                             executable=False)]
    out.write_bytes(base + gzip_padded(cpio_newc(entries)))
    return out


@dataclass
class SerialBoard:
    """A running serial board guest: its console's device (a pty path or a socket:// URL) and password."""

    device: str
    password: str
    process: subprocess.Popen[bytes]
    work: Path

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        stop_process(self.process, lambda _line: None, wait_s=0.0)


def serial_qemu_command(spec: QemuSpec, tree: KernelTree, initrd: Path, backend: str) -> list[str]:
    """The kit's QEMU command line with the console on ``backend`` (``pty``, ``tcp:...``) instead of stdio."""
    assert tree.image is not None
    command = qemu_command(spec, tree.image, initrd, tree.dtb, spec.append)
    at = command.index("-serial") + 1
    return [*command[:at], backend, *command[at + 1:]]


def wait_for_login(device: str, deadline: float) -> bytes:
    """Open the console, press Enter until the login prompt shows, close it; what it printed."""
    seen = b""
    while time.monotonic() < deadline:
        try:
            port: Any = serial.serial_for_url(device, baudrate=115200, timeout=0.2)
        except serial.SerialException:
            time.sleep(0.5)
            continue
        try:
            next_enter = 0.0
            while time.monotonic() < deadline:
                if time.monotonic() >= next_enter:
                    port.write(b"\r")
                    next_enter = time.monotonic() + 2.0
                seen += port.read(4096)
                if LOGIN.search(KERNEL_CONSOLE_LINE.sub(b"", seen).rstrip(b"\r\n")):
                    return seen
        except serial.SerialException:
            time.sleep(0.5)
        finally:
            port.close()
    raise BoardError(f"no login prompt on {device}:\n{seen[-800:].decode(errors='replace')}")


def start_serial_board(spec: QemuSpec, tree: KernelTree, busybox: Path, work: Path, *, password: str,
                       link: str = "pty", noise_ms: int = 0, boot_s: float = 120.0,
                       port: int | None = None) -> SerialBoard:
    """Boot the guest with its console on a pty (``link="pty"``) or a TCP server on 127.0.0.1
    (``link="socket"``, on ``port``: the same URL after a power-cycle) and wait for its login prompt."""
    work.mkdir(parents=True, exist_ok=True)
    initrd = build_serial_initramfs(busybox, password, noise_ms, work / "serial-initrd.gz", work / "initramfs-cache")
    port = port or free_port()
    backend = "pty" if link == "pty" else f"tcp:127.0.0.1:{port},server=on,wait=off"
    stderr_path = work / "qemu.out"  # QEMU names the pty on its stdout
    with stderr_path.open("wb") as out:
        process = start_qemu(serial_qemu_command(spec, tree, initrd, backend), out, stdout=out)
    deadline = time.monotonic() + boot_s
    try:
        device = f"socket://127.0.0.1:{port}"
        if link == "pty":
            while (found := PTY_LINE.search(stderr_path.read_text(errors="replace"))) is None:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise BoardError(f"QEMU gave no pty: {stderr_path.read_text(errors='replace')[-500:]}")
                time.sleep(0.1)
            device = found.group(1)
        wait_for_login(device, deadline)
    except BaseException:
        process.kill()
        stop_process(process, lambda _line: None, wait_s=0.0)
        raise
    return SerialBoard(device, password, process, work)


class Rfc2217Server:
    """A console server speaking RFC 2217 (telnet COM-port control) on 127.0.0.1, in front of a console
    ``device`` (any pyserial URL), built on pyserial's own server side (``serial.rfc2217.PortManager``,
    as its rfc2217_server example): what ser2net or a terminal server offers a lab."""

    def __init__(self, device: str) -> None:
        self.port: Any = serial.serial_for_url(device, baudrate=115200, timeout=0.1)
        self.listener = socket.create_server(("127.0.0.1", free_port()))
        self.url = f"rfc2217://127.0.0.1:{self.listener.getsockname()[1]}"
        self.alive = True
        self.client: Any = None
        threading.Thread(target=self._serve, daemon=True).start()

    def write(self, data: bytes) -> None:  # PortManager's connection: telnet replies to the client
        if self.client is not None:
            self.client.sendall(data)

    def _serve(self) -> None:
        self.client, _ = self.listener.accept()
        manager = PortManager(self.port, self)
        threading.Thread(target=self._to_client, args=(manager,), daemon=True).start()
        try:
            while self.alive and (data := self.client.recv(1024)):
                self.port.write(b"".join(manager.filter(data)))
        except OSError:
            pass

    def _to_client(self, manager: Any) -> None:
        try:
            while self.alive:
                data = self.port.read(self.port.in_waiting or 1)
                if data:
                    self.write(b"".join(manager.escape(data)))
        except (OSError, serial.SerialException):
            pass

    def stop(self) -> None:
        self.alive = False
        for end in (self.client, self.listener):
            if end is not None:
                end.close()
        self.port.close()
