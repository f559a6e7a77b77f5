"""kbuild.kernels helpers on small inputs (apt output captured on this kind of machine)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from kbuild import apt, kernels
from kbuild.apt import PrivateApt
from kbuild.kernels import kernel_release, local_kernel_tree, makefile_version, newest_version
from kit.errors import InfraError, UserError

# `apt-get update` output, captured 2025-11 while deb.debian.org's security mirror was mid-sync.
APT_UPDATE_MIRROR_SYNC = """\
Hit:1 http://deb.debian.org/debian bookworm InRelease
Get:6 http://deb.debian.org/debian-security bookworm-security/main armhf Packages [348 kB]
Err:6 http://deb.debian.org/debian-security bookworm-security/main armhf Packages
  File has unexpected size (334084 != 348592). Mirror sync in progress? [IP: 203.0.113.80 80]
Fetched 1,234 kB in 3s (411 kB/s)
E: Failed to fetch http://deb.debian.org/debian-security/dists/bookworm-security/main/binary-armhf/Packages.xz  \
File has unexpected size (334084 != 348592). Mirror sync in progress? [IP: 203.0.113.80 80]
E: Some index files failed to download. They have been ignored, or old ones used instead.
"""
# `apt-cache show linux-headers-6.12.95+deb12-armmp:armhf=6.12.95-1~bpo12+1`, Depends field.
DEPENDS_6_12 = (
    "linux-base (>= 4.12~), linux-headers-6.12.95+deb12-common (= 6.12.95-1~bpo12+1), "
    "linux-image-6.12.95+deb12-armmp (= 6.12.95-1~bpo12+1) | "
    "linux-image-6.12.95+deb12-armmp-unsigned (= 6.12.95-1~bpo12+1), linux-kbuild-6.12.95+deb12, gcc-12"
)


def test_apt_failures_keep_the_failed_fetch() -> None:
    failures = apt._apt_failures(APT_UPDATE_MIRROR_SYNC)
    assert any("/dists/bookworm-security/" in f for f in failures)
    assert not any("/dists/bookworm/" in f for f in failures)
    assert apt._apt_error_line(APT_UPDATE_MIRROR_SYNC).startswith("Failed to fetch http://deb.debian.org")


def test_depends_names_stop_at_commas() -> None:
    fields = {"Depends": DEPENDS_6_12}
    assert kernels._depends_matching(fields, rf"linux-kbuild-{kernels._NAME}", "h") == "linux-kbuild-6.12.95+deb12"
    common = kernels._depends_matching(fields, rf"linux-headers-{kernels._NAME}-common", "h")
    assert common == "linux-headers-6.12.95+deb12-common"
    image = kernels._depends_matching(fields, rf"linux-image-{kernels._NAME}", "h")
    assert image == "linux-image-6.12.95+deb12-armmp"
    with pytest.raises(InfraError, match="packaging changed"):
        kernels._depends_matching({"Depends": "gcc-12"}, rf"linux-kbuild-{kernels._NAME}", "h")


def test_newest_version_uses_debian_ordering() -> None:
    assert newest_version(["6.1.76-1", "6.1.176-1", "6.1.170-1"]) == "6.1.176-1"
    assert newest_version(["6.12.95-1", "6.12.95-1~bpo12+1"]) == "6.12.95-1"  # ~ sorts before anything


def test_series_filter() -> None:
    assert kernels._in_series("6.1.176-1", "6.1")
    assert not kernels._in_series("6.12.95-1~bpo12+1", "6.1")


def test_private_sources_list(tmp_path: Path) -> None:
    apt = PrivateApt(tmp_path, archs=("armhf", "amd64", "armhf"))
    text = apt.sources_text()
    assert len(text.splitlines()) == 5
    for suite in ("bookworm ", "bookworm-updates", "bookworm-security", "bookworm-backports", "bullseye "):
        assert suite in text
    assert "[arch=amd64,armhf signed-by=/usr/share/keyrings/debian-archive-keyring.gpg]" in text
    options = " ".join(apt.options())
    assert f"Dir::Etc::sourcelist={tmp_path}/sources.list" in options
    assert f"Dir::State::Lists={tmp_path}/lists" in options and "Debug::NoLocking=1" in options


def test_default_cache_follows_xdg(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert kernels.default_cache_dir() == tmp_path / "kmodkit"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert kernels.default_cache_dir() == tmp_path / "home/.cache/kmodkit"


def _fake_tree(root: Path, kernel_release_file: str | None, uts: str | None) -> Path:
    (root / "include/config").mkdir(parents=True)
    (root / "include/generated").mkdir(parents=True)
    (root / "Makefile").write_text("VERSION = 6\nPATCHLEVEL = 1\nSUBLEVEL = 176\nEXTRAVERSION =\n")
    if kernel_release_file is not None:
        (root / "include/config/kernel.release").write_text(kernel_release_file + "\n")
    if uts is not None:
        (root / "include/generated/utsrelease.h").write_text(f'#define UTS_RELEASE "{uts}"\n')
    return root


def test_release_prefers_utsrelease_like_debian_headers(tmp_path: Path) -> None:
    # Debian's headers: kernel.release holds the upstream version, UTS_RELEASE the ABI release.
    kdir = _fake_tree(tmp_path, "6.1.176", "6.1.0-50-armmp")
    assert kernel_release(kdir) == "6.1.0-50-armmp"
    assert makefile_version(kdir) == "6.1.176"


def test_release_from_kernel_release_file(tmp_path: Path) -> None:
    assert kernel_release(_fake_tree(tmp_path, "6.6.0-rc1+", None)) == "6.6.0-rc1+"


def test_makefile_version_follows_include(tmp_path: Path) -> None:
    common = _fake_tree(tmp_path / "common", None, None)
    (tmp_path / "flavour").mkdir()
    (tmp_path / "flavour/Makefile").write_text(f"include {common}/Makefile\n")
    assert makefile_version(tmp_path / "flavour") == "6.1.176"


def test_unprepared_local_tree_says_what_to_run(tmp_path: Path) -> None:
    kdir = _fake_tree(tmp_path / "linux", None, None)
    (kdir / ".config").write_text("CONFIG_ARM=y\n")
    image = tmp_path / "zImage"
    image.write_bytes(b"\0" * 64)
    with pytest.raises(UserError, match="modules_prepare"):
        local_kernel_tree(kdir, image)


def test_local_tree(tmp_path: Path) -> None:
    kdir = _fake_tree(tmp_path / "linux", None, "6.1.0-rc1-custom")
    (kdir / ".config").write_text("CONFIG_ARM=y\n")
    image = tmp_path / "zImage"
    image.write_bytes(b"\0" * 64)
    tree = local_kernel_tree(kdir, image)
    assert (tree.release, tree.version, tree.debian_version) == ("6.1.0-rc1-custom", "6.1.176", None)
    assert tree.config == kdir.resolve() / ".config" and tree.busybox is None
    with pytest.raises(UserError, match="does not exist"):
        local_kernel_tree(kdir, tmp_path / "missing-zImage")
    with pytest.raises(UserError, match="not a kernel tree"):
        local_kernel_tree(tmp_path, image)


def test_abandoned_half_unpacked_trees_are_removed(tmp_path: Path) -> None:
    dest = tmp_path / "6.1.0-50-armmp_6.1.176-1"
    dead = tmp_path / f"{dest.name}.tmp-999999999"  # above pid_max: no such process
    mine = tmp_path / f"{dest.name}.tmp-{os.getpid()}"
    other = tmp_path / "5.10.0-32-armmp_5.10.223-1.tmp-999999999"
    for d in (dead, mine, other):
        d.mkdir()
    kernels._remove_abandoned_tmp_dirs(dest)
    assert not dead.exists() and mine.exists() and other.exists()
