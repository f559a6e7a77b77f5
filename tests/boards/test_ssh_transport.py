"""The SSH transport against a QEMU guest acting as a board (tests/boards/guest.py): host keys, commands,
push, fetch, cleanup. All traffic goes to 127.0.0.1 (QEMU's forward to the guest's port 22)."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import time
from pathlib import Path

import pytest

from deploy.base import Transport
from deploy.errors import CommandTimeout, DeployError
from deploy.ssh import HostKeyChanged, HostKeyUnknown, SshAuthFailed, SshConnectFailed, SshTarget, SshTransport
from tests.boards.guest import Board, free_port, make_client_key

pytestmark = [pytest.mark.e2e, pytest.mark.board]

KO = Path(__file__).parents[1] / "data" / "ko" / "6.1"


def sha256_fingerprint(host_key: str) -> str:
    blob = base64.b64decode(host_key.split()[1])
    return "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")


def board_md5(transport: SshTransport, remote: str) -> str:
    result = transport.run(f"md5sum {remote}", 30)
    assert result.ok, result.output
    return result.output.split()[0]


def test_is_a_transport(target: SshTarget, tmp_path: Path) -> None:
    assert isinstance(SshTransport(target, tmp_path), Transport)


def test_run_exact_output_and_status(target: SshTarget, tmp_path: Path) -> None:
    with SshTransport(target, tmp_path) as ssh:
        ssh.boot()
        result = ssh.run("echo hello; echo 'to stderr' >&2; printf 'no newline'; exit 3", 30)
        assert result.exit_status == 3
        assert result.output == "hello\nto stderr\nno newline"
        assert ssh.run("true", 30).exit_status == 0
        assert ssh.run("uname -r", 30).output.strip().startswith("6.1.")
    log = ssh.console_log.read_text()
    assert "$ echo hello" in log and "[exit 3," in log


def test_command_timeout(target: SshTarget, tmp_path: Path) -> None:
    with SshTransport(target, tmp_path) as ssh:
        ssh.boot()
        start = time.monotonic()
        with pytest.raises(CommandTimeout) as err:
            ssh.run("echo started; sleep 30", 2.0)
        assert time.monotonic() - start < 6.0
        assert "\n" not in str(err.value) and "2 s" in str(err.value)
        assert ssh.run("echo still here", 30).output == "still here\n"  # the connection survives


def test_push_binary_before_and_after_boot(target: SshTarget, tmp_path: Path) -> None:
    before, after = KO / "crc7.ko", KO / "kh5alloc.ko"
    with SshTransport(target, tmp_path) as ssh:
        ssh.push({"/tmp/kmodkit/early/crc7.ko": before})  # recorded: pushed when boot() connects
        ssh.boot()
        ssh.push({"/tmp/kmodkit/late/sub/kh5alloc.ko": after})
        assert board_md5(ssh, "/tmp/kmodkit/early/crc7.ko") == hashlib.md5(before.read_bytes()).hexdigest()
        assert board_md5(ssh, "/tmp/kmodkit/late/sub/kh5alloc.ko") == hashlib.md5(after.read_bytes()).hexdigest()
        assert ssh.run("ls /tmp/kmodkit/late/sub", 30).output == "kh5alloc.ko\n"  # no .kit-tmp left


def test_fetch_directory_byte_exact(target: SshTarget, tmp_path: Path) -> None:
    files = {"a.ko": KO / "ts_kmp.ko", "sub/deeper/b.ko": KO / "nls_cp437.ko"}
    with SshTransport(target, tmp_path) as ssh:
        ssh.boot()
        ssh.push({f"/tmp/kmodkit/out/{name}": local for name, local in files.items()})
        assert ssh.run("printf 'x\\001\\377\\n\\n' > /tmp/kmodkit/out/odd.txt && : > /tmp/kmodkit/out/empty", 30).ok
        fetched = ssh.fetch("/tmp/kmodkit/out")
    expected = {name: local.read_bytes() for name, local in files.items()}
    expected |= {"odd.txt": b"x\x01\xff\n\n", "empty": b""}
    assert fetched == expected


def test_fetch_missing_directory_fails(target: SshTarget, tmp_path: Path) -> None:
    with SshTransport(target, tmp_path) as ssh:
        ssh.boot()
        with pytest.raises(DeployError, match="cannot fetch /no/such/dir"):
            ssh.fetch("/no/such/dir")


def test_unknown_host_key_refused(board: Board, target: SshTarget, tmp_path: Path) -> None:
    empty = tmp_path / "empty_known_hosts"
    empty.write_text("")
    ssh = SshTransport(dataclasses.replace(target, known_hosts=empty), tmp_path / "work")
    with pytest.raises(HostKeyUnknown) as err:
        ssh.boot()
    message = str(err.value)
    assert "\n" not in message
    assert f"127.0.0.1:{board.port}" in message and sha256_fingerprint(board.host_key) in message
    assert "accept_new" in message
    assert empty.read_text() == ""
    assert "$ " not in ssh.console_log.read_text()  # nothing was run
    with pytest.raises(DeployError, match="call boot"):
        ssh.run("true", 5)


def test_accept_new_records_key(board: Board, target: SshTarget, tmp_path: Path) -> None:
    fresh = tmp_path / "ssh" / "known_hosts"  # does not exist yet
    with SshTransport(dataclasses.replace(target, known_hosts=fresh, accept_new=True), tmp_path / "w1") as ssh:
        ssh.boot()
        assert ssh.run("echo ok", 30).output == "ok\n"
    assert fresh.read_text() == board.known_hosts_line()
    with SshTransport(dataclasses.replace(target, known_hosts=fresh, accept_new=False), tmp_path / "w2") as ssh:
        ssh.boot()  # the recorded key is now known
        assert ssh.run("echo again", 30).output == "again\n"
    assert fresh.read_text() == board.known_hosts_line()  # not recorded twice


def test_changed_host_key_refused_even_with_accept_new(board: Board, target: SshTarget, tmp_path: Path) -> None:
    impostor = make_client_key(tmp_path / "impostor").split()
    changed = tmp_path / "changed_known_hosts"
    changed.write_text(f"[127.0.0.1]:{board.port} {impostor[0]} {impostor[1]}\n")
    for accept_new in (False, True):
        ssh = SshTransport(dataclasses.replace(target, known_hosts=changed, accept_new=accept_new), tmp_path / "w")
        with pytest.raises(HostKeyChanged) as err:
            ssh.boot()
        message = str(err.value)
        assert "\n" not in message and "CHANGED" in message
        assert sha256_fingerprint(board.host_key) in message
        assert sha256_fingerprint(" ".join(impostor)) in message
    assert changed.read_text().count("\n") == 1


def test_wrong_client_key_refused(board: Board, target: SshTarget, tmp_path: Path) -> None:
    ssh = SshTransport(dataclasses.replace(target, identity_file=board.other_key), tmp_path)
    with pytest.raises(SshAuthFailed) as err:
        ssh.boot()
    assert "\n" not in str(err.value) and "authorized_keys" in str(err.value)


def test_connection_refused(target: SshTarget, tmp_path: Path) -> None:
    closed = dataclasses.replace(target, port=free_port(), connect_timeout_s=5.0)  # nothing listens there
    with pytest.raises(SshConnectFailed) as err:
        SshTransport(closed, tmp_path).boot()
    assert "\n" not in err.value.what and "cannot connect to 127.0.0.1:" in err.value.what


def test_power_off_removes_kit_files_only(target: SshTarget, tmp_path: Path) -> None:
    with SshTransport(target, tmp_path / "setup") as ssh:
        ssh.boot()
        assert ssh.run("mkdir -p /srv/keep && echo mine > /srv/keep/user.txt", 30).ok
    with SshTransport(target, tmp_path / "kit") as ssh:
        ssh.push({"/kit-board-test/a/b/crc7.ko": KO / "crc7.ko", "/srv/keep/kit.ko": KO / "ts_kmp.ko",
                  "/tmp/kmodkit/x.ko": KO / "kh5foot.ko"})
        ssh.boot()
        assert ssh.run("mkdir -p /tmp/kmodkit/made/by/plan && ls /kit-board-test/a/b /srv/keep", 30).ok
        assert set(ssh.created) == {"/kit-board-test", "/srv/keep/kit.ko", "/tmp/kmodkit"}
        ssh.power_off()
        ssh.power_off()  # twice is fine
    with SshTransport(target, tmp_path / "check") as ssh:
        ssh.boot()
        result = ssh.run("ls -d /kit-board-test /tmp/kmodkit /srv/keep/kit.ko 2>/dev/null; cat /srv/keep/user.txt", 30)
        assert result.output == "mine\n"  # the kit's files are gone, the user's are kept, the board is up
        assert ssh.run("rm -rf /srv/keep", 30).ok


def test_collect_bundle_over_ssh(board: Board, target: SshTarget, tmp_path: Path) -> None:
    """The kit's guest plan on the board: the kernel's own crc7.ko (built for exactly this kernel)."""
    from deploy.session import GuestPaths, collect_bundle
    from tests.conftest import debian_kernel

    modules_dir = debian_kernel("6.1").modules_dir
    assert modules_dir is not None
    ko = next(modules_dir.rglob("crc7.ko"))
    ssh = SshTransport(target, tmp_path / "work")
    result = collect_bundle(ssh, [ko], tmp_path / "bundle", log=lambda _line: None, paths=GuestPaths("/tmp/kmodkit"))
    names = {p.relative_to(result.bundle_dir).as_posix() for p in result.files}
    for expected in ("boot.log", "meminfo.txt", "cmdline.txt", "status.txt", "vmallocinfo/crc7.before.txt",
                     "vmallocinfo/crc7.after.txt", "modules/crc7.txt"):
        assert expected in names, sorted(names)
    assert (result.bundle_dir / "vmallocinfo/crc7.before.txt").read_text().strip()
    with SshTransport(target, tmp_path / "check") as check:
        check.boot()
        # cleaned up, unloaded, kptr_restrict as found
        assert check.run("[ -e /tmp/kmodkit ] || echo gone; lsmod | grep -c crc7; cat /proc/sys/kernel/kptr_restrict",
                         30).output == "gone\n0\n0\n"
