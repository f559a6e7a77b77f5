"""A QEMU guest that acts as a board already up: the kit's 6.1 kernel, an initramfs of the kit's own
builder with virtio networking, and Debian's dropbear listening on port 22, reached only through QEMU
user networking's forward on 127.0.0.1 (``restrict=on``: the guest reaches nothing).

Started independently of the kit (the SSH transport only attaches). Everything comes from the kit's
cache: the kernel tree and busybox-static (tests/conftest.py), dropbear and its libraries from Debian's
armhf packages downloaded with the kit's PrivateApt and unpacked with ``dpkg-deb -x``.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import stat
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat, PublicFormat
from elftools.elf.dynamic import DynamicSection
from elftools.elf.elffile import ELFFile

from deploy.initramfs import CpioEntry, cached_base, cpio_newc, directory, gzip_padded, regular_file, symlink
from deploy.qemu import qemu_command, start_qemu, stop_process
from kbuild.apt import SUITE_COMPANIONS, PrivateApt, host_arch
from kbuild.kernels import KernelTree
from kbuild.targets import QemuSpec
from kbuild.toolchain import run

CACHE = Path.home() / ".cache" / "kmodkit"
SUITE = "bookworm"
DROPBEAR_PACKAGES = ("dropbear-bin", "libc6", "libcrypt1", "libtomcrypt1", "libtommath1", "zlib1g")
NET_MODULES = ("virtio_mmio", "virtio_net")  # virtio-mmio transport (virt's DT nodes) and the NIC driver
LIB_DIRS = ("lib/arm-linux-gnueabihf", "usr/lib/arm-linux-gnueabihf")
GUEST_MODULE_DIR = "/lib/modules/kit-board"
HOSTKEY_LINE = re.compile(rb"KIT-HOSTKEY (ssh-ed25519 [A-Za-z0-9+/=]+)")
SSHD_UP = b"KIT-SSHD-UP"
SSHD_FAILED = b"KIT-SSHD-FAILED"


class BoardError(Exception):
    """The board guest could not be made or did not come up (the test fails with this line)."""


# -- the kernel's own virtio networking modules -------------------------------------------------------

def modinfo(ko: Path) -> dict[str, str]:
    """The ``.modinfo`` section of a module (``key=value`` strings), first value of each key."""
    with ko.open("rb") as f:
        section = ELFFile(f).get_section_by_name(".modinfo")
        data = section.data() if section is not None else b""
    info: dict[str, str] = {}
    for item in data.split(b"\0"):
        key, sep, value = item.decode(errors="replace").partition("=")
        if sep and key not in info:
            info[key] = value
    return info


def net_modules(tree: KernelTree) -> list[Path]:
    """virtio_mmio and virtio_net with their dependencies, in load order (dependencies first).

    Debian's package ships no modules.dep (depmod makes it at install time), so the dependencies are
    read from each module's own ``depends=`` modinfo, as depmod does.
    """
    if tree.modules_dir is None:
        raise BoardError("the kernel tree has no modules directory")
    index = {ko.name.removesuffix(".ko").replace("-", "_"): ko for ko in tree.modules_dir.rglob("*.ko")}
    order: list[Path] = []

    def visit(name: str, path: tuple[str, ...]) -> None:
        ko = index.get(name)
        if ko is None:
            raise BoardError(f"module {name} not in {tree.modules_dir} (6.1 ships .ko; .ko.xz is not handled)")
        if ko in order or name in path:
            return
        for dep in filter(None, modinfo(ko).get("depends", "").split(",")):
            visit(dep.replace("-", "_"), (*path, name))
        order.append(ko)

    for name in NET_MODULES:
        visit(name, ())
    return order


# -- dropbear from Debian's armhf packages ------------------------------------------------------------

def resolve_depends(apt: PrivateApt, roots: tuple[str, ...], arch: str) -> list[str]:
    """``name:arch=version`` of ``roots`` and everything they depend on (Depends and Pre-Depends, first
    alternative), from the suite's private lists (libtomcrypt1 brings libgmp10, libc6 libgcc-s1...)."""
    accepted = {SUITE + c for c in SUITE_COMPANIONS}
    specs: dict[str, str] = {}
    todo = list(roots)
    while todo:
        package = todo.pop()
        if package in specs:
            continue
        versions = [v for v, suite in apt.madison(f"{package}:{arch}") if suite in accepted]
        if not versions:
            raise BoardError(f"no {package}:{arch} in {SUITE}")
        specs[package] = f"{package}:{arch}={versions[0]}"
        fields = apt.show(f"{package}:{arch}", versions[0])
        for field in ("Pre-Depends", "Depends"):
            for item in filter(str.strip, fields.get(field, "").split(",")):
                todo.append(item.split("|")[0].split()[0].split(":")[0])
    return [specs[name] for name in sorted(specs)]


def dropbear_root(arch: str = "armhf") -> Path:
    """Debian's dropbear-bin and the libraries it needs, unpacked (cached under ~/.cache/kmodkit/boards)."""
    root = CACHE / "boards" / f"dropbear-{SUITE}-{arch}-v2"
    if (root / ".complete").is_file():
        return root
    apt = PrivateApt(CACHE / "apt", archs=(arch, host_arch()))  # the kit's own archs: same sources.list
    apt.ensure_lists(SUITE)
    specs = resolve_depends(apt, DROPBEAR_PACKAGES, arch)
    tmp = root.with_name(root.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    for deb in apt.download(specs, tmp / "debs"):
        run(["dpkg-deb", "-x", str(deb), str(tmp / "root")])
    shutil.rmtree(tmp / "debs")
    (tmp / ".complete").write_text("\n".join(specs) + "\n")
    shutil.rmtree(root, ignore_errors=True)
    tmp.rename(root)
    return root


def _find_lib(root: Path, name: str) -> Path:
    for d in LIB_DIRS:
        candidate = root / "root" / d / name
        if candidate.exists():
            return candidate.resolve()
    raise BoardError(f"shared library {name} not in the unpacked packages {root}")


def _needed(elf: Path) -> list[str]:
    with elf.open("rb") as f:
        dynamic = ELFFile(f).get_section_by_name(".dynamic")
        if not isinstance(dynamic, DynamicSection):
            return []
        return [str(cast(Any, tag).needed) for tag in dynamic.iter_tags() if tag.entry.d_tag == "DT_NEEDED"]


def dropbear_files(root: Path) -> dict[str, Path]:
    """Guest path -> host file: dropbear, dropbearkey, every shared library they need (transitively,
    from DT_NEEDED) and the dynamic loader at /lib/ld-linux-armhf.so.3."""
    files = {"/usr/sbin/dropbear": root / "root/usr/sbin/dropbear",
             "/usr/bin/dropbearkey": root / "root/usr/bin/dropbearkey",
             "/lib/ld-linux-armhf.so.3": _find_lib(root, "ld-linux-armhf.so.3")}
    todo = [files["/usr/sbin/dropbear"], files["/usr/bin/dropbearkey"]]
    while todo:
        for name in _needed(todo.pop()):
            guest = f"/lib/arm-linux-gnueabihf/{name}"
            if guest not in files:
                files[guest] = _find_lib(root, name)
                todo.append(files[guest])
    return files


# -- keys ----------------------------------------------------------------------------------------------

def make_client_key(path: Path) -> str:
    """An Ed25519 key pair in OpenSSH format at ``path`` (private, 0600); returns the public key line."""
    key = Ed25519PrivateKey.generate()
    path.write_bytes(key.private_bytes(Encoding.PEM, PrivateFormat.OpenSSH, NoEncryption()))
    path.chmod(0o600)
    public = key.public_key().public_bytes(Encoding.OpenSSH, PublicFormat.OpenSSH).decode()
    path.with_suffix(".pub").write_text(public + "\n")
    return public


# -- the initramfs and /init ---------------------------------------------------------------------------

INIT = """#!/bin/sh
# /init of the SSH board guest: virtio networking, QEMU user networking's fixed address, dropbear.
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
dmesg -n 1
for m in $(cat {moddir}/order); do insmod {moddir}/$m || echo "KIT-INSMOD-FAILED $m"; done
i=0; while [ ! -e /sys/class/net/eth0 ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done
ip link set lo up
ip addr add 10.0.2.15/24 dev eth0
ip link set eth0 up
ip route add default via 10.0.2.2
mkdir -p /etc/dropbear /var/run /var/log /root/.ssh
chmod 700 /root /root/.ssh
chmod 600 /root/.ssh/authorized_keys
export LD_LIBRARY_PATH=/lib/arm-linux-gnueabihf
# a host key baked into the initramfs survives a power-cycle, as a real board's does; else a new one
if [ -f /etc/dropbear/host_ed25519 ] || dropbearkey -t ed25519 -f /etc/dropbear/host_ed25519 >/dev/null 2>&1; then
	echo "KIT-HOSTKEY $(dropbearkey -y -f /etc/dropbear/host_ed25519 | grep '^ssh-ed25519' | cut -d' ' -f1,2)"
	dropbear -F -E -s -p 22 -r /etc/dropbear/host_ed25519 &
	sleep 0.5
	echo KIT-SSHD-UP
else
	echo KIT-SSHD-FAILED
fi
while true; do sleep 3600; done
"""

ETC = {
    "/etc/passwd": b"root:x:0:0:root:/root:/bin/sh\n",
    "/etc/group": b"root:x:0:\n",
    "/etc/shells": b"/bin/sh\n",
}


def dropbear_host_key(key: Ed25519PrivateKey) -> bytes:
    """``key`` in dropbear's own private key format (signkey.c buf_put_priv_key, ed25519.c): the string
    "ssh-ed25519", then one string of the 32-byte seed and the 32-byte public key."""
    seed = key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
    public = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)

    def string(data: bytes) -> bytes:
        return len(data).to_bytes(4, "big") + data

    return string(b"ssh-ed25519") + string(seed + public)


def build_board_initramfs(tree: KernelTree, busybox: Path, authorized_key: str, out: Path, cache_dir: Path,
                          host_key: Ed25519PrivateKey | None = None) -> Path:
    """The kit's cached base (busybox, /init) plus an overlay: modules, dropbear and its libraries,
    /etc, root's authorized_keys. Written with the kit's own cpio/gzip functions."""
    init = out.with_name("board-init.sh")
    modules = net_modules(tree)
    init.write_text(INIT.replace("{moddir}", GUEST_MODULE_DIR))
    base, _ = cached_base(busybox, init, cache_dir)
    entries: list[CpioEntry] = [directory(d) for d in
                                ("/etc", "/lib", "/lib/arm-linux-gnueabihf", "/lib/modules", GUEST_MODULE_DIR,
                                 "/usr", "/usr/bin", "/usr/sbin", "/root", "/root/.ssh", "/var")]
    entries.append(symlink("/usr/lib", "../lib"))
    entries += [regular_file(path, data, executable=False) for path, data in ETC.items()]
    entries.append(regular_file("/root/.ssh/authorized_keys", authorized_key.encode() + b"\n", executable=False))
    if host_key is not None:
        entries += [directory("/etc/dropbear"),
                    regular_file("/etc/dropbear/host_ed25519", dropbear_host_key(host_key), executable=False)]
    entries += [regular_file(f"{GUEST_MODULE_DIR}/{ko.name}", ko.read_bytes(), executable=False) for ko in modules]
    order = "".join(f"{ko.name}\n" for ko in modules).encode()
    entries.append(regular_file(f"{GUEST_MODULE_DIR}/order", order, executable=False))
    for guest, host in sorted(dropbear_files(dropbear_root()).items()):
        entries.append(regular_file(guest, host.read_bytes(), executable=True))
    out.write_bytes(base + gzip_padded(cpio_newc(entries)))
    return out


# -- the running guest -----------------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def board_qemu_command(spec: QemuSpec, tree: KernelTree, initrd: Path, port: int) -> list[str]:
    """The kit's QEMU command line plus one virtio-mmio NIC on restricted user networking, its port 22
    forwarded from 127.0.0.1:``port`` only."""
    command = qemu_command(spec, tree.image, initrd, tree.dtb, spec.append)
    return [*command, "-netdev", f"user,id=n0,restrict=on,hostfwd=tcp:127.0.0.1:{port}-:22",
            "-device", "virtio-net-device,netdev=n0"]


@dataclass
class Board:
    """A running board guest: where to reach it and what it is."""

    host: str
    port: int
    host_key: str  # "ssh-ed25519 AAAA..." as dropbearkey -y printed it on the console
    client_key: Path  # authorized on the board
    other_key: Path  # a valid key the board does not authorize
    console: Path  # the guest's serial console, as received
    process: subprocess.Popen[bytes]
    reader: ConsoleReader
    preloaded_modules: tuple[str, ...] = ()  # what the board loaded itself (its NIC drivers)

    def stop(self) -> None:
        stop_board_process(self.process, self.reader)

    def known_hosts_line(self) -> str:
        return f"[{self.host}]:{self.port} {self.host_key}\n"


class ConsoleReader(threading.Thread):
    """Drains QEMU's stdout into the console file (so QEMU never blocks on a full pipe)."""

    def __init__(self, process: subprocess.Popen[bytes], path: Path) -> None:
        super().__init__(daemon=True)
        assert process.stdout is not None
        self.fd, self.path = process.stdout.fileno(), path
        self.data = bytearray()
        self.lock = threading.Lock()

    def run(self) -> None:
        with self.path.open("ab") as log:
            while chunk := os.read(self.fd, 65536):
                log.write(chunk)
                log.flush()
                with self.lock:
                    self.data += chunk

    def text(self) -> bytes:
        with self.lock:
            return bytes(self.data)


def wait_for_ssh_banner(port: int, deadline: float) -> None:
    """The forwarded port answers with an SSH banner (slirp accepts before the guest listens)."""
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=2.0) as s:
                s.settimeout(5.0)
                if s.recv(64).startswith(b"SSH-"):
                    return
        except OSError:
            pass
        time.sleep(0.5)
    raise BoardError(f"no SSH banner on 127.0.0.1:{port}")


def start_board(spec: QemuSpec, tree: KernelTree, busybox: Path, work: Path, boot_s: float = 120.0, *,
                host_key: Ed25519PrivateKey | None = None, port: int | None = None) -> Board:
    """Build the initramfs, boot QEMU, read the host key from the console and wait for dropbear.
    ``host_key`` and ``port``: the same on every start (a board power-cycled keeps both); the client keys
    of ``work`` are kept when they exist."""
    work.mkdir(parents=True, exist_ok=True)
    client_key, other_key = work / "client_ed25519", work / "other_ed25519"
    if client_key.is_file():
        public = client_key.with_suffix(".pub").read_text().strip()
    else:
        public = make_client_key(client_key)
        make_client_key(other_key)
    initrd = build_board_initramfs(tree, busybox, public, work / "board-initrd.gz", work / "initramfs-cache",
                                   host_key)
    port = port or free_port()
    console = work / "console.log"
    with (work / "qemu.stderr").open("wb") as stderr:
        process = start_qemu(board_qemu_command(spec, tree, initrd, port), stderr)
    reader = ConsoleReader(process, console)
    reader.start()
    deadline = time.monotonic() + boot_s
    try:
        while SSHD_UP not in (text := reader.text()):
            if SSHD_FAILED in text or process.poll() is not None or time.monotonic() > deadline:
                tail = text[-800:].decode(errors="replace")
                raise BoardError(f"the board guest did not start dropbear (console {console}):\n{tail}")
            time.sleep(0.2)
        match = HOSTKEY_LINE.search(text)
        if match is None:
            raise BoardError(f"no host key line on the console {console}")
        wait_for_ssh_banner(port, deadline)
    except BaseException:
        stop_board_process(process, reader)
        raise
    preloaded = tuple(ko.stem.replace("-", "_") for ko in net_modules(tree))
    return Board("127.0.0.1", port, match.group(1).decode(), client_key, other_key, console, process, reader,
                 preloaded)


def stop_board_process(process: subprocess.Popen[bytes], reader: ConsoleReader) -> None:
    """Kill QEMU now (a board guest has nothing to save; it is our own child, by pid), then let the
    console reader see the end of the pipe before the pipes are closed."""
    if process.poll() is None:
        process.kill()
    process.wait()
    reader.join(timeout=5.0)
    stop_process(process, lambda _line: None, wait_s=0.0)


def file_mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)
