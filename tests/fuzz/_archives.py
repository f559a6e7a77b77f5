"""Building archives the way the guest sends them (tar | gzip | base64, lines prefixed "|"), including
hostile ones, without ever holding their decompressed bytes: gzip bombs are assembled from deflate
segments, each compressed on its own and ended by a full flush (byte-aligned, no back-reference into
an earlier segment), so a 2 GiB run of zeros is one 1 MiB segment (about 1 KB) repeated."""

from __future__ import annotations

import base64
import io
import re
import resource
import struct
import tarfile
import time
import tracemalloc
import zlib
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from deploy.framing import split_command_output

REPO = Path(__file__).resolve().parents[2]
RUNS = REPO / "tests" / "data" / "runs"
ZERO_CHUNK = 1 << 20


def console_lines(data: bytes) -> bytes:
    """``base64 | sed 's/^/|/'``: 76-column lines, each prefixed with ``|``."""
    return b"".join(b"|" + line + b"\n" for line in base64.encodebytes(data).splitlines())


def real_archive_output(series: str = "6.1") -> bytes:
    """The archive command's output of a real run, cut from that run's boot.log (busybox tar, gzip -1)."""
    log = (RUNS / f"arm-{series}" / "boot.log").read_bytes()
    for token in re.findall(rb"KIT>B([0-9a-f]{12})", log):
        found = split_command_output(log, token.decode())
        if found is not None and b"\n|H4sI" in b"\n" + found[0]:
            return found[0]
    raise AssertionError(f"no archive output in {RUNS}/arm-{series}/boot.log")


def _segment(data: bytes) -> bytes:
    compressor = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    return compressor.compress(data) + compressor.flush(zlib.Z_FULL_FLUSH)


_ZERO_SEGMENT = _segment(bytes(ZERO_CHUNK))


@dataclass
class GzipBuilder:
    """A gzip stream appended to piece by piece; ``size`` counts the uncompressed bytes."""

    body: bytearray
    crc: int = 0
    size: int = 0

    def add(self, data: bytes) -> None:
        self.body += _segment(data)
        self.crc = zlib.crc32(data, self.crc)
        self.size += len(data)

    def add_zeros(self, count: int) -> None:
        """``count`` zero bytes (a multiple of 1 MiB), about 1 KB of compressed stream per MiB."""
        assert count % ZERO_CHUNK == 0
        zeros = bytes(ZERO_CHUNK)
        for _ in range(count // ZERO_CHUNK):
            self.body += _ZERO_SEGMENT
            self.crc = zlib.crc32(zeros, self.crc)
        self.size += count

    def finish(self) -> bytes:
        final = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS).flush(zlib.Z_FINISH)  # an empty last block
        header = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03"
        return header + bytes(self.body) + final + struct.pack("<II", self.crc, self.size & 0xFFFFFFFF)


def new_gzip() -> GzipBuilder:
    return GzipBuilder(bytearray())


def tar_header(name: str, size: int, kind: bytes = tarfile.REGTYPE) -> bytes:
    info = tarfile.TarInfo(name)
    info.size, info.type, info.mtime = size, kind, 0
    return info.tobuf(tarfile.GNU_FORMAT)


def padding(size: int) -> bytes:
    return bytes(-size % 512)


def tar_bytes(files: Iterable[tuple[str, bytes]], fmt: int = tarfile.GNU_FORMAT) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=fmt) as archive:
        for name, data in files:
            info = tarfile.TarInfo(name)
            info.size, info.mtime = len(data), 0
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def gnu_sparse_header(name: str, real_size: int, stored: int) -> bytes:
    """An old-GNU sparse member header (type ``S``) made by hand, as GNU tar --sparse writes it: one map
    entry (the last ``stored`` bytes are data, the rest a hole) and ``realsize`` at offset 483."""
    block = bytearray(tar_header(name, stored, tarfile.GNUTYPE_SPARSE))
    block[386:398] = b"%011o\0" % (real_size - stored)  # sparse[0].offset
    block[398:410] = b"%011o\0" % stored  # sparse[0].numbytes
    block[482] = 0  # isextended: no extension block
    block[483:495] = b"%011o\0" % real_size  # realsize
    block[148:156] = b"        "
    block[148:156] = b"%06o\0 " % sum(block)
    return bytes(block)


def pax_sparse_member(name: str, real_size: int) -> bytes:
    """A PAX 1.0 sparse member (GNU tar --format=posix --sparse): pax ``GNU.sparse.*`` records, the map in
    the data. tarfile itself writes the pax header."""
    data = b"1\n%d\n1\n" % (real_size - 1)
    data = data + padding(len(data)) + b"x"
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as archive:
        info = tarfile.TarInfo(f"./GNUSparseFile.0/{name}")
        info.size, info.mtime = len(data), 0
        info.pax_headers = {"GNU.sparse.major": "1", "GNU.sparse.minor": "0", "GNU.sparse.name": name,
                            "GNU.sparse.realsize": str(real_size)}
        archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def _vm_size() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmSize:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmSize in /proc/self/status")


@dataclass
class Usage:
    peak_bytes: int = 0
    seconds: float = 0.0


@contextmanager
def bounded_usage(headroom: int = 1 << 30) -> Iterator[Usage]:
    """Measure the Python heap's peak (tracemalloc) and the wall time of the block. The address space is
    limited to its current size + ``headroom`` meanwhile, so a decoder that inflates a bomb whole fails
    with MemoryError on this shared machine instead of waking the OOM killer."""
    usage = Usage()
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    limit = _vm_size() + headroom
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
    tracemalloc.start()
    start = time.monotonic()
    try:
        yield usage
    finally:
        usage.seconds = time.monotonic() - start
        usage.peak_bytes = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))
