"""Board faults over SSH (issue 8 item 7), each through `invoke run --board` on the QEMU board guest:
the exit class, one line saying what to do, the partial bundle kept, the board left as found, and an
end within a stated bound."""

from __future__ import annotations

import shutil
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from deploy.ssh import SshTarget, SshTransport
from kbuild.make import build_module_dir
from tests.boards.guest import Board, free_port
from tests.boards.test_board_run import board_state, edited_example, invoke, ssh_board_file, verdict
from tests.conftest import debian_kernel, target_toolchain

pytestmark = [pytest.mark.board, pytest.mark.faults]

DATA = Path(__file__).parent / "data"


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error: ")]


def test_module_stuck_in_init_times_out_and_the_board_is_cleaned(board: Board, known_hosts: Path,
                                                                  target: SshTarget, tmp_path: Path) -> None:
    """plan_s 12: the kit's five modules finish, slow_init's init sleeps 25 s. The plan's deadline passes
    (exit 3); the clean-up waits for the init to return, unloads it and removes the kit's files."""
    shutil.copytree(DATA / "slow_init", tmp_path / "slow_init")
    (slow,) = build_module_dir(debian_kernel("6.1"), target_toolchain("6.1"), tmp_path / "slow_init")
    board_file = ssh_board_file(board, known_hosts, tmp_path / "slowboard.toml")
    board_file.write_text(board_file.read_text().replace("plan_s = 300", "plan_s = 12"))
    before = board_state(target, tmp_path)
    start = time.monotonic()
    run = invoke("run", "--board", str(board_file), "--results", str(tmp_path / "r"), "--module", str(slow.ko))
    elapsed = time.monotonic() - start
    assert run.returncode == 3, run.stdout[-2000:] + run.stderr[-2000:]
    assert "did not finish within 12 s" in run.stderr
    assert elapsed < 120, elapsed  # 12 s of plan + at most INIT_WAIT_S for the init, not a hung harness
    bundle = (tmp_path / "r" / "latest").resolve()
    assert (bundle / "verdict.json").is_file() and (bundle / "boot.log").is_file()
    assert (bundle / "ktap" / "kit_vmalloc.ktap").is_file()  # the kit's batch, fetched before slow_init ran
    assert board_state(target, tmp_path) == before  # slow_init unloaded once its init returned; no files


def test_changed_host_key_is_refused_with_one_line(board: Board, target: SshTarget, tmp_path: Path) -> None:
    other = tmp_path / "known_hosts"
    other.write_text(f"[{board.host}]:{board.port} ssh-ed25519 "
                     "AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl\n")
    board_file = ssh_board_file(board, other, tmp_path / "b.toml")
    run = invoke("run", "--board", str(board_file), "--results", str(tmp_path / "r"))
    assert run.returncode == 2, run.stderr
    (line,) = error_lines(run.stderr)
    assert "host key of 127.0.0.1" in line and "CHANGED" in line and "ssh-keygen -R" in line


def test_unknown_host_key_needs_accept_new_which_records_it(board: Board, tmp_path: Path) -> None:
    known = tmp_path / "known_hosts"
    board_file = ssh_board_file(board, known, tmp_path / "b.toml")
    refused = invoke("run", "--board", str(board_file), "--results", str(tmp_path / "r1"))
    assert refused.returncode == 2, refused.stderr
    (line,) = error_lines(refused.stderr)
    assert "is unknown" in line and "accept_new" in line
    board_file.write_text(board_file.read_text().replace("accept_new = false", "accept_new = true"))
    accepted = invoke("run", "--board", str(board_file), "--results", str(tmp_path / "r2"))
    assert accepted.returncode == 0, accepted.stderr[-2000:]
    assert known.read_text() == board.known_hosts_line()  # recorded: the next run checks against it


def test_no_ssh_server_is_could_not_tell_with_the_bundle_kept(board: Board, known_hosts: Path,
                                                              tmp_path: Path) -> None:
    board_file = edited_example("example-ssh", {"host": '"127.0.0.1"', "port": str(free_port()),
                                                "identity_file": f'"{board.client_key}"',
                                                "known_hosts": f'"{known_hosts}"'}, tmp_path / "b.toml")
    run = invoke("run", "--board", str(board_file), "--results", str(tmp_path / "r"))
    assert run.returncode == 3, run.stderr
    assert "cannot connect to 127.0.0.1" in run.stderr and "is the board up" in run.stderr
    assert ((tmp_path / "r" / "latest").resolve() / "verdict.json").is_file()


def test_wrong_client_key_is_bad_input(board: Board, known_hosts: Path, tmp_path: Path) -> None:
    board_file = edited_example("example-ssh", {"host": '"127.0.0.1"', "port": str(board.port),
                                                "identity_file": f'"{board.other_key}"',
                                                "known_hosts": f'"{known_hosts}"'}, tmp_path / "b.toml")
    run = invoke("run", "--board", str(board_file), "--results", str(tmp_path / "r"))
    assert run.returncode == 2, run.stderr
    (line,) = error_lines(run.stderr)
    assert "refused the key" in line and "authorized_keys" in line


def slow_module(tmp_path: Path, init_ms: int) -> Path:
    source = tmp_path / "slow_init"
    shutil.copytree(DATA / "slow_init", source)
    (source / "slow_init.c").write_text((source / "slow_init.c").read_text().replace("= 25000;", f"= {init_ms};"))
    (slow,) = build_module_dir(debian_kernel("6.1"), target_toolchain("6.1"), source)
    return slow.ko


# Board shell code, started detached on the board: after DELAY seconds it kills every dropbear session
# process (the daemon itself, whose parent is PID 1, stays), as a network that drops the link would.
DROP_SESSIONS = ("setsid sh -c 'sleep DELAY; for p in $(pidof dropbear); do "
                 "[ \"$(awk \"/^PPid/ {print \\$2}\" /proc/$p/status)\" = 1 ] || kill $p; done' "
                 "</dev/null >/dev/null 2>&1 &")


def test_connection_dropped_mid_plan_is_could_not_tell_and_the_board_is_cleaned(
        board: Board, known_hosts: Path, target: SshTarget, tmp_path: Path) -> None:
    """The link drops while slow_init is in its init: exit 3 naming the broken connection, the kit's batch
    kept, and the kit connects again to unload slow_init and remove its files."""
    slow = slow_module(tmp_path, 15000)
    board_file = ssh_board_file(board, known_hosts, tmp_path / "dropboard.toml")
    before = board_state(target, tmp_path)
    with SshTransport(target, tmp_path / "chaos") as ssh:
        ssh.boot()
        # the kit's five modules take ~3-6 s here; slow_init then holds the plan for 15 s
        assert ssh.run(DROP_SESSIONS.replace("DELAY", "12"), 30).ok
    start = time.monotonic()
    run = invoke("run", "--board", str(board_file), "--results", str(tmp_path / "r"), "--module", str(slow))
    assert run.returncode == 3, run.stdout[-2000:] + run.stderr[-2000:]
    assert "SSH connection" in run.stderr and "broke" in run.stderr, run.stderr
    assert time.monotonic() - start < 120
    bundle = (tmp_path / "r" / "latest").resolve()
    assert (bundle / "ktap" / "kit_vmalloc.ktap").is_file()  # fetched before the link dropped
    assert "connecting again" in (bundle / "boot.log").read_text()
    assert board_state(target, tmp_path) == before


def test_a_full_work_dir_filesystem_is_bad_input_and_nothing_stays(board: Board, known_hosts: Path,
                                                                     target: SshTarget, tmp_path: Path) -> None:
    """A board whose small filesystem cannot take the modules: exit 2 saying what to do, nothing left."""
    with SshTransport(target, tmp_path / "mount") as ssh:
        ssh.boot()
        assert ssh.run("mkdir -p /mnt/small && mount -t tmpfs -o size=64k tmpfs /mnt/small", 30).ok
    try:
        board_file = ssh_board_file(board, known_hosts, tmp_path / "fullboard.toml")
        board_file.write_text(board_file.read_text().replace('work_dir = "/tmp/kmodkit"',
                                                             'work_dir = "/mnt/small/kmodkit"'))
        run = invoke("run", "--board", str(board_file), "--results", str(tmp_path / "r"))
        assert run.returncode == 2, run.stdout[-2000:] + run.stderr[-2000:]
        (line,) = error_lines(run.stderr)
        assert "No space left on device" in line and "work_dir" in line
        assert ((tmp_path / "r" / "latest").resolve() / "verdict.json").is_file()
        with SshTransport(target, tmp_path / "look") as ssh:
            ssh.boot()
            assert ssh.run("ls -A /mnt/small", 30).output == ""
    finally:
        with SshTransport(target, tmp_path / "umount") as ssh:
            ssh.boot()
            ssh.run("umount /mnt/small", 30)


def test_board_that_dies_on_an_oops_is_reported_with_the_kits_results_kept(tmp_path: Path) -> None:
    """A board of its own (this one dies): fault_oops oopses in its init, oops=panic panics it and it
    goes down (QEMU's -no-reboot: it never comes back). Exit 3 saying the board is gone, within the
    connect timeout; the kit's five modules, run and fetched before, are in the bundle."""
    from tests.boards.guest import BoardError, start_board
    from tests.conftest import debian_busybox, debian_target

    shutil.copytree(Path(__file__).parents[1] / "faults" / "data" / "fault_oops", tmp_path / "fault_oops")
    (oops,) = build_module_dir(debian_kernel("6.1"), target_toolchain("6.1"), tmp_path / "fault_oops")
    try:
        doomed = start_board(debian_target("6.1").qemu, debian_kernel("6.1"), debian_busybox("6.1"), tmp_path / "g")
    except BoardError as err:
        pytest.fail(f"the board guest did not come up: {err}", pytrace=False)
    try:
        known = tmp_path / "known_hosts"
        known.write_text(doomed.known_hosts_line())
        board_file = ssh_board_file(doomed, known, tmp_path / "doomed.toml")
        start = time.monotonic()
        run = invoke("run", "--board", str(board_file), "--results", str(tmp_path / "r"), "--module", str(oops.ko))
        assert run.returncode == 3, run.stdout[-2000:] + run.stderr[-2000:]
        assert "did the board reboot" in run.stderr, run.stderr
        assert time.monotonic() - start < 120
        assert doomed.process.wait(timeout=30) is not None  # the board really went down
        assert b"Internal error: " in doomed.console.read_bytes()  # die(): the oops, then its panic
        bundle = (tmp_path / "r" / "latest").resolve()
        doc = (bundle / "verdict.json").read_text()
        assert '"status": "error"' in doc
        assert (bundle / "ktap" / "kit_alloc.ktap").is_file()
    finally:
        doomed.stop()


def test_a_board_running_another_kernel_is_bad_input_before_anything_loads(
        board: Board, known_hosts: Path, target: SshTarget, tmp_path: Path) -> None:
    """The board file says arm-5.10, the board runs 6.1: exit 2 naming both releases; nothing loaded."""
    board_file = ssh_board_file(board, known_hosts, tmp_path / "b.toml")
    board_file.write_text(board_file.read_text().replace('target = "arm-6.1"', 'target = "arm-5.10"'))
    before = board_state(target, tmp_path)
    run = invoke("run", "--board", str(board_file), "--results", str(tmp_path / "r"))
    assert run.returncode == 2, run.stdout[-2000:] + run.stderr[-2000:]
    (line,) = error_lines(run.stderr)
    assert "the board runs kernel 6.1.0-" in line and "built for 5.10.0-" in line and "target" in line
    assert not ((tmp_path / "r" / "latest").resolve() / "status.txt").exists()  # the plan never ran
    assert board_state(target, tmp_path) == before


class PowerSwitch(threading.Thread):
    """The lab's power switch of a QEMU board: the board file's reset command (a host shell command)
    creates ``request`` and waits; this thread then cuts the power (kills QEMU), releases the command and
    boots the board again with the same host key and port, as a board that is power-cycled comes back."""

    def __init__(self, boot: Callable[[], Board], request: Path) -> None:
        super().__init__(daemon=True)
        self.boot, self.request = boot, request
        self.board = boot()
        self.cycles = 0
        self.stopping = threading.Event()

    @property
    def reset_command(self) -> str:
        return f"touch {self.request} && while [ -e {self.request} ]; do sleep 0.1; done"

    def run(self) -> None:
        while not self.stopping.wait(0.1):
            if self.request.exists():
                self.board.stop()
                self.request.unlink()
                self.cycles += 1
                self.board = self.boot()

    def stop(self) -> None:
        self.stopping.set()
        self.join(timeout=60)
        self.board.stop()


def oops_then_crc7(tmp_path: Path) -> tuple[Path, Path]:
    """fault_oops (built here: it takes the board down) and the kernel package's crc7.ko (the next module)."""
    shutil.copytree(Path(__file__).parents[1] / "faults" / "data" / "fault_oops", tmp_path / "fault_oops")
    (oops,) = build_module_dir(debian_kernel("6.1"), target_toolchain("6.1"), tmp_path / "fault_oops")
    modules_dir = debian_kernel("6.1").modules_dir
    assert modules_dir is not None
    return oops.ko, next(modules_dir.rglob("crc7.ko"))


def with_power(board_file: Path, switch: PowerSwitch) -> None:
    board_file.write_text(board_file.read_text() +
                          f"\n[power]\nreset_command = '{switch.reset_command}'\nup_after_s = 90\n")


def power_cycled_once(run: subprocess.CompletedProcess[str], switch: PowerSwitch, results: Path) -> dict[str, str]:
    """One power-cycle, exit 3, fault_oops the one error, crc7 checked after it: the statuses by check id."""
    assert switch.cycles == 1
    assert run.returncode == 3, run.stdout[-3000:] + run.stderr[-3000:]
    statuses = {c["id"]: c["status"] for c in verdict(results)["checks"]}  # type: ignore[union-attr]
    assert [k for k, v in statuses.items() if v in ("fail", "error")] == ["fault_oops.board_down"]
    assert statuses["crc7.proc_modules.size"] == "pass"
    return statuses


def test_power_cycle_brings_the_board_back_and_the_run_goes_on(tmp_path: Path) -> None:
    """[power] reset_command: fault_oops takes the board down; the kit power-cycles it, waits for it, and
    runs the next module (crc7). The lost module is one error (exit 3); everything else is checked."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from tests.boards.guest import start_board
    from tests.conftest import debian_busybox, debian_target

    oops, crc7 = oops_then_crc7(tmp_path)
    host_key, port = Ed25519PrivateKey.generate(), free_port()
    switch = PowerSwitch(lambda: start_board(debian_target("6.1").qemu, debian_kernel("6.1"),
                                             debian_busybox("6.1"), tmp_path / "g", host_key=host_key, port=port),
                         tmp_path / "power-request")
    switch.start()
    try:
        known = tmp_path / "known_hosts"
        known.write_text(switch.board.known_hosts_line())
        board_file = ssh_board_file(switch.board, known, tmp_path / "cycled.toml")
        with_power(board_file, switch)
        run = invoke("run", "--board", str(board_file), "--results", str(tmp_path / "r"),
                     "--module", str(oops), "--module", str(crc7))
        statuses = power_cycled_once(run, switch, tmp_path / "r")
        assert statuses["crc7.no_leak"] == "pass"
        assert statuses["kit_vmalloc.proc_modules.size"] == "pass"
        status = (tmp_path / "r" / "latest" / "status.txt").read_text()
        assert "kit_alloc insmod=0 rmmod=0" in status and "crc7 insmod=0 rmmod=0" in status  # both boots
        assert "Internal error: " in (tmp_path / "g" / "console.log").read_text(errors="replace")
        with SshTransport(SshTarget("127.0.0.1", port, "root", switch.board.client_key, known), tmp_path / "s") as ssh:
            ssh.boot()
            assert "No such file" in ssh.run("ls -d /tmp/kmodkit; grep -c '^crc7 ' /proc/modules", 30).output
    finally:
        switch.stop()
