"""The framing parser on real console text from a collect run, and on damaged copies of it."""

from __future__ import annotations

from deploy.framing import parse_framed_files, reconstruct, split_command_output
from tests.deploy.conftest import data_text

CAPTURE = data_text("console-6.1-hello-collect.log")
EXPECTED_FILES = {  # what kitrun.sh writes for one module "hello" (docs/contracts.md section 2)
    "cmdline.txt", "dmesg.txt", "iomem.txt", "meminfo.txt", "modules/hello.txt", "sections/hello.txt",
    "status.txt", "vmallocinfo/hello.before.txt", "vmallocinfo/hello.during.txt",
    "vmallocinfo/hello.after.txt", "zoneinfo.txt",
}
KERNEL_LINE = b"[    5.123456] random: crng init done\r"


def test_capture_decodes_to_the_plan_files() -> None:
    framed = parse_framed_files(CAPTURE)
    assert framed.problems == {}
    assert set(framed.files) == EXPECTED_FILES
    assert framed.files["status.txt"] == b"hello insmod=0 rmmod=0\n"
    assert framed.files["meminfo.txt"].startswith(b"MemTotal:")
    assert b"\r" not in framed.files["dmesg.txt"]
    for name in ("before", "during", "after"):
        lines = framed.files[f"vmallocinfo/hello.{name}.txt"].splitlines()
        assert lines and all(line.startswith(b"0x") for line in lines)
    assert any(b"Run /init as init process" in line for line in framed.noise)  # boot lines are noise


def test_kernel_lines_between_framed_lines_are_noise() -> None:
    lines = CAPTURE.split(b"\n")
    inside = lines.index(b"KIT>F dmesg.txt 12663\r") + 5
    damaged = b"\n".join([*lines[:inside], KERNEL_LINE, *lines[inside:]])
    framed = parse_framed_files(damaged)
    assert framed.problems == {}
    assert framed.files == parse_framed_files(CAPTURE).files
    assert KERNEL_LINE[:-1] in framed.noise


def test_kernel_text_inside_a_line_breaks_the_count() -> None:
    lines = CAPTURE.split(b"\n")
    inside = lines.index(b"KIT>F iomem.txt 333\r") + 2
    lines[inside] = lines[inside][:10] + KERNEL_LINE[:-1] + lines[inside][10:]
    framed = parse_framed_files(b"\n".join(lines))
    assert "iomem.txt" not in framed.files
    assert "byte count mismatch" in framed.problems["iomem.txt"]
    assert "meminfo.txt" in framed.files


def test_truncated_stream_reports_the_open_file() -> None:
    cut = CAPTURE.index(b"KIT>F meminfo.txt") + 300
    framed = parse_framed_files(CAPTURE[:cut])
    assert set(framed.files) == {"cmdline.txt", "dmesg.txt", "iomem.txt"}
    assert framed.problems == {"meminfo.txt": "truncated: the stream ended before its end marker"}


def test_file_without_final_newline_and_empty_file() -> None:
    assert reconstruct([b"abc"], 3) == b"abc"
    assert reconstruct([b"abc"], 4) == b"abc\n"
    assert reconstruct([b"abc"], 6) is None
    assert reconstruct([], 0) == b""


def test_command_output_between_markers() -> None:
    stream = (b"printf 'KIT>%s\\n' Btok1; ...; printf '\\nKIT>%s %d\\n' Etok1 $?\r\n"  # an echoed command line
              b"KIT>Btok1\r\nhello\r\nworld\r\n\r\nKIT>Etok1 3\r\nrest")
    output, status, end = split_command_output(stream, "tok1")  # type: ignore[misc]
    assert (output, status, stream[end:]) == (b"hello\nworld\n", 3, b"rest")
    empty = b"KIT>Btok2\r\n\r\nKIT>Etok2 0\r\n"
    assert split_command_output(empty, "tok2") == (b"", 0, len(empty))
    assert split_command_output(stream, "tok2") is None
    assert split_command_output(b"KIT>Btok1\r\nhalf", "tok1") is None
