"""Fuzz the console protocol's decoders (deploy/framing.py) with 10,000 damaged real streams each.

* decode_archive: the real archive outputs of the three runs (busybox tar | gzip -1 | base64 in their
  boot.log), damaged as console text, or damaged inside (the tar itself: header fields with their
  checksums made valid again, so the damage reaches the reader) and compressed again;
* parse_framed_files: a real framed listing (console capture) and framed renderings of a real run;
* split_command_output: real consoles with their command markers.

Clean outcomes only: a result, ``None`` (damaged, the caller falls back), or FetchRefused/FramingError
(KitErrors) with one line; never another exception, never more than a second for an example.
"""

from __future__ import annotations

import base64
import gzip
import re
import tarfile
from collections import Counter
from collections.abc import Callable

import pytest
from hypothesis import given, note

from deploy.framing import FetchCaps, FramedFiles, decode_archive, parse_framed_files, split_command_output
from kit.errors import KitError
from tests.deploy.conftest import data_text
from tests.fuzz._archives import RUNS, console_lines, real_archive_output, tar_bytes
from tests.fuzz._mutate import EXAMPLES, FUZZ, NUMBERS, PROGRAMS, Choices, clean, damage, damaged_from

pytestmark = pytest.mark.fuzz

SERIES = ("5.10", "6.1", "6.12")
ARCHIVES = [real_archive_output(series) for series in SERIES]


def _inner_tar(output: bytes) -> bytes:
    payload = b"".join(line[1:].strip() for line in output.splitlines() if line.startswith(b"|"))
    return gzip.decompress(base64.b64decode(payload))


def _real_files(series: str) -> list[tuple[str, bytes]]:
    root = RUNS / f"arm-{series}"
    names = ["status.txt", "cmdline.txt", "meminfo.txt", "modules/kit_vmalloc.txt", "sections/kit_kmap.txt"]
    return [(name, (root / name).read_bytes()) for name in names]


# Tars to damage inside: the real ones, and real files in every format tarfile writes (pax and GNU long
# names included: a name over 100 bytes needs an extension header).
LONG = "long-directory-name/" * 6
TARS = [
    *(_inner_tar(output) for output in ARCHIVES),
    *(tar_bytes([(f"./{LONG}{name}", data) for name, data in _real_files("6.1")], fmt)
      for fmt in (tarfile.GNU_FORMAT, tarfile.PAX_FORMAT)),
    tar_bytes(_real_files("6.12"), tarfile.USTAR_FORMAT),
]


def _framed(files: list[tuple[str, bytes]]) -> bytes:
    """The framed listing fetch_command's awk prints for ``files``, with console CRLF."""
    out = []
    for name, data in files:
        out.append(b"KIT>F %s %d" % (name.encode(), len(data)))
        out += [b"|" + line for line in data.split(b"\n")[: -1 if data.endswith(b"\n") else None]]
        out.append(b"KIT>EOF " + name.encode())
    return b"".join(line + b"\r\n" for line in out)


FRAMED = [data_text("console-6.1-hello-collect.log"), *(_framed(_real_files(series)) for series in SERIES)]
CONSOLES = [(RUNS / f"arm-{series}" / "boot.log").read_bytes() for series in SERIES] + FRAMED[:1]
TOKENS = sorted({token.decode() for console in CONSOLES for token in re.findall(rb"KIT>B([0-9a-f]{12})", console)})
# Small caps reach the refusal paths with real-sized inputs; the defaults are what a fetch uses.
CAPS = [FetchCaps(), FetchCaps(stream_bytes=20_000, member_bytes=4096, total_bytes=65_536, members=16,
                               header_bytes=512)]
_HEADER = re.compile(rb"ustar")

RUNS_PER_TARGET: Counter[str] = Counter()


def revalidate_checksums(tar: bytes) -> bytes:
    """Recompute the checksum of every 512-byte block that looks like a ustar/GNU header."""
    data = bytearray(tar)
    for start in range(0, len(data) - 511, 512):
        if data[start + 257 : start + 262] == b"ustar":
            data[start + 148 : start + 156] = b"        "
            data[start + 148 : start + 156] = b"%06o\0 " % sum(data[start : start + 512])
    return bytes(data)


def archive_input(choices: Choices) -> bytes:
    if choices.below(2):  # damaged as console text
        return damaged_from(choices, ARCHIVES, max_lines=400)
    tar = damage(choices.pick(TARS), choices)
    if choices.below(4):
        tar = revalidate_checksums(tar)
    return console_lines(gzip.compress(tar, compresslevel=1, mtime=0))


def check_archive(output: bytes, caps: FetchCaps) -> None:
    outcome = clean(lambda: decode_archive(output, caps))
    assert outcome is None or isinstance(outcome, dict | KitError), outcome
    if isinstance(outcome, dict):
        assert all(isinstance(name, str) and isinstance(data, bytes) for name, data in outcome.items())
        assert sum(len(data) for data in outcome.values()) <= caps.total_bytes and len(outcome) <= caps.members


def check_framed(stream: bytes, caps: FetchCaps) -> None:
    outcome = clean(lambda: parse_framed_files(stream, caps))
    assert isinstance(outcome, FramedFiles | KitError), outcome
    if isinstance(outcome, FramedFiles):
        assert all(len(data) <= caps.member_bytes for data in outcome.files.values())


def check_split(buffer: bytes, token: str) -> None:
    outcome = clean(lambda: split_command_output(buffer, token))
    if isinstance(outcome, tuple):
        output, status, end = outcome
        assert 0 <= status < 10**10 and 0 < end <= len(buffer) and len(output) < end


def forged_line(data: bytes, choices: Choices, line: bytes) -> bytes:
    """``line`` (a protocol line the guest could forge) inserted at a line start of ``data``."""
    starts = [0, *(match.end() for match in re.finditer(rb"\n", data))]
    at = starts[choices.below(len(starts))]
    return data[:at] + line + b"\r\n" + data[at:]


def _run(name: str, check: Callable[[], None], shown: object) -> None:
    try:
        check()
    except BaseException:
        note(f"{name} input: {shown!r}")  # formatted only for a failing example: repr() costs
        raise
    RUNS_PER_TARGET[name] += 1


@FUZZ
@given(PROGRAMS)
def _fuzz_framing(choices: Choices) -> None:
    caps = choices.pick(CAPS)
    output = archive_input(choices)
    _run("decode_archive", lambda: check_archive(output, caps), output)
    stream = damaged_from(choices, FRAMED, max_lines=300)
    if choices.below(4) == 0:  # a begin line announcing any count, under a name of the listing or not
        name = choices.pick([b"dmesg.txt", b"status.txt", b"meminfo.txt", b"x" * 300])
        stream = forged_line(stream, choices, b"KIT>F " + name + b" " + choices.pick(NUMBERS).encode())
    _run("parse_framed_files", lambda: check_framed(stream, caps), stream)
    buffer, token = damaged_from(choices, CONSOLES, max_lines=300), choices.pick(TOKENS)
    if choices.below(4) == 0:  # an end marker of the command with any status
        buffer = forged_line(buffer, choices, b"\r\nKIT>E" + token.encode() + b" " + choices.pick(NUMBERS).encode())
    _run("split_command_output", lambda: check_split(buffer, token), (buffer, token))


def test_fuzz_framing() -> None:
    RUNS_PER_TARGET.clear()
    _fuzz_framing()
    targets = ("decode_archive", "parse_framed_files", "split_command_output")
    assert all(RUNS_PER_TARGET[name] >= EXAMPLES for name in targets), RUNS_PER_TARGET


def test_seeds_are_sound() -> None:
    """The undamaged seeds decode: the fuzzers start from valid inputs, not from noise."""
    for tar in TARS:
        assert decode_archive(console_lines(gzip.compress(tar, mtime=0)))
    assert all(parse_framed_files(stream).files and not parse_framed_files(stream).problems for stream in FRAMED)
    assert all(any(split_command_output(console, token) for token in TOKENS) for console in CONSOLES)
