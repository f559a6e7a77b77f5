"""A cached Debian kernel (and busybox) is checked against its packages' DEBIAN/md5sums before use.

Real packages from Debian's mirror, fetched into a temporary cache (the private apt lists are copied
from the kit's cache when it has them, else updated); the real dpkg-deb is the oracle of what a
package ships. Needs the network: about a minute here (one kernel fetched twice, its image package once more).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from kbuild import checksums
from kbuild.apt import PrivateApt, host_arch
from kbuild.kernels import MARKER, KernelTree, default_cache_dir, fetch_busybox, fetch_debian_kernel
from kbuild.targets import Target, load_target

TARGET = "arm-6.12"  # the smallest of the three Debian kernels


@dataclass
class Fetched:
    cache: Path
    target: Target
    tree: KernelTree
    log: list[str]

    @property
    def entry(self) -> Path:
        return self.tree.kdir.parents[3]  # <entry>/root/usr/src/linux-headers-<release>

    def apt(self) -> PrivateApt:
        arch = self.target.kernel.debian_arch
        return PrivateApt(self.cache / "apt", archs=(arch, host_arch()))


def md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def shipped_md5(deb: Path, path: str) -> str:
    """What the package's own DEBIAN/md5sums says of ``path``, read by dpkg-deb (not the kit's parser)."""
    out = subprocess.run(["dpkg-deb", "--info", str(deb), "md5sums"], capture_output=True, text=True, check=True)
    (line,) = [line for line in out.stdout.splitlines() if line.endswith(f"  {path}")]
    return line.split()[0]


def flip_byte(path: Path, offset: int) -> None:
    """Change one byte in place; keeps the size."""
    with path.open("r+b") as f:
        f.seek(offset)
        byte = f.read(1)
        f.seek(offset)
        f.write(bytes([byte[0] ^ 0x01]))


def new_cache(directory: Path) -> Path:
    """An empty kit cache with a copy of the kit's private apt lists (no `apt-get update` needed)."""
    apt = default_cache_dir() / "apt"
    if (apt / "lists").is_dir() and (apt / "sources.list").is_file():
        shutil.copytree(apt / "lists", directory / "apt" / "lists", symlinks=True)
        shutil.copy2(apt / "sources.list", directory / "apt" / "sources.list")
    return directory


@pytest.fixture(scope="module")
def fetched(tmp_path_factory: pytest.TempPathFactory) -> Fetched:
    if shutil.which("apt-get") is None or shutil.which("dpkg-deb") is None:
        pytest.fail("apt-get and dpkg-deb are needed to fetch Debian kernels")
    cache = new_cache(tmp_path_factory.mktemp("cache"))
    target = load_target(TARGET)
    log: list[str] = []
    tree = fetch_debian_kernel(target, cache=cache, log=log.append)
    return Fetched(cache, target, tree, log)


@pytest.fixture(scope="module")
def image_deb(fetched: Fetched, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The kernel image package, downloaded on its own: the oracle of the image's md5."""
    arch = fetched.target.kernel.debian_arch
    wanted = f"linux-image-{fetched.tree.release}:{arch}={fetched.tree.debian_version}"
    (deb,) = fetched.apt().download([wanted], tmp_path_factory.mktemp("image-deb"))
    return deb


@pytest.fixture
def restored(fetched: Fetched) -> Iterator[list[tuple[Path, bytes, int]]]:
    """Files a test damages in the shared entry, put back (content and mtime) afterwards."""
    saved: list[tuple[Path, bytes, int]] = []
    yield saved
    for path, content, mtime_ns in saved:
        path.write_bytes(content)
        os.utime(path, ns=(mtime_ns, mtime_ns))
    (fetched.entry / checksums.FULL_CHECK_STAMP).touch()  # as after a full check


def save(saved: list[tuple[Path, bytes, int]], path: Path) -> None:
    saved.append((path, path.read_bytes(), path.stat().st_mtime_ns))


def test_a_fetch_records_and_verifies_every_packages_md5sums(fetched: Fetched) -> None:
    assert any(line.startswith("# verified ") and "md5sums" in line for line in fetched.log)
    manifest = checksums.load(fetched.entry, checksums.MANIFEST)
    boot = checksums.load(fetched.entry, checksums.BOOT_MANIFEST)
    assert manifest is not None and boot is not None
    root = fetched.entry / "root"
    release = fetched.tree.release
    image = f"boot/vmlinuz-{release}"
    assert manifest[image].package == f"linux-image-{release}"
    assert len(manifest) > 15000  # every file of the five packages (headers: ~15k)
    kdir = fetched.tree.kdir.relative_to(root).as_posix()
    for path in (image, "bin/busybox", f"{kdir}/.config", f"{kdir}/Module.symvers", f"{kdir}/Makefile"):
        assert path in boot, path
    assert any(s.package.startswith("linux-kbuild-") for s in boot.values())
    # The rewritten Makefile (private include path) is expected as rewritten, not as packaged.
    assert boot[f"{kdir}/Makefile"].md5 == md5(fetched.tree.kdir / "Makefile")
    assert str(fetched.entry) in (fetched.tree.kdir / "Makefile").read_text()


def test_an_intact_entry_is_reused_after_checking_its_boot_files(fetched: Fetched) -> None:
    log: list[str] = []
    again = fetch_debian_kernel(fetched.target, cache=fetched.cache, log=log.append)
    assert again == fetched.tree
    (reused,) = [line for line in log if line.startswith("# reusing cached kernel")]
    assert "boot-critical files verified in" in reused
    assert not any(" download " in line or line.startswith("dpkg-deb") for line in log)


def test_the_whole_tree_is_checked_once_an_hour(fetched: Fetched) -> None:
    os.utime(fetched.entry / checksums.FULL_CHECK_STAMP, (0, 0))  # the last full check: long ago
    log: list[str] = []
    fetch_debian_kernel(fetched.target, cache=fetched.cache, log=log.append)
    (reused,) = [line for line in log if line.startswith("# reusing cached kernel")]
    manifest = checksums.load(fetched.entry, checksums.MANIFEST)
    assert manifest is not None and f"(all {len(manifest)} files verified in" in reused
    check = checksums.check_entry(fetched.entry, fetched.entry / "root")
    assert check is not None and not check.full  # the stamp is fresh again


def test_a_flipped_byte_in_a_header_is_named(fetched: Fetched, restored: list[tuple[Path, bytes, int]]) -> None:
    root = fetched.entry / "root"
    (header,) = root.glob("usr/src/linux-headers-*-common/include/linux/module.h")
    save(restored, header)
    flip_byte(header, 100)  # a write: the mtime moves
    quick = checksums.check_entry(fetched.entry, root)
    assert quick is not None and quick.damage is None  # headers: not hashed on every use
    os.utime(fetched.entry / checksums.FULL_CHECK_STAMP, (0, 0))
    full = checksums.check_entry(fetched.entry, root)
    assert full is not None and full.full and full.damage is not None
    assert full.damage.path == header.relative_to(root).as_posix()
    assert full.damage.package.endswith("-common") and "does not match the package's md5sums" in str(full.damage)


def test_a_boot_file_is_hashed_on_every_use_even_with_its_mtime_kept(
    fetched: Fetched, restored: list[tuple[Path, bytes, int]]
) -> None:
    symvers = fetched.tree.kdir / "Module.symvers"
    save(restored, symvers)
    mtime_ns = symvers.stat().st_mtime_ns
    flip_byte(symvers, 1000)
    os.utime(symvers, ns=(mtime_ns, mtime_ns))  # same size, same mtime: only its md5 tells
    check = checksums.check_entry(fetched.entry, fetched.entry / "root")
    assert check is not None and not check.full and check.damage is not None
    assert check.damage.path.endswith("/Module.symvers")


def test_an_entry_from_before_checksums_is_verified_in_place(fetched: Fetched) -> None:
    for name in (checksums.MANIFEST, checksums.BOOT_MANIFEST, checksums.FULL_CHECK_STAMP):
        (fetched.entry / name).unlink()
    root_inode = (fetched.entry / "root").stat().st_ino
    log: list[str] = []
    again = fetch_debian_kernel(fetched.target, cache=fetched.cache, log=log.append)
    assert again == fetched.tree
    assert any("has no md5sums of its packages" in line for line in log)
    assert any(line.startswith("# verified ") for line in log)
    assert (fetched.entry / "root").stat().st_ino == root_inode  # the tree itself was kept
    unpacked = [line for line in log if line.startswith("dpkg-deb -x")]
    assert len(unpacked) == 1 and "linux-headers-" in unpacked[0]  # only for its original Makefile
    assert checksums.load(fetched.entry, checksums.BOOT_MANIFEST) is not None
    assert not list(fetched.entry.parent.glob("*.tmp-*"))


def test_a_truncated_image_is_named_fetched_again_and_intact(fetched: Fetched, image_deb: Path) -> None:
    image = fetched.tree.image
    size = image.stat().st_size
    with image.open("r+b") as f:
        f.truncate(size // 2)
    log: list[str] = []
    again = fetch_debian_kernel(fetched.target, cache=fetched.cache, log=log.append)
    damaged = [line for line in log if "is damaged" in line]
    assert len(damaged) == 1, log
    name = f"boot/vmlinuz-{fetched.tree.release}"
    assert f"{fetched.entry} is damaged: {name} (from linux-image-{fetched.tree.release})" in damaged[0]
    assert f"{size // 2} bytes, {size} when verified" in damaged[0]
    assert damaged[0].endswith("removing it and fetching it again")
    assert any(line.startswith("# downloaded 5 packages") for line in log)
    assert again == fetched.tree
    assert image.stat().st_size == size and md5(image) == shipped_md5(image_deb, name)
    assert (fetched.entry / MARKER).is_file() and not list(fetched.entry.parent.glob("*.tmp-*"))
    check = checksums.check_entry(fetched.entry, fetched.entry / "root")
    assert check is not None and check.damage is None


def test_busybox_is_checked_and_fetched_again_when_damaged(fetched: Fetched, tmp_path: Path) -> None:
    cache, target = fetched.cache, fetched.target  # its own directory there: busybox/<arch>
    binary = fetch_busybox(target, cache=cache)
    log: list[str] = []
    assert fetch_busybox(target, cache=cache, log=log.append) == binary and log == []  # intact: no apt
    size = binary.stat().st_size
    with binary.open("r+b") as f:
        f.truncate(size - 1)
    assert fetch_busybox(target, cache=cache, log=log.append) == binary
    (damaged,) = [line for line in log if line.startswith("# cached busybox")]
    assert "is damaged: bin/busybox (from busybox-static)" in damaged and damaged.endswith("fetching it again")
    deb_dir = tmp_path / "deb"
    (deb,) = fetched.apt().download([f"busybox-static:{fetched.target.kernel.debian_arch}"], deb_dir)
    assert binary.stat().st_size == size and md5(binary) == shipped_md5(deb, "bin/busybox")
    (binary.parent.parent / checksums.MANIFEST).unlink()  # a busybox cached before checksums were kept
    log.clear()
    assert fetch_busybox(target, cache=cache, log=log.append) == binary
    assert any("has no md5sums of its package" in line for line in log)
    assert md5(binary) == shipped_md5(deb, "bin/busybox")


def test_download_replaces_a_stale_deb_apt_would_trust(fetched: Fetched, tmp_path: Path) -> None:
    """apt-get download keeps a same-named .deb of the right size unchecked: the kit removes it first."""
    apt = fetched.apt()
    (deb,) = apt.download([f"busybox-static:{fetched.target.kernel.debian_arch}"], tmp_path / "debs")
    good = md5(deb)
    flip_byte(deb, deb.stat().st_size // 2)
    (again,) = apt.download([f"busybox-static:{fetched.target.kernel.debian_arch}"], tmp_path / "debs")
    assert again == deb and md5(again) == good
