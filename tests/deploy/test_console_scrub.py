"""The console protocol on a board's serial console, where the kernel prints its lines anywhere, even in
the middle of a marker or of a base64 line (deploy/console.py KERNEL_CONSOLE_LINE): byte streams as a
busybox shell and a printk on a PL011 console interleave them, fed to a ConsoleShell in small chunks."""

from __future__ import annotations

from pathlib import Path

import pytest

from deploy import console
from deploy.console import ConsoleShell

NOISE = b"[   12.345678] kitnoise: a chatty driver says 7\r\n"


class ScriptedChannel:
    """Answers each read with the next chunk; records what the host wrote."""

    def __init__(self, chunks: list[bytes]) -> None:
        self.chunks, self.written = list(chunks), bytearray()

    def write(self, data: bytes) -> None:
        self.written += data

    def read(self, timeout_s: float) -> bytes:
        return self.chunks.pop(0) if self.chunks else b""


def chunked(stream: bytes, size: int = 7) -> list[bytes]:
    return [stream[i : i + size] for i in range(0, len(stream), size)]


@pytest.fixture
def fixed_token(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setattr(console.secrets, "token_hex", lambda _n: "a1b2c3")
    return "a1b2c3"


def shell_on(stream: bytes, tmp_path: Path) -> ConsoleShell:
    shell = ConsoleShell(ScriptedChannel(chunked(stream)), tmp_path / "console.log")
    shell.scrub_kernel_lines = True
    return shell


def test_a_kernel_line_inside_the_end_marker_is_cut_out(fixed_token: str, tmp_path: Path) -> None:
    stream = b"KIT>Ba1b2c3\r\n6.1.0-50-armmp\r\n\r\nKIT>Ea1" + NOISE + b"b2c3 0\r\n"
    status, output, _ = shell_on(stream, tmp_path).run_bytes("uname -r", 5)
    assert (status, output) == (0, b"6.1.0-50-armmp\n")


def test_kernel_lines_inside_command_output_are_cut_out_and_logged(fixed_token: str, tmp_path: Path) -> None:
    caller = b"[   13.000001][  T123] kitnoise: with CONFIG_PRINTK_CALLER\r\n"
    stream = (b"KIT>Ba1b2c3\r\nline 1\r\nli" + NOISE + b"ne 2\r\n" + caller + b"line 3\r\n"
              b"\r\nKIT>Ea1b2c3 0\r\n")
    shell = shell_on(stream, tmp_path)
    _, output, _ = shell.run_bytes("cmd", 5)
    assert output == b"line 1\nline 2\nline 3\n"
    assert shell.kernel_lines_scrubbed == 2
    shell.close()
    assert NOISE in (tmp_path / "console.log").read_bytes()  # the log keeps what the console said


def test_a_base64_line_split_by_a_kernel_line_is_whole_again(fixed_token: str, tmp_path: Path) -> None:
    stream = b"KIT>Ba1b2c3\r\n|H4sIAAAAAAAC" + NOISE + b"A+3OMQ6CQBAF0K1N\r\n\r\nKIT>Ea1b2c3 0\r\n"
    _, output, _ = shell_on(stream, tmp_path).run_bytes("archive", 5)
    assert output == b"|H4sIAAAAAAACA+3OMQ6CQBAF0K1N\n"


def test_a_file_line_that_looks_like_a_kernel_line_is_kept(fixed_token: str, tmp_path: Path) -> None:
    """A framed dmesg.txt line ("|" + the line) is the file's: its checksum, not the scrub, guards it."""
    stream = b"KIT>Ba1b2c3\r\n|[    1.000000] Booting Linux on physical CPU 0x0\r\n\r\nKIT>Ea1b2c3 0\r\n"
    _, output, _ = shell_on(stream, tmp_path).run_bytes("frame", 5)
    assert output == b"|[    1.000000] Booting Linux on physical CPU 0x0\n"


def test_settle_keeps_a_kernel_line_still_arriving(tmp_path: Path) -> None:
    """A login prompt followed by the start of a kernel line: settle returns the prompt alone."""
    shell = shell_on(b"\r\nkitboard login: [   14.2", tmp_path)
    assert shell.settle(0.2, 2.0) == b"\r\nkitboard login: "
