"""The console flood, replayed exactly: what the guest's console carries when a kernel line lands inside
the framed listing (deploy.console.fetch_command, the fallback when the archive arrives damaged).

The e2e flood test (test_qemu_faults.py) meets these placements only by chance; here the same bytes (a
KERN_EMERG line as the guest prints it, ``\\r\\n`` and all) are put where they do harm, and given to the
real parser. printk writes to the UART between the tty's FIFO chunks: anywhere in a line.
"""

from __future__ import annotations

import pytest

from deploy.framing import parse_framed_files

pytestmark = [pytest.mark.e2e, pytest.mark.faults]

KERNEL_LINE = b"[   12.345678] kit flood 0123456789"  # what the flood prints (the timestamp's width varies)


def framed(name: str, data: bytes) -> bytes:
    """One file as the guest's awk frames it (fetch_command): header, ``|`` lines, end line."""
    lines = b"".join(b"|" + line + b"\n" for line in data.splitlines())
    return b"KIT>F %s %d\n" % (name.encode(), len(data)) + lines + b"KIT>EOF %s\n" % name.encode()


def test_a_kernel_line_inside_a_file_line_is_never_accepted_as_the_file() -> None:
    """The line's tail after the kernel line has no ``|``: it is dropped as noise. When the kernel line is
    as long as that tail, the byte count still matches, and only the count is checked."""
    line = b"0xf0805000-0xf0809000   16384 fault_leak_init+0x2c/0x1000 [fault_leak] pages=3 vmalloc"
    data = b"first line\n" + line + b"\n"
    cut = len(line) - len(KERNEL_LINE)
    stream = framed("vmallocinfo/m.after.txt", data).replace(line, line[:cut] + KERNEL_LINE + b"\r\n" + line[cut:])
    got = parse_framed_files(stream)
    name = "vmallocinfo/m.after.txt"
    assert got.files.get(name, data) == data, got.files[name]  # never kept with other bytes than the guest's
    assert name in got.files or name in got.problems  # refused, and said so (the caller fetches it again)


def test_a_kernel_line_inside_a_file_header_does_not_make_the_file_vanish_silently() -> None:
    """``KIT>F <name> <count>`` cut by a kernel line is not a header any more: the file's lines are noise."""
    stream = framed("status.txt", b"m insmod=0 rmmod=0\n") + framed("vmallocinfo/m.after.txt", b"after\n")
    header = b"KIT>F vmallocinfo/m.after.txt"
    stream = stream.replace(header, header[:20] + KERNEL_LINE + b"\r\n" + header[20:])
    got = parse_framed_files(stream)
    assert got.files.get("status.txt") == b"m insmod=0 rmmod=0\n"
    # the file's lines came, outside any block: kept, or something reported (the caller fetches again)
    assert "vmallocinfo/m.after.txt" in got.files or got.problems, (got.files, got.problems, got.noise)
