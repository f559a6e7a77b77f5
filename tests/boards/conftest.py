"""The SSH board fixture: a QEMU guest booted by the test (not by the kit) that acts as a board already
up, reached on 127.0.0.1 only (tests/boards/guest.py). One guest for the whole module set; QEMU is
killed at the end and dies with the test process (PR_SET_PDEATHSIG, deploy.qemu.start_qemu)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from deploy.ssh import SshTarget
from tests.boards.guest import Board, BoardError, start_board
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
