"""A shell on a console (QEMU's stdio serial now, a board's serial port later), driven by markers.

The guest runs a non-interactive shell on its console (see guest/init.sh). The host sends one line per
command, wrapped so that it can cut exactly that command's output and exit status out of the stream
(unique begin/end markers; no sleep-and-grep), and fetches files as framed blocks (framing.py).
Every byte received is appended to the console log as it arrives. Every read has a deadline; a
kernel panic, the channel closing, or a deadline passing raises a ``DeployError`` subclass that
carries the log excerpt, and the partial log stays on disk.
"""

from __future__ import annotations

import base64
import contextlib
import gzip
import re
import secrets
import time
from pathlib import Path, PurePosixPath
from typing import BinaryIO, NoReturn, Protocol

from deploy.base import CommandResult
from deploy.errors import (
    BootTimeout,
    CommandTimeout,
    DeployError,
    FramingError,
    GuestCrashed,
    TransportLost,
)
from deploy.framing import (
    READY_LINE,
    FetchRefused,
    FramedFiles,
    archive_command,
    begin_marker_pattern,
    check_total,
    decode_archive,
    parse_framed_files,
    split_command_output,
)
from kit.errors import UserError

# Lines that mean the kernel is dying (kernel/panic.c panic(); arch/arm/kernel/traps.c die()).
PANIC = re.compile(rb"Kernel panic - not syncing")
OOPS = re.compile(rb"Internal error:|Unable to handle kernel|BUG: |Kernel BUG at")
CRASH_GRACE_S = 3.0  # after a panic, keep reading this long for the rest of the trace
EXCERPT_LINES = 60
# Measured with QEMU 7.2 (PL011, -serial stdio) and the 6.1 armmp guest: the tail of a command line
# usually stays unread by the guest until more input arrives (60 of 60 commands stalled until a
# later write). A blank line (harmless to the shell) pushes it through: it is sent every KICK_AFTER_S
# while the command's begin marker has not appeared.
KICK_AFTER_S = 0.1
PUSH_END = "KIT-END-OF-PUSH"
PL011_FIFO_BYTES = 32  # hw/char/pl011.c PL011_FIFO_DEPTH
FIRST_KICK_S = 0.01  # the first push comes sooner: a command that stalls costs 10 ms, not 100
MAX_COMMAND_LINE = 3000  # n_tty canonical lines are limited to 4095 bytes (N_TTY_BUF_SIZE)
# A kernel console line as a board's serial console prints it (kernel/printk/printk.c: the time prefix,
# CONFIG_PRINTK_CALLER's "[T123]" after it; serial_core.c uart_console_write ends it with CRLF). It can
# land anywhere in the shell's output, even mid-line. Not one right after a "|": that is a file line of
# a framed fetch (a dmesg.txt line), which its checksum guards.
KERNEL_CONSOLE_LINE = re.compile(rb"(?<!\|)\[ *\d+\.\d+\](?:\[ *[TC]\d+\])? [^\n]*\n")
PARTIAL_KERNEL_LINE = re.compile(rb"(?<!\|)\[[ \d.]*(?:\][^\n]*)?\Z")  # one still arriving, from its "["
MAX_KERNEL_LINE = 1100  # printk's LOG_LINE_MAX (1024) plus its prefixes


class ChannelClosed(Exception):
    """Raised by a ByteChannel when the other end is gone (QEMU exited, port closed)."""


class ByteChannel(Protocol):
    """A bidirectional byte stream to a console: QEMU's stdio pipes, later a serial port."""

    def write(self, data: bytes) -> None: ...

    def read(self, timeout_s: float) -> bytes:
        """Whatever arrived within ``timeout_s`` (``b""`` if nothing); raises ChannelClosed at end."""
        ...


def shell_quote(text: str) -> str:
    return "'" + text.replace("'", "'\\''") + "'"


def wrap_command(command: str, token: str) -> bytes:
    """The line sent to the guest shell. The command runs in a child ``sh -c`` with stdin from
    /dev/null (it can neither eat later commands nor kill the console shell on a syntax error).
    The markers are printed with ``printf '%s'`` so that an echo of this line never matches them."""
    inner = f"sh -c {shell_quote(command)} </dev/null 2>&1"
    line = f"printf 'KIT>%s\\n' B{token}; {inner}; printf '\\nKIT>%s %d\\n' E{token} $?\n"
    if "\n" in command or len(line) > MAX_COMMAND_LINE:
        raise UserError("a console command must be one line under 3000 bytes; put longer logic in a script")
    # Newlines after the line push its tail through the PL011 FIFO (no receive-timeout interrupt in
    # QEMU's model); the console shell runs them as empty commands.
    return (line + "\n" * PL011_FIFO_BYTES).encode()


# One awk pass frames every file (a fork per file costs ~10 ms under TCG): the first input is `wc -c`'s
# "<bytes> <path>" listing and md5sum's "<md5> <path>" (each header carries both: a kernel line that cut a
# line of a file and kept its length is caught by the checksum); each later file is printed between its
# KIT>F and KIT>EOF lines, its lines prefixed with "|". Files with no line at all (empty) are framed at the end.
_FRAME_AWK = (
    "NR == FNR { if (length($1) == 32) sum[$2] = $1; else if ($2 != \"total\") size[$2] = $1; next } "
    "FNR == 1 { if (cur != \"\") print \"KIT>EOF \" name; cur = FILENAME; seen[cur] = 1; "
    "name = cur; sub(/^\\.\\//, \"\", name); print \"KIT>F \" name \" \" size[cur] \" \" sum[cur] } "
    "{ print \"|\" $0 } "
    "END { if (cur != \"\") print \"KIT>EOF \" name; "
    "for (f in size) if (!(f in seen)) { name = f; sub(/^\\.\\//, \"\", name); "
    "print \"KIT>F \" name \" 0 \" sum[f]; print \"KIT>EOF \" name } }"
)


def fetch_command(remote_dir: str, start: str = ".") -> str:
    """Guest shell code printing every regular file under ``remote_dir``/``start`` as a framed block
    (paths relative to ``remote_dir``), with three processes whatever the number of files."""
    return (
        f"cd {shell_quote(remote_dir)} && files=$(find {shell_quote(start)} -type f | sort) && "
        f"[ -n \"$files\" ] && {{ wc -c $files; md5sum $files; }} | awk {shell_quote(_FRAME_AWK)} - $files"
    )


class ConsoleShell:
    """Run commands and fetch files over a ByteChannel; log everything to ``log_path``."""

    def __init__(self, channel: ByteChannel, log_path: Path) -> None:
        self.channel = channel
        self.log_path = log_path
        self._log: BinaryIO = log_path.open("ab")
        self._buffer = bytearray()  # received and not yet consumed by a command
        self._history = bytearray()  # everything received (for crash excerpts)
        self._closed = False
        self.oops_seen = False
        self.kicks = 0  # blank lines sent to push stuck console input through
        # a board's console: kernel lines are cut out of what commands print (they stay in the log)
        self.scrub_kernel_lines = False
        self.kernel_lines_scrubbed = 0

    @property
    def received(self) -> int:
        """How many bytes the console has received so far (0: the guest never printed anything)."""
        return len(self._history)

    def close(self) -> None:
        if not self._log.closed:
            self._log.close()

    def _receive(self, timeout_s: float) -> None:
        """Read once (up to ``timeout_s``), log it, and raise if the guest died or the channel closed."""
        try:
            chunk = self.channel.read(max(0.0, timeout_s))
        except ChannelClosed:
            self._closed = True
            self._raise_dead("the console closed (the guest or QEMU exited)")
        if not chunk:
            return
        self._log.write(chunk)
        self._log.flush()
        scan_from = max(0, len(self._history) - 64)
        self._buffer += chunk
        self._history += chunk
        if self.scrub_kernel_lines:
            self._scrub(max(0, len(self._buffer) - len(chunk) - MAX_KERNEL_LINE))
        if OOPS.search(self._history, scan_from):
            self.oops_seen = True
        if PANIC.search(self._history, scan_from):
            self._drain(CRASH_GRACE_S)
            self._raise_dead("the guest kernel panicked")

    def _scrub(self, start: int) -> None:
        """Cut every whole kernel console line from the buffer at or after ``start``."""
        data = bytes(self._buffer)
        kept, last = [], start
        for line in KERNEL_CONSOLE_LINE.finditer(data, start):
            kept.append(data[last : line.start()])
            last = line.end()
        if kept:
            self.kernel_lines_scrubbed += len(kept)
            self._buffer[start:] = b"".join(kept) + data[last:]

    def settle(self, quiet_s: float, timeout_s: float) -> bytes:
        """Whatever the console says until it has been quiet for ``quiet_s`` (at most ``timeout_s``):
        returned and consumed (a login prompt, a shell prompt, boot messages)."""
        deadline = time.monotonic() + timeout_s
        quiet_until = time.monotonic() + quiet_s
        while (now := time.monotonic()) < min(deadline, quiet_until):
            before = self._visible()
            self._receive(min(deadline, quiet_until) - now)
            if self._visible() > before:  # kernel lines, whole or still arriving, are no answer
                quiet_until = time.monotonic() + quiet_s
        cut = self._visible()  # a kernel line still arriving stays, to be cut out once whole
        text = bytes(self._buffer[:cut])
        del self._buffer[:cut]
        return text

    def _visible(self) -> int:
        """The buffer's length without a kernel line still arriving at its end (when scrubbing)."""
        partial = PARTIAL_KERNEL_LINE.search(self._buffer) if self.scrub_kernel_lines else None
        return partial.start() if partial is not None else len(self._buffer)

    def send(self, data: bytes) -> None:
        """Raw bytes to the console (a login name, a password, Ctrl-C)."""
        self._send(data)

    def note(self, text: str) -> None:
        """A line of the kit's own in the console log (what it did; a password is never written)."""
        self._log.write(text.encode(errors="replace"))
        self._log.flush()

    def drain(self, grace_s: float) -> bool:
        """Log whatever arrives for up to ``grace_s``; True if the channel closed meanwhile."""
        self._drain(grace_s)
        return self._closed

    def _drain(self, grace_s: float) -> None:
        deadline = time.monotonic() + grace_s
        while not self._closed and time.monotonic() < deadline:
            try:
                chunk = self.channel.read(deadline - time.monotonic())
            except ChannelClosed:
                self._closed = True
                return
            self._log.write(chunk)
            self._log.flush()
            self._history += chunk

    def _raise_dead(self, what: str) -> NoReturn:
        found = [m for m in (OOPS.search(self._history), PANIC.search(self._history)) if m is not None]
        crashed = min(found, key=lambda m: m.start()) if found else None  # the oops comes before its panic
        if crashed:
            raise GuestCrashed(f"{what}: {first_line_at(self._history, crashed.start())}",
                               self.log_path, self.excerpt(crashed.start()))
        raise TransportLost(what, self.log_path, self.excerpt())

    def excerpt(self, start: int | None = None) -> str:
        """``EXCERPT_LINES`` lines of the console from ``start`` (default: the last ones)."""
        text = bytes(self._history).decode(errors="replace").replace("\r\n", "\n")
        if start is None:
            return "\n".join(text.splitlines()[-EXCERPT_LINES:])
        line_start = bytes(self._history).rfind(b"\n", 0, start) + 1
        tail = bytes(self._history[line_start:]).decode(errors="replace").replace("\r\n", "\n")
        return "\n".join(tail.splitlines()[:EXCERPT_LINES])

    def wait_ready(self, timeout_s: float) -> None:
        """Wait for the guest's ``KIT>READY`` line (guest/init.sh); BootTimeout after ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        while (found := READY_LINE.search(self._buffer)) is None:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise BootTimeout(f"no shell on the console within {timeout_s:.0f} s "
                                  "(wrong console= or kernel stuck?)", self.log_path, self.excerpt())
            self._receive(min(remaining, 0.5))
        del self._buffer[: found.end()]

    def handshake(self, timeout_s: float, attempt_s: float = 3.0) -> int:
        """Run ``true`` until the shell answers (it may not read the first line yet); return attempts."""
        deadline = time.monotonic() + timeout_s
        attempts = 0
        while True:
            attempts += 1
            try:
                self.run_bytes("true", min(attempt_s, max(0.1, deadline - time.monotonic())))
                return attempts
            except CommandTimeout:
                if time.monotonic() >= deadline:
                    raise BootTimeout(f"the guest shell did not answer within {timeout_s:.0f} s",
                                      self.log_path, self.excerpt()) from None

    def run_bytes(self, command: str, timeout_s: float) -> tuple[int, bytes, float]:
        """Send ``command``; return (exit status, raw output, seconds). CommandTimeout past the deadline."""
        token = secrets.token_hex(6)
        start = time.monotonic()
        deadline = start + timeout_s
        self._send(wrap_command(command, token))
        next_kick = start + FIRST_KICK_S
        while (done := split_command_output(bytes(self._buffer), token)) is None:
            now = time.monotonic()
            if now >= deadline:
                raise CommandTimeout(f"no exit status for {command!r} within {timeout_s:.0f} s",
                                     self.log_path, self.excerpt())
            if now >= next_kick and begin_marker_pattern(token).search(self._buffer) is None:
                self._send(b"\n")
                self.kicks += 1
                next_kick = now + KICK_AFTER_S
            self._receive(min(deadline, next_kick) - now)
        output, status, end = done
        del self._buffer[:end]
        return status, output, time.monotonic() - start

    def run(self, command: str, timeout_s: float) -> CommandResult:
        status, output, elapsed = self.run_bytes(command, timeout_s)
        return CommandResult(status, output.decode(errors="replace"), elapsed)

    def send_until_closed(self, command: str, timeout_s: float) -> bool:
        """Send a command that ends the guest (``poweroff -f``); True if the console closed in time."""
        deadline = time.monotonic() + timeout_s
        with contextlib.suppress(DeployError):
            self._send(command.encode() + b"\n")
            while not self.drain(min(KICK_AFTER_S, deadline - time.monotonic())):
                if time.monotonic() >= deadline:
                    return False
                self._send(b"\n")
        return self._closed

    def _send(self, data: bytes) -> None:
        try:
            self.channel.write(data)
        except ChannelClosed:
            self._closed = True
            self._raise_dead("the console closed while sending")

    def push_file(self, remote_path: str, data: bytes, timeout_s: float) -> float:
        """Write ``data`` to ``remote_path`` on the guest through the console; the seconds it took.

        The command reads the payload (gzip, base64, 76-column lines) from the console shell's own
        input up to an end line: it is sent only once the command's begin marker shows that the shell
        has read the command line, so the shell cannot have read any of it ahead. gzip's CRC-32 makes
        a damaged transfer fail (non-zero status) instead of writing a wrong file.
        """
        token = secrets.token_hex(6)
        start = time.monotonic()
        deadline = start + timeout_s
        directory = str(PurePosixPath(remote_path).parent)
        receive = (f"mkdir -p {shell_quote(directory)} && awk '/^{PUSH_END}$/ {{ exit }} {{ print }}' | "
                   f"base64 -d | gunzip > {shell_quote(remote_path)}")
        self._send(f"printf 'KIT>%s\\n' B{token}; {receive}; printf '\\nKIT>%s %d\\n' E{token} $?\n".encode())
        self._await(begin_marker_pattern(token), deadline, f"push of {remote_path}")
        payload = base64.encodebytes(gzip.compress(data, compresslevel=6, mtime=0))
        # QEMU's PL011 raises no receive-timeout interrupt: the last bytes below the FIFO's trigger level
        # wait for more input. Newlines after the end line push them through (empty commands for the
        # console shell once awk has exited).
        self._send(payload + PUSH_END.encode() + b"\n" + b"\n" * PL011_FIFO_BYTES)
        next_kick = time.monotonic() + KICK_AFTER_S
        while (done := split_command_output(bytes(self._buffer), token)) is None:
            now = time.monotonic()
            if now >= deadline:
                raise CommandTimeout(f"push of {remote_path} not acknowledged within {timeout_s:.0f} s",
                                     self.log_path, self.excerpt())
            if now >= next_kick:
                self._send(b"\n")
                next_kick = now + KICK_AFTER_S
            self._receive(min(next_kick, deadline) - now)
        output, status, end = done
        del self._buffer[:end]
        if status != 0:
            raise FramingError(f"push of {remote_path} failed on the guest (exit {status}): "
                               f"{output[:200].decode(errors='replace')}", self.log_path, self.excerpt())
        return time.monotonic() - start

    def _await(self, pattern: re.Pattern[bytes], deadline: float, what: str) -> None:
        """Wait until ``pattern`` is in the buffer, kicking stuck input through (see KICK_AFTER_S)."""
        next_kick = time.monotonic() + FIRST_KICK_S
        while pattern.search(self._buffer) is None:
            now = time.monotonic()
            if now >= deadline:
                raise CommandTimeout(f"{what}: the guest shell did not start it", self.log_path, self.excerpt())
            if now >= next_kick:
                self._send(b"\n")
                self.kicks += 1
                next_kick = now + KICK_AFTER_S
            self._receive(min(deadline, next_kick) - now)

    def fetch_files(self, remote_dir: str, timeout_s: float) -> dict[str, bytes]:
        """Every regular file under ``remote_dir`` (relative path -> bytes), counts verified.

        First as one compressed archive; if that arrives damaged, file by file in framed blocks, where a
        file whose framing broke (a kernel line inside a line of it) is fetched once more alone. Both
        are bounded (framing.FetchCaps): output over a cap raises FetchRefused, and is not retried.
        """
        try:
            status, output, _ = self.run_bytes(archive_command(remote_dir, shell_quote), timeout_s)
            files = decode_archive(output) if status == 0 else None
            if files:
                return files
            status, output, _ = self.run_bytes(fetch_command(remote_dir), timeout_s)
            framed = parse_framed_files(output)
            if status != 0 and not framed.files:
                raise FramingError(f"cannot list {remote_dir} on the guest (exit {status}): "
                                   f"{output[:200].decode(errors='replace')}", self.log_path)
            for name in list(framed.problems):
                self._refetch(remote_dir, name, framed, timeout_s)
            check_total(framed.files)
        except FetchRefused as refused:
            if refused.log_path is not None:
                raise
            raise FetchRefused(refused.problem, self.log_path) from None
        return framed.files

    def _refetch(self, remote_dir: str, name: str, framed: FramedFiles, timeout_s: float) -> None:
        path = str(PurePosixPath(remote_dir) / name)
        parent, base = str(PurePosixPath(path).parent), PurePosixPath(path).name
        _, output, _ = self.run_bytes(fetch_command(parent, "./" + base), timeout_s)
        again = parse_framed_files(output)
        if base not in again.files:
            problem = again.problems.get(base, framed.problems[name])
            raise FramingError(f"fetching {path} failed twice: {problem}", self.log_path, self.excerpt())
        framed.files[name] = again.files[base]
        del framed.problems[name]


def first_line_at(data: bytearray, offset: int) -> str:
    end = data.find(b"\n", offset)
    line = bytes(data[offset : end if end >= 0 else len(data)])
    return line.decode(errors="replace").strip()
