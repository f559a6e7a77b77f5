"""Real boots: Debian armmp kernels in QEMU (TCG), real modules built with Kbuild, real bundles."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from deploy.errors import BootTimeout, GuestCrashed
from deploy.session import collect_bundle
from tests.deploy.conftest import DATA, build_module, kernel

pytestmark = pytest.mark.e2e

BUNDLE_FILES = ["boot.log", "dmesg.txt", "status.txt", "meminfo.txt", "cmdline.txt", "iomem.txt",
                "zoneinfo.txt", "modules/hello.txt", "sections/hello.txt",
                "vmallocinfo/hello.before.txt", "vmallocinfo/hello.during.txt",
                "vmallocinfo/hello.after.txt", "ko/hello.ko"]  # ktap/ is cut by the pipeline (kit)
MODULES_VADDR, MODULES_END = 0xBF000000, 0xBFE00000  # arm 3G/1G split (kernel-model.md)


@pytest.mark.parametrize("series", ["5.10", "6.1", "6.12"])
def test_hello_bundle(series: str, tmp_path: Path) -> None:
    kern = kernel(series)
    ko = build_module(kern, DATA / "hello", tmp_path / "hello")
    bundle = tmp_path / "bundle"
    result = collect_bundle(kern.transport(tmp_path / "work"), [ko], bundle, lambda _l: None)

    for name in BUNDLE_FILES:
        assert (bundle / name).is_file(), name
    assert (bundle / "status.txt").read_text() == "hello insmod=0 rmmod=0\n"
    (line,) = [ln for ln in (bundle / "modules/hello.txt").read_text().splitlines() if ln.startswith("hello ")]
    address = int(line.split()[5], 16)
    assert MODULES_VADDR <= address < MODULES_END
    sections = dict(ln.split() for ln in (bundle / "sections/hello.txt").read_text().splitlines())
    assert MODULES_VADDR <= int(sections[".gnu.linkonce.this_module"], 16) < MODULES_END
    assert (bundle / "ko/hello.ko").read_bytes() == ko.read_bytes()
    # hello.c: vmalloc(100) in init, printed with %px, held until rmmod: listed only while loaded.
    printed = re.search(r"\] hello ([0-9a-f]{8})$", (bundle / "dmesg.txt").read_text(), re.MULTILINE)
    assert printed is not None
    area = f"0x{printed.group(1)}-"
    during = (bundle / "vmallocinfo/hello.during.txt").read_text().splitlines()
    (held,) = [line for line in during if line.startswith(area)]
    assert held.split()[1] == "8192"  # one page plus the guard page
    assert not [line for line in (bundle / "vmallocinfo/hello.after.txt").read_text().splitlines()
                if line.startswith(area)]
    assert "kptr_restrict" not in (bundle / "meminfo.txt").read_text()
    assert (bundle / "meminfo.txt").read_text().startswith("MemTotal:")
    assert "console=ttyAMA0" in (bundle / "cmdline.txt").read_text()
    assert "kit: begin hello" in (bundle / "dmesg.txt").read_text()
    assert "KIT>READY" in (bundle / "boot.log").read_text()
    assert result.total_s > 0


def test_panicking_module_gives_crash_error_and_partial_bundle(tmp_path: Path) -> None:
    kern = kernel("6.1")
    ko = build_module(kern, DATA / "kit_panic", tmp_path / "kit_panic")
    bundle = tmp_path / "bundle"
    start = time.monotonic()
    with pytest.raises(GuestCrashed) as caught:
        collect_bundle(kern.transport(tmp_path / "work"), [ko], bundle, lambda _l: None)
    assert time.monotonic() - start < 30
    assert "Kernel panic" in caught.value.excerpt
    assert caught.value.partial_bundle == bundle
    assert "deliberate panic" in (bundle / "boot.log").read_text()
    assert (bundle / "ko/kit_panic.ko").is_file()
    assert not (bundle / "status.txt").exists()  # missing means "not checked", never "passed"


def test_wrong_console_gives_boot_timeout_within_deadline(tmp_path: Path) -> None:
    kern = kernel("6.1")
    transport = kern.transport(tmp_path / "work", append="console=tty0 panic=-1", boot_s=12)
    start = time.monotonic()
    with pytest.raises(BootTimeout):
        transport.boot()
    elapsed = time.monotonic() - start
    assert 12 <= elapsed < 20
    assert transport.console_log.is_file()


def test_the_framed_listing_carries_each_files_md5_from_busybox(tmp_path: Path) -> None:
    """The fallback fetch on the real guest: busybox wc, md5sum and awk give every header its checksum."""
    from deploy.console import fetch_command
    from deploy.framing import FILE_BEGIN, parse_framed_files

    kern = kernel("6.1")
    with kern.transport(tmp_path / "work") as transport:
        transport.boot()
        made = transport.run("mkdir -p /tmp/f/sub && printf 'one\\ntwo' > /tmp/f/a && : > /tmp/f/empty && "
                             "printf 'x\\n' > /tmp/f/sub/b", 10)
        assert made.exit_status == 0, made.output
        listing = transport.run(fetch_command("/tmp/f"), 10)
    stream = listing.output.encode()
    headers = [m for m in map(FILE_BEGIN.fullmatch, stream.splitlines()) if m is not None]
    assert sorted(h.group(1) for h in headers) == [b"a", b"empty", b"sub/b"]
    assert {h.group(1): h.group(3) for h in headers}[b"empty"] == b"d41d8cd98f00b204e9800998ecf8427e"
    framed = parse_framed_files(stream)
    assert framed.problems == {}
    assert framed.files == {"a": b"one\ntwo", "empty": b"", "sub/b": b"x\n"}
