"""SSH transport: a board that is already up (its own boot loader, kernel and root filesystem), reached
over SSH. boot() only connects; power_off() removes what the kit put there and disconnects: it never
powers a real board off.

Why paramiko and not Fabric: the transport needs exec channels with their real exit status, a deadline
of its own on every read, stdin fed to a remote ``cat`` and its own host-key policy (known_hosts only,
accept-new on request, a changed key always refused). Those are paramiko's ``Transport``/``Channel``
and ``MissingHostKeyPolicy``; Fabric's task layer (Connection.run, config files, invoke integration)
adds nothing here and would hide the channel.

The board's userland may be busybox only (no bash, no python, no sftp-server: dropbear has none, and a
small /tmp), so everything is plain exec channels running busybox applets:

- push: ``mkdir -p DIR && cat > PATH.kit-tmp`` fed over stdin, the board's ``md5sum`` checked against
  the host's, then ``mv`` into place; the files and the directories the push created are remembered
  (power_off removes exactly those, and the kit's remote work dir).
- fetch: ``tar cf - . | gzip -1`` over an exec channel, decoded with ``deploy.framing``'s caps.
- run: one exec channel per command (stdout and stderr merged), its exit status from the channel.

A board has no console here: ``console_log`` is a local file where every command, its output and its
exit status are appended.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import hashlib
import select
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO

import paramiko

from deploy.base import BootResult, CommandResult
from deploy.console import shell_quote
from deploy.errors import CommandTimeout, DeployError, FramingError, TransportLost
from deploy.framing import DEFAULT_CAPS, FetchCaps, FetchRefused, decode_archive
from deploy.initramfs import check_remote_path, check_removable_paths
from kit.errors import KitError, UserError

DEFAULT_REMOTE_WORK_DIR = "/tmp/kmodkit"
MAX_OUTPUT_BYTES = 16 << 20  # one command's output kept in memory (the same 16 MiB as a fetch's stream cap)
TMP_SUFFIX = ".kit-tmp"
_POLL_S = 0.5


@dataclass(frozen=True)
class SshTarget:
    """Where the board is and how to log in. ``known_hosts`` is the only host-key source (the user's
    ~/.ssh/known_hosts by default); ``accept_new`` records an unknown key there (ssh's
    StrictHostKeyChecking=accept-new); a changed key is always refused."""

    host: str
    port: int = 22
    user: str = "root"
    identity_file: Path | None = None
    known_hosts: Path = Path.home() / ".ssh" / "known_hosts"
    accept_new: bool = False
    connect_timeout_s: float = 10.0
    command_timeout_s: float = 60.0

    @property
    def where(self) -> str:
        """The name known_hosts uses: ``host`` on port 22, ``[host]:port`` otherwise."""
        return self.host if self.port == 22 else f"[{self.host}]:{self.port}"


class SshConnectFailed(DeployError):
    """The board could not be reached (refused, timed out, no SSH server answering)."""


class HostKeyError(UserError):
    """The board's host key is not the one known_hosts has for it: the user decides (exit 2)."""


class HostKeyUnknown(HostKeyError):
    """known_hosts has no key for the board and ``accept_new`` is off."""


class HostKeyChanged(HostKeyError):
    """known_hosts has another key for the board: refused whatever ``accept_new`` says."""


class BoardFull(UserError):
    """The board's filesystem under the work dir has no room for what the kit pushes: the user frees it."""


class SshAuthFailed(UserError):
    """The board refused the client key (or the identity file cannot be read)."""


def fingerprint(key: Any) -> str:
    """OpenSSH's ``SHA256:<base64>`` fingerprint of a paramiko public key."""
    digest = hashlib.sha256(key.asbytes()).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


class _KnownHostsPolicy(paramiko.MissingHostKeyPolicy):  # type: ignore[misc]
    """Called by paramiko only for a key known_hosts does not have: refuse, or record it (accept_new)."""

    def __init__(self, target: SshTarget) -> None:
        self.target = target

    def missing_host_key(self, client: Any, hostname: str, key: Any) -> None:
        name, where = key.get_name(), f"{self.target.host}:{self.target.port}"
        if not self.target.accept_new:
            raise HostKeyUnknown(
                f"host key of {where} is unknown ({name} {fingerprint(key)}, not in {self.target.known_hosts}): "
                "check it and add it there, or set accept_new=True to record it "
                "(ssh's StrictHostKeyChecking=accept-new)")
        client.get_host_keys().add(hostname, name, key)
        try:
            self.target.known_hosts.parent.mkdir(parents=True, exist_ok=True)
            with self.target.known_hosts.open("a") as known:
                known.write(f"{hostname} {name} {key.get_base64()}\n")
        except OSError as err:
            raise HostKeyError(f"cannot record the host key of {where} in {self.target.known_hosts}: "
                               f"{err.strerror}; fix the file's permissions") from err


def _still_connected(channel: Any, grace_s: float = 2.0) -> bool:
    """Whether the connection under ``channel`` is alive (a session killed on the board closes it a
    moment after its channel: give it ``grace_s``)."""
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline:
        if not channel.get_transport().is_active():
            return False
        time.sleep(0.1)
    return bool(channel.get_transport().is_active())


def _parents(remote: str) -> list[str]:
    return [str(p) for p in reversed(PurePosixPath(remote).parents) if str(p) != "/"]


def fetch_archive_command(remote_dir: str) -> str:
    """Board shell code writing ``remote_dir`` as one gzip'd tar on stdout (busybox tar and gzip)."""
    return f"cd {shell_quote(remote_dir)} && tar cf - . | gzip -1"


def decode_gzip_tar(raw: bytes, caps: FetchCaps = DEFAULT_CAPS) -> dict[str, bytes] | None:
    """The regular files of a raw ``tar | gzip`` stream, under the same caps as a console fetch.

    ``deploy.framing.decode_archive`` takes the console form (``|``-prefixed base64 lines): the raw bytes
    are put in that form (one line) and decoded by it, so its caps, its checks of sparse members and
    headers and its streaming inflater apply unchanged. The stream cap applies to the raw bytes here.
    """
    if len(raw) > caps.stream_bytes:
        raise FetchRefused(f"the board sent {len(raw)} bytes of archive for one fetch, over the "
                           f"{caps.stream_bytes}-byte stream cap: refused")
    line = b"|" + base64.b64encode(raw) + b"\n"
    return decode_archive(line, dataclasses.replace(caps, stream_bytes=max(caps.stream_bytes, len(line))))


class SshTransport:
    """Attach to a running board over SSH; every method raises ``deploy.errors.DeployError`` (or a
    ``kit.errors.UserError`` for a host key or a client key the user must decide about)."""

    def __init__(self, target: SshTarget, work_dir: Path, *, remote_work_dir: str = DEFAULT_REMOTE_WORK_DIR,
                 owned_paths: Sequence[str] = (), caps: FetchCaps = DEFAULT_CAPS) -> None:
        """``remote_work_dir`` and ``owned_paths`` (what the guest plan creates itself, e.g. its output
        directory) are removed with ``rm -rf`` at power_off, besides what push() created."""
        check_removable_paths((remote_work_dir, *owned_paths))
        self.target, self.work_dir, self.remote_work_dir, self.caps = target, work_dir, remote_work_dir, caps
        self.owned_paths = tuple(owned_paths)
        self._pending: dict[str, Path] = {}
        self._created: list[str] = []  # files and top directories the kit created on the board
        self._pushed: dict[str, bytes] = {}  # remote path -> md5 of what the board holds
        self._client: Any = None
        self._log: BinaryIO | None = None

    @property
    def stays_up(self) -> bool:
        """A board: it keeps running after power_off."""
        return True

    @property
    def console_log(self) -> Path:
        return self.work_dir / "boot.log"

    @property
    def created(self) -> tuple[str, ...]:
        """The remote paths power_off removes (besides the remote work dir)."""
        return tuple(self._created)

    def __enter__(self) -> SshTransport:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.power_off()

    # -- connection -------------------------------------------------------------------------------

    def boot(self) -> BootResult:
        """Connect (the board is up already) and push the files recorded before; a no-op when connected."""
        if self._client is not None:
            return BootResult(0.0)
        start = time.monotonic()
        self.work_dir.mkdir(parents=True, exist_ok=True)
        if self._log is None:
            self._log = self.console_log.open("ab")
        self._note(f"# ssh {self.target.user}@{self.target.host}:{self.target.port}\n")
        self._client = self._connect()
        pending, self._pending = self._pending, {}
        self.push(pending)
        return BootResult(time.monotonic() - start)

    def reattach(self, timeout_s: float) -> BootResult:
        """Connect again after the board was power-cycled: attempts until ``timeout_s`` (a board that is
        still booting refuses or does not answer); its files are gone, so pushes start afresh."""
        start = time.monotonic()
        deadline = start + timeout_s
        self.abort()
        self._pushed.clear()
        self._created.clear()
        while True:
            try:
                return self.boot()
            except DeployError as err:
                if time.monotonic() + 1.0 >= deadline:
                    raise TransportLost(f"the board did not come back within {timeout_s:g} s after the power-cycle: "
                                        f"{err}", self.console_log) from err
                time.sleep(1.0)

    def _connect(self) -> Any:
        target, where = self.target, f"{self.target.host}:{self.target.port}"
        pkey = self._identity()
        client = paramiko.SSHClient()
        if target.known_hosts.is_file():
            try:
                client.load_host_keys(str(target.known_hosts))
            except (OSError, paramiko.SSHException) as err:
                raise HostKeyError(f"cannot read {target.known_hosts}: {err}; fix or remove the bad line") from err
        client.set_missing_host_key_policy(_KnownHostsPolicy(target))
        try:
            client.connect(target.host, port=target.port, username=target.user, pkey=pkey,
                           timeout=target.connect_timeout_s, banner_timeout=target.connect_timeout_s,
                           auth_timeout=target.connect_timeout_s, channel_timeout=target.connect_timeout_s,
                           allow_agent=False, look_for_keys=False)
        except paramiko.BadHostKeyException as err:
            client.close()
            raise HostKeyChanged(
                f"host key of {where} CHANGED: {target.known_hosts} has {err.expected_key.get_name()} "
                f"{fingerprint(err.expected_key)}, the board offers {err.key.get_name()} {fingerprint(err.key)}; "
                f"if the board was reinstalled remove its line (ssh-keygen -R '{target.where}' -f "
                f"{target.known_hosts}), otherwise someone may be intercepting the connection") from err
        except paramiko.AuthenticationException as err:
            client.close()
            raise SshAuthFailed(f"{target.user}@{where} refused the key {target.identity_file} ({err}): add its "
                                "public key to the board's authorized_keys or pass the right identity_file") from err
        except TimeoutError as err:
            client.close()
            raise SshConnectFailed(f"cannot connect to {where}: timed out after {target.connect_timeout_s:g} s; "
                                   "is the board up and on the network?", self.console_log) from err
        except paramiko.SSHException as err:
            client.close()
            raise SshConnectFailed(f"cannot talk SSH to {where}: {err}; is an SSH server listening there?",
                                   self.console_log) from err
        except OSError as err:
            client.close()
            reason = err.strerror or str(err).splitlines()[0]
            raise SshConnectFailed(f"cannot connect to {where}: {reason}; is the board up and its SSH server "
                                   "running?", self.console_log) from err
        except BaseException:
            client.close()
            raise
        return client

    def _identity(self) -> Any:
        path = self.target.identity_file
        if path is None:
            return None
        try:
            return paramiko.PKey.from_path(str(path))
        except (OSError, paramiko.SSHException, ValueError) as err:
            raise SshAuthFailed(f"cannot read the identity file {path}: {err}; give an unencrypted "
                                "OpenSSH private key") from err

    def _ssh(self) -> Any:
        """The live connection. One that broke since boot() (a TransportLost was raised for the command
        it cut) is made again for the next command, so that the kit can still clean the board up;
        when the board cannot be reached again (it rebooted, it hangs) that command is a TransportLost."""
        client = self._client
        if client is None:
            raise TransportLost(f"not connected to {self.target.host}:{self.target.port}: call boot() first",
                                self.console_log)
        transport = client.get_transport()
        if transport is None or not transport.is_active():
            self._note("# the SSH connection was lost: connecting again\n")
            with contextlib.suppress(Exception):
                client.close()
            try:
                self._client = self._connect()
            except KitError as err:
                raise TransportLost(f"the SSH connection to {self.target.host}:{self.target.port} was lost and "
                                    f"cannot be made again ({err}): did the board reboot or hang?",
                                    self.console_log) from err
            transport = self._client.get_transport()
        return transport

    def _note(self, text: str) -> None:
        if self._log is not None:
            self._log.write(text.encode(errors="replace"))
            self._log.flush()

    # -- channels ---------------------------------------------------------------------------------

    def _exec(self, command: str, timeout_s: float, stdin: bytes | None = None,
              combine: bool = True, limit: int = MAX_OUTPUT_BYTES, shown: str | None = None,
              ) -> tuple[int, bytes, bytes, float]:
        """Run ``command`` on an exec channel: ``(exit status, stdout, stderr, elapsed)``; stdin is
        ``stdin`` then EOF. -1 is the status when the board sent none (the command died of a signal)."""
        start = time.monotonic()
        deadline = start + timeout_s
        shown = command if shown is None else shown
        try:
            channel = self._ssh().open_session(timeout=max(1.0, timeout_s))
        except (paramiko.SSHException, OSError, EOFError) as err:
            raise TransportLost(f"cannot open an SSH channel to {self.target.host}:{self.target.port}: {err}",
                                self.console_log) from err
        out, err_out = bytearray(), bytearray()
        try:
            channel.set_combine_stderr(combine)
            channel.exec_command(command)
            if stdin:
                channel.settimeout(max(0.1, deadline - time.monotonic()))
                channel.sendall(stdin)
            channel.shutdown_write()
            while True:
                while channel.recv_ready():
                    out += channel.recv(65536)
                while channel.recv_stderr_ready():
                    err_out += channel.recv_stderr(65536)
                if len(out) + len(err_out) > limit:
                    raise DeployError(f"{shown[:60]!r} sent more than {limit} bytes: refused", self.console_log)
                if channel.exit_status_ready() and (channel.eof_received or channel.closed) \
                        and not channel.recv_ready() and not channel.recv_stderr_ready():
                    break
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    self._note(f"$ {shown}\n{out.decode(errors='replace')}[no exit status after {timeout_s:g} s]\n")
                    raise CommandTimeout(f"{shown[:80]!r} did not finish within {timeout_s:g} s on "
                                         f"{self.target.host}:{self.target.port}", self.console_log,
                                         out[-2000:].decode(errors="replace"))
                select.select([channel], [], [], min(remaining, _POLL_S))
            status = channel.recv_exit_status()
            if status == -1 and not _still_connected(channel):
                raise TransportLost(f"the SSH connection to {self.target.host}:{self.target.port} broke during "
                                    f"{shown[:60]!r} (no exit status): did the board reboot, hang or drop off "
                                    "the network?", self.console_log, out[-2000:].decode(errors="replace"))
        except TimeoutError as error:
            raise CommandTimeout(f"{shown[:80]!r}: the board took no input for {timeout_s:g} s",
                                 self.console_log) from error
        except (paramiko.SSHException, OSError, EOFError) as error:
            raise TransportLost(f"the SSH connection to {self.target.host}:{self.target.port} broke: {error}",
                                self.console_log) from error
        finally:
            channel.close()
        return status, bytes(out), bytes(err_out), time.monotonic() - start

    def run(self, command: str, timeout_s: float) -> CommandResult:
        """One command through an exec channel (stdout and stderr merged, stdin empty), with a deadline:
        CommandTimeout on expiry (the channel is closed; a command that never reads or writes may keep
        running on the board)."""
        # stderr joins stdout on the board (one pipe: the order they were written in, as on a console)
        status, out, _, elapsed = self._exec(f"exec 2>&1\n{command}", timeout_s, shown=command)
        text = out.decode(errors="replace")
        self._note(f"$ {command}\n{text}{'' if not text or text.endswith(chr(10)) else chr(10)}"
                   f"[exit {status}, {elapsed:.2f} s]\n")
        return CommandResult(status, text, elapsed)

    # -- files ------------------------------------------------------------------------------------

    def push(self, files: Mapping[str, Path]) -> None:
        """Before boot: recorded, pushed when boot() connects (a board is up already, so there is no
        image to put them in). After boot: each file sent over stdin to ``cat``, its md5 checked on the
        board, then moved into place. Files whose bytes the board already holds are skipped."""
        for remote in files:
            check_remote_path(remote)
        if self._client is None:
            self._pending.update(files)
            return
        for remote, local in files.items():
            try:
                data = local.read_bytes()
            except OSError as err:
                raise UserError(f"cannot read {local}: {err.strerror}; build it first or fix the path") from err
            digest = hashlib.md5(data).hexdigest().encode()
            if self._pushed.get(remote) == digest:
                continue
            self._push_one(remote, data, digest.decode())
            self._pushed[remote] = digest

    def _push_one(self, remote: str, data: bytes, digest: str) -> None:
        parent, tmp = str(PurePosixPath(remote).parent), remote + TMP_SUFFIX
        parents = " ".join(shell_quote(p) for p in _parents(remote))
        probe = f"for d in {parents}; do [ -d \"$d\" ] || echo \"KIT-NEWDIR $d\"; done; " if parents else ""
        existed = f"[ -e {shell_quote(remote)} ] && echo KIT-EXISTED; "
        command = (f"{probe}{existed}mkdir -p {shell_quote(parent)} && cat > {shell_quote(tmp)} && "
                   f"md5sum {shell_quote(tmp)}")
        status, out, err, elapsed = self._exec(command, self.target.command_timeout_s, stdin=data, combine=False)
        lines = out.decode(errors="replace").splitlines()
        new_dirs = [line.removeprefix("KIT-NEWDIR ") for line in lines if line.startswith("KIT-NEWDIR ")]
        if new_dirs:
            self._remember(new_dirs[0])  # the top one: everything under it is the kit's
        sums = [line.split()[0] for line in lines if line and not line.startswith("KIT-")]
        self._note(f"$ push {remote} ({len(data)} bytes, md5 {digest}) [exit {status}, {elapsed:.2f} s]\n")
        if status != 0 or not sums:
            reason = err.decode(errors="replace").strip().splitlines()[:1] or [f"exit status {status}"]
            self._exec(f"rm -f {shell_quote(tmp)}", self.target.command_timeout_s)
            if "No space left" in reason[0]:
                raise BoardFull(f"cannot push {remote} ({len(data)} bytes) to {self.target.host}: {reason[0]}; free "
                                "space there or point the board file's work_dir at a larger filesystem")
            raise DeployError(f"cannot push {remote} to {self.target.host}: {reason[0]}", self.console_log)
        if sums[-1] != digest:
            self._exec(f"rm -f {shell_quote(tmp)}", self.target.command_timeout_s)
            raise DeployError(f"push of {remote} to {self.target.host} arrived damaged: md5 {sums[-1]} on the "
                              f"board, {digest} here", self.console_log)
        if "KIT-EXISTED" not in lines:
            self._remember(remote)
        status, _, err, _ = self._exec(f"mv -f {shell_quote(tmp)} {shell_quote(remote)}",
                                       self.target.command_timeout_s, combine=False)
        if status != 0:
            raise DeployError(f"cannot move {tmp} into place on {self.target.host}: "
                              f"{err.decode(errors='replace').strip()[:200]}", self.console_log)

    def _remember(self, path: str) -> None:
        if not any(path == done or path.startswith(done.rstrip("/") + "/") for done in self._created):
            self._created.append(path)

    def fetch(self, remote_dir: str) -> dict[str, bytes]:
        """Every regular file under ``remote_dir`` (``tar cf - . | gzip -1`` over an exec channel),
        decoded under the fetch caps of ``deploy.framing``."""
        status, raw, err, elapsed = self._exec(fetch_archive_command(remote_dir), self.target.command_timeout_s,
                                               combine=False, limit=self.caps.stream_bytes + 1)
        message = err.decode(errors="replace").strip()
        self._note(f"$ fetch {remote_dir} ({len(raw)} bytes of tar.gz) [exit {status}, {elapsed:.2f} s]\n"
                   + (message + "\n" if message else ""))
        if status != 0:
            first = message.splitlines()[0] if message else f"exit status {status}"
            raise DeployError(f"cannot fetch {remote_dir} from {self.target.host}: {first}", self.console_log)
        files = decode_gzip_tar(raw, self.caps)
        if files is None:
            raise FramingError(f"the archive of {remote_dir} from {self.target.host} arrived damaged "
                               "(gzip CRC or tar header)", self.console_log)
        return files

    # -- stopping ---------------------------------------------------------------------------------

    def power_off(self) -> None:
        """Remove what the kit pushed (the files and directories it created, and the remote work dir) and
        disconnect. The board itself stays up. Safe to call more than once and after the link broke."""
        if self._client is None:
            return
        doomed = " ".join(shell_quote(p) for p in [*self._created, *self.owned_paths, self.remote_work_dir])
        with contextlib.suppress(DeployError):
            result = self.run(f"rm -rf {doomed}", self.target.command_timeout_s)
            if result.ok:
                self._created.clear()
                self._pushed.clear()
        self.abort()

    def abort(self) -> None:
        """Close the connection at once (nothing is removed from the board)."""
        client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(Exception):
                client.close()
        if self._log is not None:
            with contextlib.suppress(OSError):
                self._log.close()
            self._log = None
