"""A guest that sends files its plan does not write (real boot, real guest files, the real fetch path).

The files are put into the guest's output directory through its initramfs, so the real plan, the real
tar|gzip|base64 fetch and the real host-side writing see them as a hostile guest would send them.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from deploy.errors import GuestOutputRefused
from deploy.session import GuestPaths, collect_bundle
from tests.deploy.conftest import DATA, build_module, kernel

pytestmark = [pytest.mark.e2e, pytest.mark.faults]

LONG = "d" * 200 + "/" + "f" * 100  # a 301-character path: more than a file name may be on the host


def test_host_file_names_from_the_guest_are_refused_and_the_rest_kept(tmp_path: Path) -> None:
    kern = kernel("6.1")
    ko = build_module(kern, DATA / "hello", tmp_path / "hello")
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    (bundle / "target.toml").write_text('arch = "arm"\n')
    fake = tmp_path / "fake"
    fake.write_text('arch = "x86_64"\n')
    transport = kern.transport(tmp_path / "work")
    out = GuestPaths().out
    transport.push({f"{out}/target.toml": fake, f"{out}/ko": fake, f"{out}/boot.log": fake, f"{out}/{LONG}": fake})

    with pytest.raises(GuestOutputRefused) as raised:
        collect_bundle(transport, [ko], bundle, lambda _line: None)

    message = str(raised.value)
    assert "the guest sent 4 file(s) its plan does not write, refused: " in message
    for name in ("'boot.log'", "'ko'", "'target.toml'", "'" + LONG[:80] + "'"):
        assert name in message
    assert (bundle / "target.toml").read_text() == 'arch = "arm"\n'
    assert (bundle / "ko" / "hello.ko").read_bytes() == ko.read_bytes()
    assert "KIT>READY" in (bundle / "boot.log").read_text()
    for name in ("dmesg.txt", "status.txt", "vmallocinfo/hello.during.txt", "modules/hello.txt"):
        assert (bundle / name).is_file(), name
    assert not (bundle / ("d" * 200)).exists()
    assert not transport.booted
