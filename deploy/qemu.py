"""QEMU transport: the guest is ``qemu-system-arm -M virt`` booted from a kernel image and an initramfs.

push() before boot() puts files into the initramfs overlay; boot() starts QEMU with the console on
stdio and waits for the guest shell; run() and fetch() use the console shell protocol (console.py);
power_off() sends ``poweroff -f`` and waits for QEMU to exit, killing it after a deadline.
TCG only: ``-enable-kvm`` is never passed (no usable KVM on these machines).
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import os
import selectors
import shlex
import signal
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from deploy.base import BootResult, CommandResult
from deploy.console import ChannelClosed, ConsoleShell
from deploy.errors import DeployError, TransportLost
from deploy.initramfs import build_initramfs, check_remote_path
from kbuild.targets import QemuSpec
from kit.errors import InfraError

Log = Callable[[str], None]
DEFAULT_CACHE = Path.home() / ".cache" / "kmodkit" / "initramfs"


@dataclass(frozen=True)
class QemuTimeouts:
    boot_s: float = 60.0
    fetch_s: float = 60.0
    power_off_s: float = 10.0


class QemuChannel:
    """QEMU's stdio console as a ByteChannel (stdout and stderr merged, non-blocking reads)."""

    def __init__(self, process: subprocess.Popen[bytes]) -> None:
        assert process.stdin is not None and process.stdout is not None
        self._stdin = process.stdin
        self._fd = process.stdout.fileno()
        self._selector = selectors.DefaultSelector()
        self._selector.register(self._fd, selectors.EVENT_READ)

    def write(self, data: bytes) -> None:
        try:
            self._stdin.write(data)
            self._stdin.flush()
        except (BrokenPipeError, ValueError) as err:
            raise ChannelClosed(str(err)) from err

    def read(self, timeout_s: float) -> bytes:
        if not self._selector.select(timeout_s):
            return b""
        chunk = os.read(self._fd, 65536)
        if not chunk:
            raise ChannelClosed("QEMU closed its console")
        return chunk


def qemu_command(spec: QemuSpec, kernel: Path, initrd: Path, dtb: Path | None, append: str) -> list[str]:
    """The exact machine the kit uses and nothing more: ``-nodefaults -nic none`` drops the default devices
    (virt's virtio NIC needs ``efi-virtio.rom`` from ipxe-qemu, a package the kit does not install)."""
    command = [spec.binary, "-M", spec.machine, "-cpu", spec.cpu, "-m", str(spec.mem_mib),
               "-smp", str(spec.smp), "-nodefaults", "-nic", "none", "-nographic", "-serial", "stdio",
               "-monitor", "none", "-no-reboot", "-kernel", str(kernel), "-initrd", str(initrd), "-append", append]
    return [*command, "-dtb", str(dtb)] if dtb is not None else command


class QemuTransport:
    """Boot a kernel in QEMU with an initramfs holding the pushed files; talk over the serial console."""

    def __init__(self, spec: QemuSpec, kernel_image: Path, busybox: Path, work_dir: Path, *,
                 dtb: Path | None = None, extra_append: str = "", timeouts: QemuTimeouts = QemuTimeouts(),
                 cache_dir: Path = DEFAULT_CACHE, log: Log = lambda _line: None) -> None:
        self.spec, self.kernel_image, self.busybox, self.work_dir = spec, kernel_image, busybox, work_dir
        self.dtb, self.timeouts, self.cache_dir, self.log = dtb, timeouts, cache_dir, log
        self.append = f"{spec.append} {extra_append}".strip()
        self._files: dict[str, Path] = {}
        self._on_guest: dict[str, bytes] = {}  # remote path -> sha256 of what the guest holds
        self._process: subprocess.Popen[bytes] | None = None
        self._shell: ConsoleShell | None = None

    @property
    def stays_up(self) -> bool:
        """The guest is QEMU's: it ends with power_off."""
        return False

    @property
    def console_log(self) -> Path:
        return self.work_dir / "boot.log"

    def __enter__(self) -> QemuTransport:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.power_off()

    def push(self, files: Mapping[str, Path]) -> None:
        """Before boot: into the initramfs. After boot: through the console (ConsoleShell.push_file)."""
        for remote in files:
            check_remote_path(remote)
        if self._process is None:
            self._files.update(files)
            return
        shell = self._ready_shell()
        for remote, local in files.items():
            data = local.read_bytes()
            digest = hashlib.sha256(data).digest()
            if self._on_guest.get(remote) == digest:
                continue  # already in the initramfs or pushed before: same bytes
            with self._qemu_reason():
                elapsed = shell.push_file(remote, data, self.timeouts.fetch_s)
            self._on_guest[remote] = digest
            self.log(f"pushed {local.name} to {remote} through the console in {elapsed:.2f} s")

    @property
    def booted(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def boot(self) -> BootResult:
        """Start the guest and wait for its shell; a no-op when it is already up."""
        if self.booted:
            return BootResult(0.0)
        start = time.monotonic()
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self.console_log.write_bytes(b"")
        initrd = build_initramfs(self.busybox, self._files, self.work_dir / "initrd.gz", self.cache_dir)
        self._on_guest = {remote: hashlib.sha256(local.read_bytes()).digest() for remote, local in self._files.items()}
        self.log(f"initramfs {initrd.path} ({'cached base' if initrd.base_cached else 'new base'}, "
                 f"{initrd.elapsed_s:.2f} s)")
        command = qemu_command(self.spec, self.kernel_image, initrd.path, self.dtb, self.append)
        self.log(shlex.join(command))
        with self.qemu_stderr.open("wb") as stderr:
            self._process = start_qemu(command, stderr)
        self._shell = ConsoleShell(QemuChannel(self._process), self.console_log)
        try:
            with self._qemu_reason():
                self._shell.wait_ready(self.timeouts.boot_s)
                attempts = self._shell.handshake(max(5.0, self.timeouts.boot_s - (time.monotonic() - start)))
            if attempts > 1:
                self.log(f"the guest shell answered after {attempts} attempts")
        except DeployError:
            self._stop(graceful=False)  # no shell to ask: kill QEMU at once, keep the log
            raise
        return BootResult(time.monotonic() - start)

    @property
    def qemu_stderr(self) -> Path:
        """QEMU's own messages, apart from the guest's console (appended to boot.log when QEMU stops)."""
        return self.work_dir / "qemu.stderr"

    @contextlib.contextmanager
    def _qemu_reason(self) -> Iterator[None]:
        """A console that closed because QEMU exited says why, in QEMU's own words (its stderr)."""
        try:
            yield
        except TransportLost as err:
            if self._process is None or self._shell is None:
                raise
            reason = qemu_exit_reason(self._process, self.qemu_stderr, guest_spoke=self._shell.received > 0)
            if reason is None:
                raise
            raise TransportLost(reason, err.log_path, err.excerpt) from err

    def _ready_shell(self) -> ConsoleShell:
        if self._shell is None or self._process is None or self._process.poll() is not None:
            raise TransportLost("the QEMU guest is not running: call boot() first", self.console_log)
        return self._shell

    def run(self, command: str, timeout_s: float) -> CommandResult:
        with self._qemu_reason():
            return self._ready_shell().run(command, timeout_s)

    def fetch(self, remote_dir: str) -> dict[str, bytes]:
        with self._qemu_reason():
            return self._ready_shell().fetch_files(remote_dir, self.timeouts.fetch_s)

    def power_off(self) -> None:
        """``poweroff -f`` in the guest, wait for QEMU to exit, kill it after the deadline."""
        self._stop(graceful=True)

    def abort(self) -> None:
        """Kill QEMU now (its console log and QEMU's own messages are kept)."""
        self._stop(graceful=False)

    def _stop(self, graceful: bool) -> None:
        process, shell = self._process, self._shell
        if process is None or shell is None:
            return
        if graceful and process.poll() is None:
            shell.send_until_closed("poweroff -f", self.timeouts.power_off_s)
        stop_process(process, self.log, wait_s=2.0 if graceful else 0.0)
        shell.close()
        self._process = None
        append_qemu_stderr(self.qemu_stderr, self.console_log)


def _die_with_parent() -> None:
    """In the child before exec: PR_SET_PDEATHSIG(SIGKILL), so a killed harness leaves no QEMU behind."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # 1 = PR_SET_PDEATHSIG (linux/prctl.h)


def start_qemu(command: list[str], stderr: IO[bytes], stdout: IO[bytes] | int = subprocess.PIPE,
               ) -> subprocess.Popen[bytes]:
    """QEMU with the guest's console on stdin/stdout and its own messages on ``stderr`` (``stdout``: a file
    when the console is elsewhere, e.g. ``-serial pty``, whose path QEMU prints there)."""
    try:
        return subprocess.Popen(command, stdin=subprocess.PIPE, stdout=stdout,
                                stderr=stderr, start_new_session=True, preexec_fn=_die_with_parent)
    except OSError as err:
        raise InfraError(f"cannot start {command[0]}: {err.strerror}; run `invoke setup` (it installs QEMU)") from err


# What to do about QEMU's own error messages (the text QEMU prints after "qemu-system-arm: ").
QEMU_HINTS: tuple[tuple[str, str], ...] = (
    ("failed to find romfile", "a device QEMU adds wants that firmware file: install the package that ships it "
                               "(ipxe-qemu has the NIC ROMs) or drop the device from the target's [qemu] section"),
    ("could not load kernel", "the kernel image cannot be read: run `invoke setup` to fetch it again, or "
                              "check --image"),
    ("cannot set up guest memory", "the host cannot give the guest that much memory: lower --mem"),
)
QEMU_DEFAULT_HINT = "run `invoke setup` to (re)install QEMU, or check the target's [qemu] section"
QEMU_KILLED_HINT = "something outside the kit killed it (the OOM killer? see the host's dmesg); run again"
QEMU_EXIT_WAIT_S = 2.0


def qemu_exit_reason(process: subprocess.Popen[bytes], stderr_path: Path, guest_spoke: bool) -> str | None:
    """One line on why QEMU's console closed (its exit status, its own first error line, what to do), or
    None when QEMU is still running or ended quietly (exit 0, nothing on stderr: the guest powered off)."""
    try:
        status = process.wait(timeout=QEMU_EXIT_WAIT_S)
    except subprocess.TimeoutExpired:
        return None
    message = qemu_error_line(stderr_path)
    if status == 0 and message is None:
        return None
    how = f"was killed by {signal.Signals(-status).name}" if status < 0 else f"exited with status {status}"
    when = "" if guest_spoke else " before the guest printed anything"
    if message is None:
        hint = QEMU_KILLED_HINT if status < 0 else QEMU_DEFAULT_HINT
        return f"QEMU {how}{when}; {hint}"
    hint = next((text for key, text in QEMU_HINTS if key in message.lower()), QEMU_DEFAULT_HINT)
    return f"QEMU {how}{when}: {message}; {hint}"


def qemu_error_line(stderr_path: Path) -> str | None:
    """QEMU's first error line on stderr (a warning only when nothing else was said)."""
    try:
        lines = [line.strip() for line in stderr_path.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        return None
    errors = [line for line in lines if "warning:" not in line.lower()]
    chosen = errors or lines
    return chosen[0] if chosen else None


def append_qemu_stderr(stderr_path: Path, console_log: Path) -> None:
    """QEMU's own messages go into boot.log after the console, under a header, so the bundle has them."""
    with contextlib.suppress(OSError):
        text = stderr_path.read_bytes()
        if text.strip():
            with console_log.open("ab") as log:
                log.write(b"\n--- QEMU's own messages (stderr) ---\n" + text)


def stop_process(process: subprocess.Popen[bytes], log: Log, wait_s: float) -> None:
    """Wait ``wait_s`` for ``process`` to exit, then kill it (it is our own child, by pid)."""
    try:
        process.wait(timeout=wait_s)
    except subprocess.TimeoutExpired:
        log(f"killing QEMU (pid {process.pid})")
        process.kill()
        process.wait()
    for stream in (process.stdin, process.stdout):
        if stream is not None:
            with contextlib.suppress(OSError):
                stream.close()
