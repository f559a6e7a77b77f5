"""Pure parsers of the console-shell protocol (no I/O): command markers and framed file blocks.

A command's output sits between a begin line ``KIT>B<token>`` and an end line ``KIT>E<token> <status>``.
``fetch`` prints each file as::

    KIT>F <relative path> <byte count>
    |<line 1>
    |<line 2>
    KIT>EOF <relative path>

Console lines that start with neither ``|`` nor ``KIT>`` are kernel messages (or other noise) that
interleaved with the output; they are kept apart, never mixed into a file.
"""

from __future__ import annotations

import base64
import gzip
import io
import re
import tarfile
from collections.abc import Callable
from dataclasses import dataclass, field

MARK = b"KIT>"
READY_LINE = re.compile(rb"KIT>READY\r?\n")
FILE_BEGIN = re.compile(rb"KIT>F (\S+) (\d+)")
FILE_END = re.compile(rb"KIT>EOF (\S+)")


def begin_marker_pattern(token: str) -> re.Pattern[bytes]:
    return re.compile(MARK + b"B" + re.escape(token.encode()) + rb"\r?\n")


def end_marker_pattern(token: str) -> re.Pattern[bytes]:
    return re.compile(rb"\r?\n" + MARK + b"E" + re.escape(token.encode()) + rb" (\d+)\r?\n")


def split_command_output(buffer: bytes, token: str) -> tuple[bytes, int, int] | None:
    """``(output, exit_status, end_offset)`` once the end marker of ``token`` is in ``buffer``.

    The output is what the command printed, with console CRLF turned back into LF; ``end_offset``
    is where the rest of the stream (after the end line) starts. ``None`` while the end is missing.
    """
    end = end_marker_pattern(token).search(buffer)
    if end is None:
        return None
    begin = begin_marker_pattern(token).search(buffer, 0, end.start() + 2)
    start = min(begin.end(), end.start()) if begin is not None else 0
    output = buffer[start : end.start()].replace(b"\r\n", b"\n")
    return output, int(end.group(1)), end.end()


@dataclass
class FramedFiles:
    """The files decoded from framed output, the noise lines, and what was wrong (empty if nothing)."""

    files: dict[str, bytes] = field(default_factory=dict)
    noise: list[bytes] = field(default_factory=list)
    problems: dict[str, str] = field(default_factory=dict)


def _strip_cr(line: bytes) -> bytes:
    return line[:-1] if line.endswith(b"\r") else line


def reconstruct(lines: list[bytes], expected: int) -> bytes | None:
    """File bytes from its ``|`` lines, or ``None`` if the byte count does not match.

    The guest prints every line with a newline (``awk``), so a file whose last line had none comes back
    one byte longer: that single case is recognised by the count and undone.
    """
    data = b"".join(line + b"\n" for line in lines)
    if len(data) == expected:
        return data
    if len(data) == expected + 1:
        return data[:-1]
    return None


def parse_framed_files(stream: bytes) -> FramedFiles:
    """Decode every ``KIT>F`` block of ``stream`` (console text, CRLF or LF), verifying byte counts."""
    result = FramedFiles()
    current: tuple[str, int] | None = None
    lines: list[bytes] = []
    for raw in stream.split(b"\n"):
        line = _strip_cr(raw)
        begin, end = FILE_BEGIN.fullmatch(line), FILE_END.fullmatch(line)
        if current is not None and line.startswith(b"|"):
            lines.append(line[1:])
        elif begin is not None:
            if current is not None:
                result.problems[current[0]] = "truncated: a new file began before its end marker"
            current, lines = (begin.group(1).decode(errors="replace"), int(begin.group(2))), []
        elif end is not None and current is not None and end.group(1).decode(errors="replace") == current[0]:
            _finish_file(result, current, lines)
            current = None
        elif line:
            result.noise.append(line)
    if current is not None:
        result.problems[current[0]] = "truncated: the stream ended before its end marker"
    return result


def _finish_file(result: FramedFiles, current: tuple[str, int], lines: list[bytes]) -> None:
    name, expected = current
    data = reconstruct(lines, expected)
    if data is None:
        got = sum(len(line) + 1 for line in lines)
        result.problems[name] = f"byte count mismatch: announced {expected}, received {got}"
    else:
        result.files[name] = data


def archive_command(remote_dir: str, quote: Callable[[str], str]) -> str:
    """Guest shell code sending the whole directory as one gzip'd tar, base64, each line prefixed "|".

    Five processes whatever the number of files, and a sixth of the bytes of the framed per-file
    listing: the console runs at about 200 KB/s under TCG. gzip's CRC-32 proves it arrived intact.
    """
    return f"cd {quote(remote_dir)} && tar cf - . | gzip -1 | base64 | sed 's/^/|/'"


def decode_archive(output: bytes) -> dict[str, bytes] | None:
    """The files of ``archive_command``'s output; ``None`` if anything about it is wrong (a kernel
    line inside a base64 line, a truncated stream: gzip's CRC or length check fails)."""
    payload = b"".join(line[1:].strip() for line in output.splitlines() if line.startswith(b"|"))
    try:
        data = gzip.decompress(base64.b64decode(payload, validate=True))
        files: dict[str, bytes] = {}
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as archive:
            for member in archive.getmembers():
                if member.isfile():
                    extracted = archive.extractfile(member)
                    if extracted is not None:
                        files[member.name.removeprefix("./")] = extracted.read()
        return files
    except (ValueError, OSError, EOFError, tarfile.TarError):
        return None
