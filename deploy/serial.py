"""Serial-console transport: a board that is already up, reached only over its console (a UART through a
USB adapter, a pty, or a console server: pyserial's ``socket://`` and ``rfc2217://`` URLs).

The console is shared with the kernel (its printk lines land anywhere, even mid-line) and starts in any
state: a login prompt, a shell prompt, or the kit's own shell left by a run that was killed. boot()
opens the port (exclusively: a second program on the same port is refused), logs in when it sees a
login prompt, and starts the kit's own shell under the board's: ``sh /proc/self/fd/0`` reading the
console non-interactively (no prompt, no line editing, no history), with the tty echo off while it
runs. Commands, pushes and fetches then use the console protocol of ``deploy.console`` (unique
markers, gzip'd base64, framed files), with the kernel's console lines cut out of what commands print.

power_off() removes what the kit put there, leaves its shell (the echo comes back), logs out when it
logged in (the console is back at its login prompt), and closes the port: it never powers a board off.
"""

from __future__ import annotations

import base64
import contextlib
import errno
import gzip
import hashlib
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import serial

from deploy.base import BootResult, CommandResult
from deploy.console import ChannelClosed, ConsoleShell, shell_quote
from deploy.errors import CommandTimeout, DeployError, FramingError, TransportLost
from deploy.initramfs import check_remote_path, check_removable_paths
from kit.errors import KitError, UserError

DEFAULT_REMOTE_WORK_DIR = "/tmp/kmodkit"
POLL_S = 0.05  # pyserial's read timeout: how long one read waits for a first byte
# Exported by the kit's shell, "login" when the kit logged in to start it (else "shell"): a later attach
# (after a run that was killed) knows it is inside it already, and whether to log out at the end.
KIT_SHELL_MARK = "KIT_CONSOLE"
ENTER_KIT_SHELL = "stty -echo 2>/dev/null; {mark}={how} sh /proc/self/fd/0; stty echo 2>/dev/null"
# What a console says at each step of a login (getty, login(1), busybox login, a shell's prompt).
LOGIN_PROMPT = re.compile(rb"(?i)login: *$")
PASSWORD_PROMPT = re.compile(rb"(?i)password: *$")
LOGIN_REFUSED = re.compile(rb"(?i)login incorrect|incorrect password|authentication failure|permission denied")
# A shell prompt ("~ # ", "$ ", "> "), maybe followed by a terminal query (busybox ash asks ESC[6n).
SHELL_PROMPT = re.compile(rb"[#$>%] ?(?:\x1b\[[0-9;?]*[A-Za-z])*\s*$")
SILENT_POKES = 3  # Enter pressed this often with no answer at all: a shell without a prompt (the kit's own)
MAX_LOGIN_ATTEMPTS = 3
FETCH_ALLOWANCE_BYTES = 1 << 20  # a fetch's deadline: the command's, plus this much at the line's rate
BITS_PER_BYTE = 10  # 8N1: a start bit, 8 data bits, a stop bit


@dataclass(frozen=True)
class SerialTarget:
    """Where the console is (a device path, or a pyserial URL), its speed, and the login to use."""

    device: str
    baud: int = 115200
    user: str = "root"
    password: str | None = None  # None: the board logs in without one (or has a shell on its console)
    login_timeout_s: float = 30.0
    command_timeout_s: float = 60.0

    def seconds_for(self, nbytes: int) -> float:
        """How long ``nbytes`` take on the line at its baud rate (8N1)."""
        return nbytes * BITS_PER_BYTE / self.baud


class SerialDeviceMissing(UserError):
    """No such serial device (the adapter unplugged, a wrong path)."""


class SerialDeviceBusy(UserError):
    """Another program holds the port (minicom, screen, another kit run)."""


class SerialLoginRefused(UserError):
    """The board refused the login (wrong user or password) or wants a password the board file lacks."""


class SerialConnectFailed(DeployError):
    """A console server (``socket://``, ``rfc2217://``) could not be reached."""


class SerialChannel:
    """A pyserial port as a ``deploy.console.ByteChannel``."""

    def __init__(self, port: Any) -> None:
        self._port = port

    def write(self, data: bytes) -> None:
        try:
            self._port.write(data)
        except (serial.SerialException, OSError) as err:
            raise ChannelClosed(str(err)) from err

    def read(self, timeout_s: float) -> bytes:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                chunk: bytes = self._port.read(max(1, self._port.in_waiting))
            except (serial.SerialException, OSError, TypeError) as err:  # TypeError: pyserial on a closed fd
                raise ChannelClosed(str(err)) from err
            if chunk or time.monotonic() >= deadline:
                return chunk

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._port.close()


def open_port(target: SerialTarget) -> Any:
    """The port, opened exclusively (a flock on a device; a second kit run or pyserial user is refused)."""
    where = target.device
    # a write that blocks (a console that takes no input) ends after the command deadline; pyserial's
    # rfc2217 client has no write timeout (its writes go to a socket, bounded by TCP)
    bounded = {} if where.startswith("rfc2217://") else {"write_timeout": target.command_timeout_s}
    try:
        return serial.serial_for_url(where, baudrate=target.baud, timeout=POLL_S, exclusive=True, **bounded)
    except ValueError as err:
        raise UserError(f"serial device {where!r}: {err}; give a device path (/dev/ttyUSB0) or a URL "
                        "(socket://host:port, rfc2217://host:port)") from err
    except serial.SerialException as err:
        code = err.errno if isinstance(err.errno, int) else None
        if code in (errno.ENOENT, errno.ENODEV, errno.ENXIO):
            raise SerialDeviceMissing(f"no serial device {where}: is the board's serial adapter plugged in and "
                                      "the path right? (serial.device in the board file)") from err
        if code in (errno.EAGAIN, errno.EBUSY) or "exclusively lock" in str(err):
            raise SerialDeviceBusy(f"serial device {where} is in use by another program (minicom, screen, "
                                   "another kit run?): close it and run again") from err
        if code == errno.EACCES:
            raise UserError(f"no permission to open {where}: add your user to its group (dialout) or run "
                            "as root") from err
        if "://" in where:
            raise SerialConnectFailed(f"cannot reach the console server {where}: {err}; is it running?") from err
        raise DeployError(f"cannot open the serial device {where}: {err}") from err


class SerialTransport:
    """Attach to a running board over its serial console. Every method raises
    ``deploy.errors.DeployError``, or a ``kit.errors.UserError`` for what the user must fix (the device,
    the login)."""

    def __init__(self, target: SerialTarget, work_dir: Path, *, remote_work_dir: str = DEFAULT_REMOTE_WORK_DIR,
                 owned_paths: Sequence[str] = ()) -> None:
        check_removable_paths((remote_work_dir, *owned_paths))
        self.target, self.work_dir, self.remote_work_dir = target, work_dir, remote_work_dir
        self.owned_paths = tuple(owned_paths)
        self._pending: dict[str, Path] = {}
        self._pushed: dict[str, str] = {}  # remote path -> md5 of what the board holds
        self._channel: SerialChannel | None = None
        self._shell: ConsoleShell | None = None
        self._logged_in = False  # the kit logged in: it logs out at the end
        self._entered = False  # the kit started its own shell: it leaves it at the end
        self._busy = False  # a command did not return: its shell must be interrupted before the next one
        self.push_stats: list[tuple[int, int, float]] = []  # (file bytes, bytes on the line, seconds)

    @property
    def stays_up(self) -> bool:
        return True

    @property
    def console_log(self) -> Path:
        return self.work_dir / "boot.log"

    def __enter__(self) -> SerialTransport:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.power_off()

    # -- attaching ---------------------------------------------------------------------------------

    def boot(self) -> BootResult:
        """Open the console, log in if asked, start the kit's shell, and push what was recorded before."""
        if self._shell is not None:
            return BootResult(0.0)
        start = time.monotonic()
        self._open()
        try:
            self._attach(time.monotonic() + self.target.login_timeout_s)
        except BaseException:
            self.abort()
            raise
        pending, self._pending = self._pending, {}
        self.push(pending)
        return BootResult(time.monotonic() - start)

    def reattach(self, timeout_s: float) -> BootResult:
        """Open the console again after the board was power-cycled and log in once it answers; what the
        kit had pushed is gone with the old boot."""
        start = time.monotonic()
        deadline = start + timeout_s
        self.abort()
        self._pushed.clear()
        while True:
            try:
                self._open()
                self._attach(deadline)
                return BootResult(time.monotonic() - start)
            except (DeployError, SerialDeviceMissing) as err:  # a USB adapter powered by the board re-enumerates
                self.abort()
                if time.monotonic() + 1.0 >= deadline:
                    what = err.what if isinstance(err, DeployError) else str(err)
                    raise TransportLost(f"the board's console gave no shell within {timeout_s:g} s after the "
                                        f"power-cycle: {what}", self.console_log) from err
                time.sleep(1.0)

    def _open(self) -> None:
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self._channel = SerialChannel(open_port(self.target))
        self._shell = ConsoleShell(self._channel, self.console_log)
        self._shell.scrub_kernel_lines = True
        self._shell.note(f"\n# serial {self.target.device} at {self.target.baud} baud\n")
        self._logged_in = self._entered = self._busy = False

    def _attach(self, deadline: float) -> None:
        """From whatever the console shows to the kit's shell: log in at a login prompt, answer a
        password prompt, and take any shell that runs the handshake command."""
        shell = self._ready_shell(check_busy=False)
        users = passwords = silent = 0
        shell.send(b"\r")
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise DeployError(f"no shell on the serial console {self.target.device} within "
                                  f"{self.target.login_timeout_s:g} s (is the board up, at a login prompt, at "
                                  f"{self.target.baud} baud?)", self.console_log, shell.excerpt())
            text = shell.settle(0.5, min(remaining, 5.0)).rstrip(b" \t")
            if passwords and LOGIN_REFUSED.search(text):
                raise SerialLoginRefused(f"the board refused the login of {self.target.user!r} on "
                                         f"{self.target.device}: check serial.user and the password "
                                         "(serial.password or serial.password_env)")
            if PASSWORD_PROMPT.search(text):
                passwords += 1
                self._answer_password(shell, passwords)
            elif LOGIN_PROMPT.search(text):
                users += 1
                if users > MAX_LOGIN_ATTEMPTS:
                    raise SerialLoginRefused(f"the board asked for a login {users} times on {self.target.device}: "
                                             f"check serial.user ({self.target.user!r}) and the password")
                shell.note(f"\n# login as {self.target.user}\n")
                shell.send(self.target.user.encode() + b"\r")
            elif (SHELL_PROMPT.search(text) or silent >= SILENT_POKES) and \
                    self._answers(shell, min(3.0, max(0.5, remaining))):
                self._enter_kit_shell(shell, deadline)
                return
            else:  # boot messages, a banner, or nothing yet (a console server or pty still connecting)
                silent = silent + 1 if not text.strip() else 0
                shell.send(b"\r")

    def _answer_password(self, shell: ConsoleShell, attempt: int) -> None:
        if self.target.password is None:
            raise SerialLoginRefused(f"the board asks for a password on {self.target.device}: give serial.password "
                                     "or serial.password_env in the board file")
        if attempt > MAX_LOGIN_ATTEMPTS:
            raise SerialLoginRefused(f"the board asked for the password {attempt} times on {self.target.device}")
        shell.note("\n# password sent (not logged)\n")
        shell.send(self.target.password.encode() + b"\r")
        self._logged_in = True

    @staticmethod
    def _answers(shell: ConsoleShell, timeout_s: float) -> bool:
        try:
            return shell.run_bytes("true", timeout_s)[0] == 0
        except CommandTimeout:
            return False

    def _enter_kit_shell(self, shell: ConsoleShell, deadline: float) -> None:
        """Start the kit's own shell, unless the console is in one already (a run that was killed)."""
        status, output, _ = shell.run_bytes(f"echo ${{{KIT_SHELL_MARK}:-none}}", self.target.command_timeout_s)
        found = output.strip().decode(errors="replace") if status == 0 else "none"
        if found in ("login", "shell"):
            shell.note(f"\n# the console is in a kit shell already (left by an earlier run that started it "
                       f"from a {found})\n")
            self._logged_in = self._logged_in or found == "login"
        else:
            how = "login" if self._logged_in else "shell"
            shell.send(ENTER_KIT_SHELL.format(mark=KIT_SHELL_MARK, how=how).encode() + b"\r")
        self._entered = True
        shell.handshake(max(5.0, deadline - time.monotonic()))

    def _ready_shell(self, check_busy: bool = True) -> ConsoleShell:
        if self._shell is None:
            raise TransportLost(f"not attached to {self.target.device}: call boot() first", self.console_log)
        if check_busy and self._busy:
            self._interrupt(self._shell)
        return self._shell

    def _interrupt(self, shell: ConsoleShell) -> None:
        """Stop a command that timed out (Ctrl-C to the console's foreground job, which ends the kit's
        shell too) and get back into a kit shell."""
        shell.note("\n# interrupting the command that timed out (Ctrl-C)\n")
        shell.send(b"\x03")
        shell.settle(0.5, 3.0)
        self._busy = False
        self._attach(time.monotonic() + self.target.login_timeout_s)

    # -- commands and files ------------------------------------------------------------------------

    def run(self, command: str, timeout_s: float) -> CommandResult:
        shell = self._ready_shell()
        self._busy = True  # until it returns: a timeout or an interrupt (Ctrl-C on the host) leaves it running
        result = shell.run(command, timeout_s)
        self._busy = False
        return result

    def push(self, files: Mapping[str, Path]) -> None:
        """Before boot: recorded. After: each file gzip'd and base64'd through the console, gunzip's CRC
        and then the board's md5sum checked against the host's. Files the board holds already are skipped."""
        for remote in files:
            check_remote_path(remote)
        if self._shell is None:
            self._pending.update(files)
            return
        for remote, local in files.items():
            try:
                data = local.read_bytes()
            except OSError as err:
                raise UserError(f"cannot read {local}: {err.strerror}; build it first or fix the path") from err
            digest = hashlib.md5(data).hexdigest()
            if self._pushed.get(remote) != digest:
                self._push_one(remote, data, digest)
                self._pushed[remote] = digest

    def _push_one(self, remote: str, data: bytes, digest: str) -> None:
        shell = self._ready_shell()
        wire = len(base64.encodebytes(gzip.compress(data, compresslevel=6, mtime=0)))
        timeout = self.target.command_timeout_s + 2 * self.target.seconds_for(wire)
        self._busy = True
        elapsed = shell.push_file(remote, data, timeout)
        self._busy = False
        check = self.run(f"md5sum {shell_quote(remote)}", self.target.command_timeout_s)
        found = check.output.split()[0] if check.ok and check.output.split() else "(md5sum failed)"
        if found != digest:
            self.run(f"rm -f {shell_quote(remote)}", self.target.command_timeout_s)
            raise FramingError(f"push of {remote} to {self.target.device} arrived damaged: md5 {found} on the "
                               f"board, {digest} here", self.console_log)
        self.push_stats.append((len(data), wire, elapsed))
        shell.note(f"\n# pushed {remote}: {len(data)} bytes ({wire} on the line), md5 {digest}, {elapsed:.2f} s\n")

    def fetch(self, remote_dir: str) -> dict[str, bytes]:
        """Every regular file under ``remote_dir`` (deploy.console: one archive, framed files as fallback)."""
        shell = self._ready_shell()
        timeout = self.target.command_timeout_s + self.target.seconds_for(FETCH_ALLOWANCE_BYTES)
        self._busy = True
        files = shell.fetch_files(remote_dir, timeout)
        self._busy = False
        return files

    # -- leaving -----------------------------------------------------------------------------------

    def power_off(self) -> None:
        """Remove what the kit put there, leave the kit's shell, log out if the kit logged in, and close
        the port. The board stays up. Safe to call more than once and after the console was lost."""
        if self._shell is None:
            return
        doomed = [*self._pushed, *self.owned_paths, self.remote_work_dir]
        with contextlib.suppress(KitError):
            if self.run(f"rm -rf {' '.join(shell_quote(p) for p in doomed)}", self.target.command_timeout_s).ok:
                self._pushed.clear()
            self._leave(self._shell)
        self.abort()

    def _leave(self, shell: ConsoleShell) -> None:
        if self._entered:
            shell.send(b"exit\r")
            self._entered = False
        if self._logged_in:
            shell.settle(0.3, 2.0)
            shell.send(b"exit\r")
            self._logged_in = False
        shell.settle(0.5, 3.0)  # the prompt (or login prompt) the board is left at, into the log

    def abort(self) -> None:
        """Close the port at once (nothing is undone on the board)."""
        channel, shell = self._channel, self._shell
        self._channel = self._shell = None
        if shell is not None:
            shell.close()
        if channel is not None:
            channel.close()
