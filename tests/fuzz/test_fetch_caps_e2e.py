"""A guest whose output directory holds a file over the per-file cap (real boot, real guest plan, the real
tar | gzip -1 | base64 fetch): one FetchRefused, no second fetch (framed listing or salvage), and the
host's part of the bundle kept."""

from __future__ import annotations

from pathlib import Path

import pytest

from deploy.errors import GuestOutputRefused
from deploy.framing import MAX_MEMBER_BYTES, FetchRefused
from deploy.session import GuestPaths, collect_bundle
from tests.deploy.conftest import DATA, build_module, kernel

pytestmark = [pytest.mark.e2e, pytest.mark.faults]


def test_a_file_over_the_cap_is_refused_once_and_the_rest_of_the_bundle_kept(tmp_path: Path) -> None:
    kern = kernel("6.1")
    ko = build_module(kern, DATA / "hello", tmp_path / "hello")
    big = tmp_path / "big"
    with big.open("wb") as out:  # zeros: 17 MiB on the guest, ~80 KB through gzip -1 and the console
        out.truncate(MAX_MEMBER_BYTES + (1 << 20))
    transport = kern.transport(tmp_path / "work")
    transport.push({f"{GuestPaths().out}/big.bin": big})
    bundle = tmp_path / "bundle"
    lines: list[str] = []

    with pytest.raises(FetchRefused) as raised:
        collect_bundle(transport, [ko], bundle, lines.append)

    error = raised.value
    assert isinstance(error, GuestOutputRefused) and error.exit_code == 3
    assert str(error).startswith("archive member 'big.bin' is 17825792 bytes, over the 16 MiB per-file cap: "
                                 "refused (console log: ")
    assert error.partial_bundle == bundle
    console = (bundle / "boot.log").read_bytes()
    assert console.count(b"\n|H4sI") == 1 and b"KIT>F " not in console  # one archive (gzip), no framed listing
    assert (bundle / "ko" / "hello.ko").read_bytes() == ko.read_bytes()
    assert not (bundle / "big.bin").exists() and not transport.booted
