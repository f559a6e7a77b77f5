"""ConsoleShell against a real host shell (the same protocol the guest runs) and scripted consoles."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from deploy.console import ChannelClosed, ConsoleShell, fetch_command, wrap_command
from deploy.errors import BootTimeout, CommandTimeout, GuestCrashed, TransportLost
from kit.errors import UserError
from tests.deploy.conftest import data_text


class ScriptedChannel:
    """Replays chunks of captured console text, then closes (or stays silent)."""

    def __init__(self, chunks: list[bytes], close_at_end: bool) -> None:
        self.chunks = chunks
        self.close_at_end = close_at_end
        self.written: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.written.append(data)

    def read(self, timeout_s: float) -> bytes:
        if self.chunks:
            return self.chunks.pop(0)
        if self.close_at_end:
            raise ChannelClosed("end of script")
        time.sleep(timeout_s)
        return b""


def test_run_returns_exact_output_and_status(host_shell: ConsoleShell) -> None:
    result = host_shell.run("echo one; echo 'it'\\''s' >&2; exit 5", 10)
    assert (result.exit_status, result.output) == (5, "one\nit's\n")
    assert host_shell.run("printf 'no newline'", 10).output == "no newline"
    assert host_shell.run("( ", 10).exit_status != 0  # a syntax error fails the command, not the shell
    assert host_shell.run("true", 10).exit_status == 0


def test_fetch_returns_every_file_byte_exact(host_shell: ConsoleShell, tmp_path: Path) -> None:
    tree = tmp_path / "out"
    contents = {"a.txt": b"x\n", "sub/b.txt": b"line 1\n|pipe line\n\n", "sub/c": b"no newline", "empty": b""}
    for name, data in contents.items():
        (tree / name).parent.mkdir(parents=True, exist_ok=True)
        (tree / name).write_bytes(data)
    assert host_shell.fetch_files(str(tree), 10) == contents


def test_everything_received_is_logged(host_shell: ConsoleShell) -> None:
    host_shell.run("echo logged-marker-123", 10)
    assert b"logged-marker-123" in host_shell.log_path.read_bytes()


def test_command_timeout_is_bounded(host_shell: ConsoleShell) -> None:
    start = time.monotonic()
    with pytest.raises(CommandTimeout):
        host_shell.run("sleep 5", 0.5)
    assert time.monotonic() - start < 2


def test_panic_gives_guest_crashed_with_the_trace(tmp_path: Path) -> None:
    capture = data_text("console-6.1-panic.log")
    chunks = [capture[i : i + 512] for i in range(0, len(capture), 512)]
    shell = ConsoleShell(ScriptedChannel(chunks, close_at_end=True), tmp_path / "boot.log")
    with pytest.raises(GuestCrashed) as caught:
        shell.wait_ready(5)  # the replay does not wait for the command: the panic may come first
        shell.run("sh /kit/kitrun.sh /kit/out /kit/modules kit_panic", 30)
    assert caught.value.excerpt.splitlines()[0].endswith(
        "Kernel panic - not syncing: kit_panic: deliberate panic from module_init")
    assert "insmod" in caught.value.excerpt
    assert (tmp_path / "boot.log").read_bytes() == capture


def test_silent_console_gives_boot_timeout(tmp_path: Path) -> None:
    shell = ConsoleShell(ScriptedChannel([b"Booting Linux on physical CPU 0x0\r\n"], close_at_end=False),
                         tmp_path / "boot.log")
    start = time.monotonic()
    with pytest.raises(BootTimeout) as caught:
        shell.wait_ready(1.0)
    assert 1.0 <= time.monotonic() - start < 2.0
    assert "Booting Linux" in caught.value.excerpt


def test_console_closing_mid_command_without_panic_is_transport_lost(tmp_path: Path) -> None:
    shell = ConsoleShell(ScriptedChannel([b"KIT>READY\r\n", b"KIT>B"], close_at_end=True), tmp_path / "log")
    shell.wait_ready(1)
    with pytest.raises(TransportLost):
        shell.run("true", 5)


def test_commands_are_single_short_lines() -> None:
    with pytest.raises(UserError):
        wrap_command("echo a\necho b", "t")
    with pytest.raises(UserError):
        wrap_command("x" * 5000, "t")
    assert b"B" + b"t1" not in wrap_command("true", "t1").split(b"printf")[0]
    assert "'/kit/out'" in fetch_command("/kit/out")
