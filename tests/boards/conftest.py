"""The board fixtures, QEMU guests booted by the test (not by the kit) that act as boards already up:
the SSH board (tests/boards/guest.py, reached on 127.0.0.1 only) and the serial board
(tests/boards/serial_guest.py, its console on a pty). One guest of each for the whole session; QEMU is
killed at the end and dies with the test process (PR_SET_PDEATHSIG, deploy.qemu.start_qemu)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from deploy.ssh import SshTarget
from tests.boards.guest import Board, BoardError, start_board
from tests.boards.serial_guest import SerialBoard, start_serial_board
from tests.conftest import debian_busybox, debian_kernel, debian_target, qemu_binary


@pytest.fixture(scope="session")
def board(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Board]:
    """A running board guest (the kit's Debian 6.1 kernel, dropbear on port 22 forwarded to 127.0.0.1)."""
    qemu_binary("6.1")
    work = tmp_path_factory.mktemp("board")
    try:
        running = start_board(debian_target("6.1").qemu, debian_kernel("6.1"), debian_busybox("6.1"), work)
    except BoardError as err:
        pytest.fail(f"the SSH board guest did not come up: {err}", pytrace=False)
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture
def known_hosts(board: Board, tmp_path: Path) -> Path:
    """A known_hosts file holding the board's real host key (as the console printed it)."""
    path = tmp_path / "known_hosts"
    path.write_text(board.known_hosts_line())
    return path


@pytest.fixture
def target(board: Board, known_hosts: Path) -> SshTarget:
    """The board as an SshTarget: its host key known, the authorized client key, short deadlines."""
    return SshTarget(board.host, board.port, "root", board.client_key, known_hosts, accept_new=False,
                     connect_timeout_s=20.0, command_timeout_s=60.0)


SERIAL_PASSWORD = "kit-serial-pw"


@pytest.fixture(scope="session")
def serial_board(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SerialBoard]:
    """A running serial board guest: login on its console (a pty), a chatty driver printing a kernel line
    on it every 100 ms, the kit's Debian 6.1 kernel."""
    qemu_binary("6.1")
    try:
        running = start_serial_board(debian_target("6.1").qemu, debian_kernel("6.1"), debian_busybox("6.1"),
                                     tmp_path_factory.mktemp("serial-board"), password=SERIAL_PASSWORD,
                                     noise_ms=100)
    except BoardError as err:
        pytest.fail(f"the serial board guest did not come up: {err}", pytrace=False)
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="session")
def qemu_reference(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The check ids and statuses of the kit's own QEMU run of arm-6.1 (what a board run must match)."""
    from tests.boards.test_board_run import checks_by_id, invoke, verdict

    results = tmp_path_factory.mktemp("qemu-reference")
    in_qemu = invoke("run", "--target", "arm-6.1", "--results", str(results))
    assert in_qemu.returncode == 0, in_qemu.stdout[-3000:] + in_qemu.stderr[-3000:]
    return checks_by_id(verdict(results))
