"""Pure parsers of the console-shell protocol (no I/O): command markers and framed file blocks.

A command's output sits between a begin line ``KIT>B<token>`` and an end line ``KIT>E<token> <status>``.
``fetch`` prints each file as::

    KIT>F <relative path> <byte count>
    |<line 1>
    |<line 2>
    KIT>EOF <relative path>

Console lines that start with neither ``|`` nor ``KIT>`` are kernel messages (or other noise) that
interleaved with the output; they are kept apart, never mixed into a file.

What the guest sends is bounded (:class:`FetchCaps`): past a cap, or for a sparse tar member, the
fetch is refused with :class:`FetchRefused` instead of being held in memory.
"""

from __future__ import annotations

import base64
import hashlib
import re
import tarfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from deploy.errors import FramingError, GuestOutputRefused

MARK = b"KIT>"
READY_LINE = re.compile(rb"KIT>READY\r?\n")
FILE_BEGIN = re.compile(rb"KIT>F (\S+) (\d+)(?: ([0-9a-f]{32}))?")
# A whole kernel line (printk's timestamp first): between two lines of a block it is harmless noise.
KERNEL_LINE = re.compile(rb"(?:<\d+>)?\[\s*\d+\.\d+\] ")
FILE_END = re.compile(rb"KIT>EOF (\S+)")

# Caps on what one fetch may bring (issue 12). A real bundle (tests/data/runs/arm-6.12, five modules,
# busybox tar | gzip -1 | base64 in its boot.log): a 17 KB archive stream that inflates to a 135 KB tar
# of 35 members, 110 KB of files (the largest dmesg.txt, 27 KB); its framed listing ~130 KB. Each cap
# leaves a hundredfold headroom or more over that.
MAX_STREAM_BYTES = 16 << 20  # console text of one fetch (16 MiB): 1000x the archive stream, and more than
#                              a 60 s fetch deadline carries at the ~200 KB/s of QEMU's console
MAX_MEMBER_BYTES = 16 << 20  # one file (16 MiB): 600x the largest real one; a log_buf_len=16M ring fits
MAX_TOTAL_BYTES = 64 << 20  # the inflated archive as a whole: files, headers, padding (64 MiB: 480x a
#                             real one); for the framed listing, its files together
MAX_MEMBERS = 4096  # tar members (files, directories, extension headers) or framed files: 100x a real bundle
MAX_HEADER_BYTES = 64 << 10  # one pax or GNU long-name header (64 KiB): a path is at most PATH_MAX, 4 KiB
MAX_NOISE_LINES = 1000  # kernel lines kept from a framed listing (a real one has ~200); the rest counted
MAX_STATUS_DIGITS = 10  # an exit status is 0..255; longer digit strings are not from the shell

_GZIP_WBITS = 16 + zlib.MAX_WBITS  # zlib reads the gzip header and checks its CRC-32 and length
_INPUT_CHUNK = 64 << 10  # compressed bytes handed to zlib at a time
_OUTPUT_CHUNK = 1 << 20  # decompressed bytes asked for at a time
_LINE = re.compile(rb"[^\r\n]+")  # the lines of bytes.splitlines(), without the empty ones


@dataclass(frozen=True)
class FetchCaps:
    """The bounds of one fetch (defaults: the constants above, with the reason for each size)."""

    stream_bytes: int = MAX_STREAM_BYTES
    member_bytes: int = MAX_MEMBER_BYTES
    total_bytes: int = MAX_TOTAL_BYTES
    members: int = MAX_MEMBERS
    header_bytes: int = MAX_HEADER_BYTES


DEFAULT_CAPS = FetchCaps()


class FetchRefused(FramingError, GuestOutputRefused):
    """The guest's output broke a cap of :class:`FetchCaps` (or held a sparse tar member): refused whole.

    A :class:`FramingError` (exit 3) and a :class:`GuestOutputRefused`: the session keeps the rest of the
    bundle (boot.log, ko/) and does not fetch again, and the framed listing is not tried (a hostile
    guest would send the same there). ``problem`` is the message without the console log's path.
    """

    def __init__(self, problem: str, log_path: Path | None = None, excerpt: str = "") -> None:
        self.problem = problem
        super().__init__(problem, log_path, excerpt)


def begin_marker_pattern(token: str) -> re.Pattern[bytes]:
    return re.compile(MARK + b"B" + re.escape(token.encode()) + rb"\r?\n")


def end_marker_pattern(token: str) -> re.Pattern[bytes]:
    return re.compile(rb"\r?\n" + MARK + b"E" + re.escape(token.encode()) + rb" (\d+)\r?\n")


def split_command_output(buffer: bytes, token: str) -> tuple[bytes, int, int] | None:
    """``(output, exit_status, end_offset)`` once the end marker of ``token`` is in ``buffer``.

    The output is what the command printed, with console CRLF turned back into LF; ``end_offset``
    is where the rest of the stream (after the end line) starts. ``None`` while the end is missing.
    An end line whose status has more digits than an exit status can have is a :class:`FramingError`.
    """
    end = end_marker_pattern(token).search(buffer)
    if end is None:
        return None
    status = end.group(1)
    if len(status) > MAX_STATUS_DIGITS:
        raise FramingError(f"the end marker of command {token} carries a {len(status)}-digit exit status "
                           "(the guest shell prints 0..255): the console stream is not the kit's protocol")
    begin = begin_marker_pattern(token).search(buffer, 0, end.start() + 2)
    start = min(begin.end(), end.start()) if begin is not None else 0
    output = buffer[start : end.start()].replace(b"\r\n", b"\n")
    return output, int(status), end.end()


@dataclass
class FramedFiles:
    """The files decoded from framed output, the noise lines, and what was wrong (empty if nothing).

    ``noise`` keeps the first ``MAX_NOISE_LINES`` noise lines; ``noise_dropped`` counts the others.
    """

    files: dict[str, bytes] = field(default_factory=dict)
    noise: list[bytes] = field(default_factory=list)
    problems: dict[str, str] = field(default_factory=dict)
    noise_dropped: int = 0


def _strip_cr(line: bytes) -> bytes:
    return line[:-1] if line.endswith(b"\r") else line


def reconstruct(lines: list[bytes], expected: int) -> bytes | None:
    """File bytes from its ``|`` lines, or ``None`` if the byte count does not match.

    The guest prints every line with a newline (``awk``), so a file whose last line had none comes back
    one byte longer: that single case is recognised by the count and undone.
    """
    return _exact(b"".join(line + b"\n" for line in lines), expected)


def _exact(data: bytes, expected: int) -> bytes | None:
    if len(data) == expected:
        return data
    if len(data) == expected + 1:
        return data[:-1]
    return None


def _lines(stream: bytes) -> Iterator[bytes]:
    """``stream.split(b"\\n")`` one line at a time (a list of every line of 16 MiB would be far larger)."""
    start = 0
    while (end := stream.find(b"\n", start)) >= 0:
        yield stream[start:end]
        start = end + 1
    yield stream[start:]


class _OpenFile:
    """A framed file being received: its name, announced count and the bytes so far (line + LF each)."""

    def __init__(self, name: str, expected: int, md5: bytes | None = None) -> None:
        self.name = name
        self.expected = expected
        self.md5 = md5  # hex, from the guest's md5sum (None from an older guest plan)
        self.data = bytearray()
        self.received = 0  # may exceed what is kept: past ``expected + 1`` the count is wrong anyway
        self.interleaved = False  # a line without "|" came inside the block: a kernel line cut a line

    def add(self, line: bytes) -> None:
        self.received += len(line) + 1
        if self.received <= self.expected + 1:
            self.data += line
            self.data += b"\n"


def parse_framed_files(stream: bytes, caps: FetchCaps = DEFAULT_CAPS) -> FramedFiles:
    """Decode every ``KIT>F`` block of ``stream`` (console text, CRLF or LF), verifying byte counts.

    Bounded like :func:`decode_archive`: :class:`FetchRefused` for a stream, an announced file, a file
    count or the files' total over ``caps``.
    """
    _check_stream(stream, caps)
    result = FramedFiles()
    current: _OpenFile | None = None
    announced = total = 0
    for raw in _lines(stream):
        line = _strip_cr(raw)
        if current is not None and line.startswith(b"|"):
            current.add(line[1:])
            continue
        begin, end = FILE_BEGIN.fullmatch(line), FILE_END.fullmatch(line)
        if begin is not None:
            if current is not None:
                result.problems[current.name] = "truncated: a new file began before its end marker"
            name = begin.group(1).decode(errors="replace")
            announced += 1
            if announced > caps.members:
                raise FetchRefused(f"the framed listing announces more than {caps.members} files "
                                   "(member count cap): refused")
            size = _announced_size(begin.group(2), name, caps)
            current = _OpenFile(name, size, begin.group(3))
        elif end is not None and current is not None and end.group(1).decode(errors="replace") == current.name:
            total += _finish_file(result, current)
            if total > caps.total_bytes:
                raise FetchRefused(f"the framed files add up to {total} bytes, over the "
                                   f"{_size(caps.total_bytes)} total cap: refused")
            current = None
        elif end is not None and current is None:  # its header was damaged: the file is not lost silently
            orphan = end.group(1).decode(errors="replace")
            if orphan not in result.files and len(result.problems) < caps.members:
                result.problems[orphan] = "its KIT>F header was damaged (a kernel line inside it)"
        elif line:
            if current is not None and not KERNEL_LINE.match(line):
                # The awk prints every line of a block with "|": a line that is neither that nor a whole
                # kernel line is the tail of a line a kernel line cut in two: the file is fetched again.
                current.interleaved = True
            if len(result.noise) < MAX_NOISE_LINES:
                result.noise.append(line)
            else:
                result.noise_dropped += 1
    if current is not None:
        result.problems[current.name] = "truncated: the stream ended before its end marker"
    return result


def _announced_size(digits: bytes, name: str, caps: FetchCaps) -> int:
    size = int(digits) if len(digits) <= 20 else caps.member_bytes + 1  # int() refuses 4300+ digits
    if size > caps.member_bytes:
        shown = digits.decode() if len(digits) <= 20 else f"a {len(digits)}-digit count of"
        raise FetchRefused(f"framed file {name[:80]!r} announces {shown} bytes, over the "
                           f"{_size(caps.member_bytes)} per-file cap: refused")
    return size


def _finish_file(result: FramedFiles, current: _OpenFile) -> int:
    """Store the file if its count matches (else note the problem); the bytes stored."""
    if current.interleaved:
        result.problems[current.name] = "a kernel line came inside it (it may have cut one of its lines)"
        return 0
    data = _exact(bytes(current.data), current.expected)
    if data is None:
        result.problems[current.name] = (f"byte count mismatch: announced {current.expected}, "
                                         f"received {current.received}")
        return 0
    if current.md5 is not None and hashlib.md5(data).hexdigest().encode() != current.md5:
        result.problems[current.name] = "md5 mismatch: the bytes received are not the guest's"
        return 0
    result.files[current.name] = data
    return len(data)


def check_total(files: dict[str, bytes], caps: FetchCaps = DEFAULT_CAPS) -> None:
    """:class:`FetchRefused` when ``files`` together exceed the total cap (framed files fetched again)."""
    total = sum(len(data) for data in files.values())
    if total > caps.total_bytes:
        raise FetchRefused(f"the fetched files add up to {total} bytes, over the "
                           f"{_size(caps.total_bytes)} total cap: refused")


def archive_command(remote_dir: str, quote: Callable[[str], str]) -> str:
    """Guest shell code sending the whole directory as one gzip'd tar, base64, each line prefixed "|".

    Five processes whatever the number of files, and a sixth of the bytes of the framed per-file
    listing: the console runs at about 200 KB/s under TCG. gzip's CRC-32 proves it arrived intact.
    """
    return f"cd {quote(remote_dir)} && tar cf - . | gzip -1 | base64 | sed 's/^/|/'"


def decode_archive(output: bytes, caps: FetchCaps = DEFAULT_CAPS) -> dict[str, bytes] | None:
    """The regular files of ``archive_command``'s output; ``None`` if it arrived damaged (a kernel line
    inside a base64 line, a truncated stream: gzip's CRC or length check fails, a broken tar header).

    Streaming and bounded: the gzip stream is inflated a chunk at a time and read as a tar stream as it
    comes (sizes checked from each header before its data), so besides the files kept only the member
    being read is in memory. Past a cap of ``caps`` (or for a sparse
    member) it raises :class:`FetchRefused` at once: a hostile guest would do the same in the framed
    listing, so the caller must not fall back to it. Members that are not regular files are dropped.
    """
    _check_stream(output, caps)
    payload = bytearray()
    for line in _LINE.finditer(output):  # one line at a time: no list of every line of the stream
        if output.startswith(b"|", line.start()):
            payload += output[line.start() + 1 : line.end()].strip()
    try:
        compressed = base64.b64decode(payload, validate=True)
        del payload
        return _untar(_Inflater(compressed, caps), caps)
    except (_Damaged, ValueError, zlib.error):
        return None


def _check_stream(output: bytes, caps: FetchCaps) -> None:
    if len(output) > caps.stream_bytes:
        raise FetchRefused(f"the guest sent {len(output)} bytes of console output for one fetch, over the "
                           f"{_size(caps.stream_bytes)} stream cap: refused")


def _size(count: int) -> str:
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if count >= scale and count % scale == 0:
            return f"{count // scale} {unit}"
    return f"{count} bytes"


class _Damaged(Exception):
    """The archive arrived damaged (truncated, corrupted): the framed listing may still get the files."""


class _Inflater:
    """The decompressed bytes of one gzip stream, a chunk at a time, never more than ``caps.total_bytes``.

    The compressed input is handed to zlib in ``_INPUT_CHUNK`` slices (``unconsumed_tail`` is a copy)
    and the output asked for with ``max_length``: a bomb costs one chunk of memory until the cap.
    """

    def __init__(self, compressed: bytes, caps: FetchCaps) -> None:
        self._input = memoryview(compressed)
        self._offset = 0
        self._tail = b""
        self._zlib = zlib.decompressobj(wbits=_GZIP_WBITS)
        self._cap = caps.total_bytes
        self.produced = 0

    def read_some(self, limit: int) -> bytes:
        """Up to ``limit`` (> 0) more bytes; ``b""`` at the end of the gzip stream (its CRC checked)."""
        while not self._zlib.eof:
            out = self._zlib.decompress(self._tail, limit)
            self._tail = self._zlib.unconsumed_tail
            if out:
                self.produced += len(out)
                if self.produced > self._cap:
                    raise FetchRefused(f"the archive inflates past the {_size(self._cap)} total cap "
                                       f"({self.produced} bytes from {len(self._input)} compressed): refused")
                return out
            if not self._zlib.eof:
                if self._offset >= len(self._input):
                    raise _Damaged("the gzip stream ends early")
                self._tail += self._input[self._offset : self._offset + _INPUT_CHUNK]
                self._offset += _INPUT_CHUNK
        rest = self._zlib.unused_data + self._tail + self._input[self._offset :]
        if rest.strip(b"\0"):  # gzip(1) accepts NUL padding after the stream, nothing else
            raise _Damaged("data after the gzip stream")
        return b""

    def read_exact(self, size: int) -> bytes:
        parts: list[bytes] = []
        while size > 0:
            chunk = self.read_some(min(size, _OUTPUT_CHUNK))
            if not chunk:
                raise _Damaged("the archive ends inside a member")
            parts.append(chunk)
            size -= len(chunk)
        return b"".join(parts)

    def skip(self, size: int) -> None:
        while size > 0:
            chunk = self.read_some(min(size, _OUTPUT_CHUNK))
            if not chunk:
                raise _Damaged("the archive ends inside a member")
            size -= len(chunk)

    def drain(self) -> None:
        """Read to the end (zero padding after the tar end marker), so that gzip's CRC is checked."""
        while self.read_some(_OUTPUT_CHUNK):
            pass


_TAR_BLOCK = 512
_ZERO_BLOCK = bytes(_TAR_BLOCK)
_REGULAR = (tarfile.REGTYPE, tarfile.AREGTYPE, tarfile.CONTTYPE)
# Types whose header's size field is not followed by data (tarfile reads them the same way).
_NO_DATA = (tarfile.LNKTYPE, tarfile.SYMTYPE, tarfile.CHRTYPE, tarfile.BLKTYPE, tarfile.DIRTYPE, tarfile.FIFOTYPE)
_PAX = (tarfile.XHDTYPE, tarfile.SOLARIS_XHDTYPE)
_EXTENSIONS = (tarfile.GNUTYPE_LONGNAME, tarfile.GNUTYPE_LONGLINK, tarfile.XGLTYPE, *_PAX)


def _padded(size: int) -> int:
    return -(-size // _TAR_BLOCK) * _TAR_BLOCK


def _untar(inflater: _Inflater, caps: FetchCaps) -> dict[str, bytes]:
    """Read a tar stream header by header (ustar, GNU long names, pax ``path``/``size``), keeping the
    regular files; sizes are checked against the caps from the headers, before any data is read."""
    files: dict[str, bytes] = {}
    members = 0
    long_name: str | None = None
    pax: dict[str, str] = {}
    while True:
        block = inflater.read_some(_TAR_BLOCK)
        if block:
            block += inflater.read_exact(_TAR_BLOCK - len(block)) if len(block) < _TAR_BLOCK else b""
        if not block or block == _ZERO_BLOCK:  # the end marker (or a stream without one)
            break
        members += 1
        if members > caps.members:
            raise FetchRefused(f"the archive holds more than {caps.members} members (member count cap; "
                               f"{len(files)} files read so far): refused")
        try:
            info = tarfile.TarInfo.frombuf(block, "utf-8", "surrogateescape")
        except tarfile.HeaderError as err:
            raise _Damaged(f"bad tar header: {err}") from None
        if info.size < 0:  # a base-256 size field can be negative
            raise _Damaged("negative tar member size")
        if info.type in _EXTENSIONS:
            if info.size > caps.header_bytes:
                raise FetchRefused(f"the archive has a {info.size}-byte extended header (cap "
                                   f"{_size(caps.header_bytes)}): refused")
            data = inflater.read_exact(_padded(info.size))[: info.size]
            if info.type == tarfile.GNUTYPE_LONGNAME:
                long_name = data.split(b"\0", 1)[0].decode("utf-8", "surrogateescape")
            elif info.type in _PAX:
                pax.update(_pax_records(data))
            continue
        name = pax.get("path", long_name if long_name is not None else info.name).removeprefix("./")
        size = _pax_size(pax["size"], name, caps) if "size" in pax else info.size
        if info.type == tarfile.GNUTYPE_SPARSE or any(key.startswith("GNU.sparse.") for key in pax):
            raise FetchRefused(f"archive member {name[:80]!r} is a sparse file (it expands to "
                               f"{_sparse_size(block, pax)} bytes): sparse members are refused")
        long_name, pax = None, {}
        if info.type in _REGULAR:
            if size > caps.member_bytes:
                raise FetchRefused(f"archive member {name[:80]!r} is {size} bytes, over the "
                                   f"{_size(caps.member_bytes)} per-file cap: refused")
            files[name] = inflater.read_exact(size)
            inflater.skip(_padded(size) - size)
        elif info.type not in _NO_DATA:
            inflater.skip(_padded(size))  # an unknown type: its data skipped (bounded by the total cap)
    inflater.drain()
    return files


def _pax_records(data: bytes) -> dict[str, str]:
    """The ``"<length> <key>=<value>\\n"`` records of a pax extended header (POSIX pax, ustar format)."""
    records: dict[str, str] = {}
    pos = 0
    while pos < len(data) and data[pos] != 0:
        space = data.find(b" ", pos, pos + 12)
        digits = data[pos:space] if space > pos else b""
        if not digits.isdigit():
            raise _Damaged("bad pax header record")
        length = int(digits)
        record = data[space + 1 : pos + length]
        if pos + length > len(data) or not record.endswith(b"\n") or b"=" not in record:
            raise _Damaged("bad pax header record")
        key, _, value = record[:-1].partition(b"=")
        records[key.decode("utf-8", "surrogateescape")] = value.decode("utf-8", "surrogateescape")
        pos += length
    return records


def _pax_size(value: str, name: str, caps: FetchCaps) -> int:
    if not (value.isascii() and value.isdigit()):
        raise _Damaged(f"bad pax size {value[:20]!r}")
    if len(value) > 20:
        raise FetchRefused(f"archive member {name[:80]!r} announces a {len(value)}-digit size, over the "
                           f"{_size(caps.member_bytes)} per-file cap: refused")
    return int(value)


def _sparse_size(block: bytes, pax: dict[str, str]) -> str:
    """The expanded size a sparse member announces: pax ``GNU.sparse.realsize``/``size`` or the old GNU
    header's ``realsize`` field (octal at offset 483), as text; ``"?"`` when it cannot be read."""
    for key in ("GNU.sparse.realsize", "GNU.sparse.size"):
        if key in pax:
            return pax[key][:20]
    field_ = block[483:495].split(b"\0", 1)[0].strip()
    try:
        return str(int(field_, 8))
    except ValueError:
        return "?"
