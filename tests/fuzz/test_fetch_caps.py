"""Issue 12 row 2: what a hostile guest can send through the fetch is bounded (deploy/framing.py caps).

Real decode path throughout (decode_archive, parse_framed_files, ConsoleShell.fetch_files on a real
host shell); the hostile archives are real gzip/tar streams, built without holding their inflated bytes.
Each bomb is decoded under bounded_usage: a decoder that inflates it whole fails with MemoryError
(address space limited) instead of exhausting the machine.
"""

from __future__ import annotations

import base64
import gzip
import io
import re
import tarfile
import zlib
from pathlib import Path

import pytest

from deploy.console import ConsoleShell
from deploy.errors import FramingError, GuestOutputRefused
from deploy.framing import (
    MAX_MEMBERS,
    MAX_NOISE_LINES,
    MAX_STREAM_BYTES,
    FetchCaps,
    FetchRefused,
    decode_archive,
    parse_framed_files,
    split_command_output,
)
from tests.deploy.conftest import data_text
from tests.fuzz._archives import (
    RUNS,
    bounded_usage,
    console_lines,
    gnu_sparse_header,
    new_gzip,
    pax_sparse_member,
    real_archive_output,
    tar_bytes,
    tar_header,
)

GIB = 1 << 30
MIB = 1 << 20
PEAK_LIMIT = 200 * MIB
TIME_LIMIT_S = 10.0
END = bytes(1024)  # the tar end marker: two zero blocks
FRAMED = data_text("console-6.1-hello-collect.log")  # a real framed listing (module "hello")


def refused(output: bytes) -> tuple[str, int, float]:
    """Decode ``output`` under bounded usage; the FetchRefused message, the heap's peak and the seconds."""
    with bounded_usage() as usage, pytest.raises(FetchRefused) as caught:
        decode_archive(output)
    message = str(caught.value)
    assert len(message.splitlines()) == 1
    return message, usage.peak_bytes, usage.seconds


@pytest.mark.parametrize("series", ["5.10", "6.1", "6.12"])
def test_real_archives_decode_to_the_bundle_files(series: str) -> None:
    files = decode_archive(real_archive_output(series))
    assert files is not None and len(files) == 31
    for name, data in files.items():
        assert (RUNS / f"arm-{series}" / name).read_bytes() == data, name


def test_damaged_archives_still_fall_back() -> None:
    output = real_archive_output()
    assert decode_archive(output[: len(output) // 2]) is None  # truncated: the stream ends early
    flipped = bytearray(output)
    flipped[len(output) // 2] ^= 0x01  # base64 still valid: zlib or gzip's CRC-32 catches it
    assert decode_archive(bytes(flipped)) is None
    assert decode_archive(output + b"|AAAA\n") is None  # data after the gzip stream


def test_corrupt_deflate_data_falls_back_instead_of_escaping() -> None:
    """Found by the fuzzer: zlib.error (not an OSError) escaped gzip.decompress, so a damaged archive
    crashed the fetch instead of falling back to the framed listing."""
    compressed = bytearray(base64.b64decode(_payload(real_archive_output())))
    compressed[10] ^= 0xFF  # the first byte of the deflate data: "invalid distance too far back"
    with pytest.raises(zlib.error):
        zlib.decompress(bytes(compressed), 31)
    assert decode_archive(console_lines(bytes(compressed))) is None


def test_gzip_bomb_of_one_huge_member_is_refused_from_its_header() -> None:
    bomb = new_gzip()
    bomb.add(tar_header("dmesg.txt", 2 * GIB))
    bomb.add_zeros(2 * GIB)
    bomb.add(END)
    output = console_lines(bomb.finish())
    assert len(output) < 4 * MIB and bomb.size > 2 * GIB
    message, peak, seconds = refused(output)
    assert message == ("archive member 'dmesg.txt' is 2147483648 bytes, over the 16 MiB per-file cap: refused")
    assert peak < PEAK_LIMIT and seconds < TIME_LIMIT_S


def test_gzip_bomb_of_members_under_the_file_cap_stops_at_the_total_cap() -> None:
    bomb = new_gzip()
    for index in range(256):
        bomb.add(tar_header(f"vmallocinfo/m{index}.during.txt", 8 * MIB))
        bomb.add_zeros(8 * MIB)
    bomb.add(END)
    compressed = bomb.finish()
    output = console_lines(compressed)
    assert len(output) < 4 * MIB and bomb.size > 2 * GIB
    message, peak, seconds = refused(output)
    found = re.fullmatch(rf"the archive inflates past the 64 MiB total cap \((\d+) bytes from {len(compressed)} "
                         r"compressed\): refused", message)
    assert found is not None, message
    assert 64 * MIB < int(found.group(1)) <= 65 * MIB  # it stopped within one chunk of the cap
    assert peak < PEAK_LIMIT and seconds < TIME_LIMIT_S


def test_gzip_bomb_after_a_real_tar_stops_at_the_total_cap() -> None:
    bomb = new_gzip()
    bomb.add(_real_tar())  # a complete real archive, its end marker included; then 2 GiB of zeros
    bomb.add_zeros(2 * GIB)
    output = console_lines(bomb.finish())
    message, peak, seconds = refused(output)
    assert message.startswith("the archive inflates past the 64 MiB total cap")
    assert peak < PEAK_LIMIT and seconds < TIME_LIMIT_S


def _payload(output: bytes) -> bytes:
    return b"".join(line[1:] for line in output.splitlines() if line.startswith(b"|"))


def _real_tar() -> bytes:
    return gzip.decompress(base64.b64decode(_payload(real_archive_output())))


def test_gnu_sparse_member_is_refused() -> None:
    archive = gnu_sparse_header("dmesg.txt", 2 * GIB, 512) + b"x" * 512 + END
    with tarfile.open(fileobj=io.BytesIO(archive)) as check:  # really a 2 GiB sparse file
        (member,) = check.getmembers()
        assert member.issparse() and member.size == 2 * GIB
    output = console_lines(gzip.compress(archive, mtime=0))
    assert len(output) < 300  # the 181 bytes -> 2 GiB
    message, peak, seconds = refused(output)
    assert message == ("archive member 'dmesg.txt' is a sparse file (it expands to 2147483648 bytes): "
                       "sparse members are refused")
    assert peak < PEAK_LIMIT and seconds < TIME_LIMIT_S


def test_pax_sparse_member_is_refused() -> None:
    archive = pax_sparse_member("dmesg.txt", 2 * GIB)
    with tarfile.open(fileobj=io.BytesIO(archive)) as check:
        (member,) = check.getmembers()
        assert member.issparse() and member.size == 2 * GIB and member.name == "dmesg.txt"
    message, peak, _ = refused(console_lines(gzip.compress(archive, mtime=0)))
    assert message == ("archive member 'GNUSparseFile.0/dmesg.txt' is a sparse file (it expands to "
                       "2147483648 bytes): sparse members are refused")
    assert peak < PEAK_LIMIT


def test_too_many_members_are_refused() -> None:
    archive = tar_bytes((f"f{index}", b"") for index in range(MAX_MEMBERS + 100))
    message, peak, seconds = refused(console_lines(gzip.compress(archive, mtime=0)))
    assert message == "the archive holds more than 4096 members (member count cap; 4096 files read so far): refused"
    assert peak < PEAK_LIMIT and seconds < TIME_LIMIT_S


def test_huge_extended_header_is_refused() -> None:
    archive = tar_header("././@LongLink", 3 * MIB, tarfile.GNUTYPE_LONGNAME) + b"n" * (3 * MIB) + END
    message, _, _ = refused(console_lines(gzip.compress(archive, mtime=0)))
    assert message == "the archive has a 3145728-byte extended header (cap 64 KiB): refused"


def test_long_console_stream_is_refused_by_both_decoders() -> None:
    noise = b"[    5.123456] random: crng init done\n"
    output = real_archive_output() + noise * (MAX_STREAM_BYTES // len(noise))
    message, _, _ = refused(output)
    assert message == (f"the guest sent {len(output)} bytes of console output for one fetch, over the "
                       "16 MiB stream cap: refused")
    framed = FRAMED + noise * (MAX_STREAM_BYTES // len(noise))
    with pytest.raises(FetchRefused, match=f"^the guest sent {len(framed)} bytes of console output"):
        parse_framed_files(framed)


def test_framed_listing_caps() -> None:
    announced = FRAMED.replace(b"KIT>F dmesg.txt 12663", b"KIT>F dmesg.txt 2147483648")
    with pytest.raises(FetchRefused, match=r"^framed file 'dmesg.txt' announces 2147483648 bytes, over the 16 MiB "
                                           r"per-file cap: refused$"):
        parse_framed_files(announced)
    digits = FRAMED.replace(b"KIT>F dmesg.txt 12663", b"KIT>F dmesg.txt " + b"9" * 5000)
    with pytest.raises(FetchRefused, match="announces a 5000-digit count of bytes"):
        parse_framed_files(digits)
    many = b"".join(b"KIT>F f%d 0\r\nKIT>EOF f%d\r\n" % (index, index) for index in range(MAX_MEMBERS + 1))
    with pytest.raises(FetchRefused, match=r"^the framed listing announces more than 4096 files"):
        parse_framed_files(many)
    total = sum(len(data) for data in parse_framed_files(FRAMED).files.values())
    with pytest.raises(FetchRefused, match=r"^the framed files add up to \d+ bytes, over the 20000 bytes total cap"):
        parse_framed_files(FRAMED, FetchCaps(total_bytes=20_000))
    assert total > 20_000
    assert parse_framed_files(FRAMED, FetchCaps(total_bytes=total)).problems == {}


def test_framed_noise_is_bounded_and_the_files_kept() -> None:
    lines = FRAMED.split(b"\n")
    inside = lines.index(b"KIT>F dmesg.txt 12663\r") + 5
    noisy = b"\n".join([*lines[:inside], *[b"[    5.1] noise %d\r" % i for i in range(5000)], *lines[inside:]])
    framed = parse_framed_files(noisy)
    assert framed.files == parse_framed_files(FRAMED).files and framed.problems == {}
    assert len(framed.noise) == MAX_NOISE_LINES
    assert framed.noise_dropped == 195 + 5000 - MAX_NOISE_LINES


def test_exit_status_with_too_many_digits_is_a_framing_error() -> None:
    stream = b"KIT>Btok\r\nout\r\n\r\nKIT>Etok " + b"9" * 5000 + b"\r\n"
    with pytest.raises(FramingError, match=r"^the end marker of command tok carries a 5000-digit exit status"):
        split_command_output(stream, "tok")
    assert split_command_output(b"KIT>Btok\r\nout\r\n\r\nKIT>Etok 9999999999\r\n", "tok") is not None


def test_fetch_files_refuses_a_file_over_the_cap_and_does_not_fall_back(host_shell: ConsoleShell,
                                                                        tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "status.txt").write_bytes(b"hello insmod=0 rmmod=0\n")
    with (out / "dmesg.txt").open("wb") as big:  # 17 MiB of real zeros (not sparse: tar reads them all)
        for _ in range(17):
            big.write(bytes(MIB))
    with pytest.raises(FetchRefused) as caught:
        host_shell.fetch_files(str(out), 30)
    error = caught.value
    assert isinstance(error, FramingError) and isinstance(error, GuestOutputRefused) and error.exit_code == 3
    assert str(error) == (f"archive member 'dmesg.txt' is 17825792 bytes, over the 16 MiB per-file cap: "
                          f"refused (console log: {host_shell.log_path})")
    assert b"KIT>F " not in host_shell.log_path.read_bytes()  # the framed listing was not tried
    assert host_shell.run("echo still-answers", 10).output == "still-answers\n"
    (out / "dmesg.txt").write_bytes(b"small\n")
    assert host_shell.fetch_files(str(out), 30) == {"status.txt": b"hello insmod=0 rmmod=0\n",
                                                    "dmesg.txt": b"small\n"}
