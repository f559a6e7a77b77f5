"""The serial-console board (issue 8 items 3, 4, 6): `invoke run --board` on a QEMU guest whose only link
is its console (a pty, getty and login with a password, the kernel's messages and a chatty driver's on
the same console), from a board file made the way README's "Run on your board" says. The verdict must
be the QEMU transport's on the same kernel and RAM, check for check; the board is left as found, its
console back at the login prompt. Then the transport alone over a console server (``socket://``)."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from deploy.serial import SerialTarget, SerialTransport
from tests.boards.conftest import SERIAL_PASSWORD
from tests.boards.guest import BoardError
from tests.boards.serial_guest import Rfc2217Server, SerialBoard, start_serial_board, wait_for_login
from tests.boards.test_board_run import REPO, checks_by_id, edited_example, verdict, watch_three_times
from tests.conftest import debian_busybox, debian_kernel, debian_target

pytestmark = [pytest.mark.board]

BOARD_STATE = "ls -d /tmp/kmodkit 2>&1; grep -c '^kit_' /proc/modules; cat /proc/sys/kernel/kptr_restrict"


def serial_board_file(device: str, out: Path, **values: str) -> Path:
    return edited_example("example-serial", {"device": f'"{device}"', **values}, out)


def invoke_serial(*args: str, password: str = SERIAL_PASSWORD,
                  timeout_s: float = 900) -> subprocess.CompletedProcess[str]:
    """``BOARD_PASSWORD=... invoke ARGS`` as README says (the example board file's password_env)."""
    return subprocess.run([sys.executable, "-m", "invoke", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=timeout_s, env={**os.environ, "BOARD_PASSWORD": password})


def serial_state(device: str, work: Path) -> str:
    """What a run must leave as it found: the kit's work dir, kit modules loaded, kptr_restrict."""
    with SerialTransport(SerialTarget(device, password=SERIAL_PASSWORD), work) as console:
        console.boot()
        return console.run(BOARD_STATE, 30).output


def at_login_prompt(device: str) -> bool:
    """Enter on the console gives the login prompt (not a shell's): nobody is left logged in."""
    try:
        wait_for_login(device, time.monotonic() + 10)
    except BoardError:
        return False
    return True


def test_run_on_serial_board_matches_the_qemu_run(serial_board: SerialBoard, qemu_reference: dict[str, str],
                                                  tmp_path: Path) -> None:
    board_file = serial_board_file(serial_board.device, tmp_path / "mybench.toml")
    before = serial_state(serial_board.device, tmp_path / "before")
    assert "No such file" in before, before

    run = invoke_serial("run", "--board", str(board_file), "--results", str(tmp_path / "r"))
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    doc = verdict(tmp_path / "r")
    assert doc["status"] == "pass" and doc["target"] == "mybench"
    assert checks_by_id(doc) == qemu_reference  # the same checks, the same statuses
    assert at_login_prompt(serial_board.device)
    assert serial_state(serial_board.device, tmp_path / "after") == before

    bundle = (tmp_path / "r" / "latest").resolve()
    assert 'transport = "serial"' in (bundle / "target.toml").read_text()
    console = (bundle / "boot.log").read_text(errors="replace")
    # the console carried the kernel's lines while the kit worked: the chatty driver's, and the KTAP
    # lines of the kit's own modules (printk at KERN_INFO, under the board's console loglevel)
    assert console.count("kitnoise: a chatty driver") > 20 and "kit_vmalloc: # " in console
    assert "password sent (not logged)" in console and SERIAL_PASSWORD not in console
    for module in ("kit_vmalloc", "kit_vmalloc_exec", "kit_ioremap", "kit_kmap", "kit_alloc"):
        assert (bundle / "ktap" / f"{module}.ktap").read_text().startswith("KTAP version 1")


@pytest.fixture(scope="module")
def console_server_board(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SerialBoard]:
    """A second serial board whose console is a TCP server on 127.0.0.1 (a console server's port)."""
    board = start_serial_board(debian_target("6.1").qemu, debian_kernel("6.1"), debian_busybox("6.1"),
                               tmp_path_factory.mktemp("console-server"), password=SERIAL_PASSWORD,
                               link="socket", noise_ms=50)
    try:
        yield board
    finally:
        board.stop()


def test_transport_over_a_console_server_url(console_server_board: SerialBoard, tmp_path: Path) -> None:
    """``socket://``: login, a command's output without the kernel's lines, a push checked by md5 on the
    board, a fetch, and at the end the work dir gone and the console at its login prompt."""
    device = console_server_board.device
    assert device.startswith("socket://127.0.0.1:")
    payload = tmp_path / "blob.bin"
    payload.write_bytes(os.urandom(96 * 1024))
    with SerialTransport(SerialTarget(device, password=SERIAL_PASSWORD), tmp_path / "w") as console:
        console.boot()
        listing = console.run("for i in 1 2 3 4 5 6 7 8; do echo line $i; sleep 0.1; done", 30)
        assert listing.output.splitlines() == [f"line {i}" for i in range(1, 9)]  # noise landed meanwhile
        console.push({"/tmp/kmodkit/in/blob.bin": payload})
        on_board = console.run("md5sum /tmp/kmodkit/in/blob.bin", 30).output.split()[0]
        assert on_board == hashlib.md5(payload.read_bytes()).hexdigest()
        console.run("mkdir -p /tmp/kmodkit/out && dmesg > /tmp/kmodkit/out/dmesg.txt && cp "
                    "/tmp/kmodkit/in/blob.bin /tmp/kmodkit/out/", 30)
        files = console.fetch("/tmp/kmodkit/out")
        assert files["blob.bin"] == payload.read_bytes() and b"kitnoise" in files["dmesg.txt"]
        ((size, wire, _seconds),) = console.push_stats
        assert size == 96 * 1024 and wire > size  # random bytes do not compress: base64 adds a third
    log = (tmp_path / "w" / "boot.log").read_text(errors="replace")
    assert "kitnoise" in log  # the kernel's lines were on the console during all that
    assert at_login_prompt(device)
    assert "No such file" in serial_state(device, tmp_path / "state")


def test_a_kit_shell_left_by_a_killed_run_is_taken_over_and_left(console_server_board: SerialBoard,
                                                                 tmp_path: Path) -> None:
    """A run killed mid-way (no clean-up at all: abort) leaves the console in the kit's shell, logged in;
    the next attach finds that shell (no login prompt, no prompt at all), uses it, and leaves the console
    at its login prompt."""
    device = console_server_board.device
    killed = SerialTransport(SerialTarget(device, password=SERIAL_PASSWORD), tmp_path / "killed")
    killed.boot()
    assert killed.run("echo $KIT_CONSOLE", 30).output.strip() == "login"
    killed.abort()  # the process died: nothing sent, the port closed
    with SerialTransport(SerialTarget(device, password=SERIAL_PASSWORD), tmp_path / "next") as console:
        console.boot()
        assert console.run("echo $KIT_CONSOLE", 30).output.strip() == "login"
    log = (tmp_path / "next" / "boot.log").read_text(errors="replace")
    assert "in a kit shell already (left by an earlier run that started it from a login)" in log
    assert at_login_prompt(device)


def test_transport_over_an_rfc2217_console_server(console_server_board: SerialBoard, tmp_path: Path) -> None:
    """``rfc2217://``: the kit negotiates the COM-port options with a telnet console server in front of the
    board's console, logs in, pushes (md5 checked), runs, and logs out."""
    server = Rfc2217Server(console_server_board.device)
    try:
        payload = tmp_path / "small.bin"
        payload.write_bytes(os.urandom(20 * 1024))
        with SerialTransport(SerialTarget(server.url, password=SERIAL_PASSWORD), tmp_path / "w") as console:
            console.boot()
            assert console.run("uname -r", 30).output.strip() == debian_kernel("6.1").release
            console.push({"/tmp/kmodkit/small.bin": payload})
            assert len(console.push_stats) == 1
        assert "# login as root" in (tmp_path / "w" / "boot.log").read_text(errors="replace")
    finally:
        server.stop()
    assert at_login_prompt(console_server_board.device)
    assert "No such file" in serial_state(console_server_board.device, tmp_path / "state")


def test_watch_on_the_serial_board(serial_board: SerialBoard, tmp_path: Path,
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """`invoke watch --board` over the serial console (issue 11): one login for three runs, then the board
    left as found and the console back at its login prompt."""
    monkeypatch.setenv("BOARD_PASSWORD", SERIAL_PASSWORD)  # the example board file's password_env
    before = serial_state(serial_board.device, tmp_path / "before")
    watch_three_times(serial_board_file(serial_board.device, tmp_path / "watched.toml"), tmp_path / "r")
    assert at_login_prompt(serial_board.device)
    assert serial_state(serial_board.device, tmp_path / "after") == before
