"""Kernels to build against and boot: a Debian kernel fetched from the mirror, or a user's tree.

``fetch_debian_kernel`` uses a private apt configuration under the cache directory (its own
sources.list, lists and archives; the system's apt setup is never touched), resolves the current ABI
from the flavour metapackage at fetch time (ABI names move: 6.1.0-50 today, -51 tomorrow), downloads
the image, the headers, the ``-common`` headers, the host's ``linux-kbuild`` of exactly the same
source version and ``busybox-static``, and unpacks them with ``dpkg-deb -x``. A tree is unpacked into
a temporary directory and renamed into place once complete (the marker file is written last), so an
interrupted fetch never leaves a half tree that looks usable.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from kbuild.apt import SUITE_COMPANIONS, SUITES, PrivateApt, host_arch
from kbuild.targets import KernelSpec, Target
from kbuild.toolchain import Log, no_log, run
from kit.errors import InfraError, UserError

MARKER = "kmodkit-complete.json"
_NAME = r"[a-z0-9][a-z0-9.+-]*?"  # the rest of a package name, lazily (Debian policy 5.6.1)


@dataclass(frozen=True)
class KernelTree:
    """Everything needed to build modules for a kernel and boot it."""

    kdir: Path  # headers (or full build) dir, for `make -C`
    image: Path  # vmlinuz / zImage
    dtb: Path | None  # None for QEMU virt (QEMU generates the device tree)
    release: str  # uname -r, e.g. 6.1.0-50-armmp
    version: str  # upstream, e.g. 6.1.176
    config: Path  # the kernel .config
    busybox: Path | None  # static busybox for the initramfs
    debian_version: str | None = None  # e.g. 6.1.176-1; None for a user's tree
    modules_dir: Path | None = None  # lib/modules/<release> of the image package, when present


@dataclass(frozen=True)
class KernelPackages:
    """The exact packages of one Debian kernel build (one source version)."""

    debian_version: str
    release: str
    image: str  # apt-get download arguments, e.g. linux-image-6.1.0-50-armmp:armhf=6.1.176-1
    headers: str
    headers_common: str
    kbuild: str

    def download_args(self) -> list[str]:
        return [self.image, self.headers, self.headers_common, self.kbuild]


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/kmodkit``, default ``~/.cache/kmodkit`` (outside the repository)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "kmodkit"


def fetch_debian_kernel(target: Target, cache: Path | None = None, log: Log = no_log) -> KernelTree:
    """Fetch (or reuse from the cache) the current Debian kernel of ``target`` and return its tree."""
    root = cache if cache is not None else default_cache_dir()
    spec = target.kernel
    apt = PrivateApt(root / "apt", archs=(spec.debian_arch, host_arch(log)), log=log)
    apt.ensure_lists(spec.suite)
    packages = resolve_kernel_packages(apt, spec)
    dest = root / "kernels" / spec.debian_arch / f"{packages.release}_{packages.debian_version}"
    if not (dest / MARKER).is_file():
        _populate(dest, packages, apt, spec, log)
    else:
        log(f"# reusing cached kernel {dest}")
    return _debian_tree(dest, packages.release)


def local_kernel_tree(
    kdir: Path, image: Path, dtb: Path | None = None, busybox: Path | None = None
) -> KernelTree:
    """A user's prepared kernel tree (``make modules_prepare`` done, or an installed headers dir)."""
    kdir = kdir.resolve()
    if not (kdir / "Makefile").is_file():
        raise UserError(f"{kdir} is not a kernel tree (no Makefile): pass the kernel build directory")
    release = kernel_release(kdir)
    config = kdir / ".config"
    if not config.is_file():
        raise UserError(f"{kdir} has no .config: configure it (make ARCH=arm olddefconfig) first")
    for what, path in (("kernel image", image), ("dtb", dtb), ("busybox", busybox)):
        if path is not None and not path.is_file():
            raise UserError(f"{what} {path} does not exist")
    return KernelTree(
        kdir=kdir,
        image=image.resolve(),
        dtb=dtb.resolve() if dtb else None,
        release=release,
        version=makefile_version(kdir) or _version_from_release(release),
        debian_version=None,
        config=config,
        busybox=busybox.resolve() if busybox else None,
        modules_dir=None,
    )


def kernel_release(kdir: Path) -> str:
    """``uname -r`` of a prepared tree, as vermagic has it.

    include/generated/utsrelease.h first: Debian's headers put the upstream version (6.1.176) in
    include/config/kernel.release while UTS_RELEASE is the ABI release (6.1.0-50-armmp).
    """
    uts = kdir / "include/generated/utsrelease.h"
    if uts.is_file():
        match = re.search(r'#define\s+UTS_RELEASE\s+"([^"]+)"', uts.read_text())
        if match:
            return match.group(1)
    release_file = kdir / "include/config/kernel.release"
    if release_file.is_file() and release_file.read_text().strip():
        return release_file.read_text().strip()
    raise UserError(
        f"{kdir} is not prepared (no include/generated/utsrelease.h): run "
        f"`make -C {kdir} ARCH=arm CROSS_COMPILE=arm-linux-gnueabihf- modules_prepare`"
    )


def makefile_version(kdir: Path) -> str | None:
    """``VERSION.PATCHLEVEL.SUBLEVEL`` from the tree's Makefile, following a one-line ``include``."""
    text = (kdir / "Makefile").read_text(errors="replace")
    assignment = r"^(VERSION|PATCHLEVEL|SUBLEVEL|EXTRAVERSION)\s*=[ \t]*(\S*)"
    found: list[tuple[str, str]] = re.findall(assignment, text, re.M)
    fields: dict[str, str] = dict(found)
    if "VERSION" in fields and "PATCHLEVEL" in fields:
        version = f"{fields['VERSION']}.{fields['PATCHLEVEL']}"
        if fields.get("SUBLEVEL"):
            version += f".{fields['SUBLEVEL']}"
        return version + fields.get("EXTRAVERSION", "")
    include = re.search(r"^include\s+(/\S+/Makefile)\s*$", text, re.M)
    if include and Path(include.group(1)).is_file():
        return makefile_version(Path(include.group(1)).parent)
    return None


def _version_from_release(release: str) -> str:
    match = re.match(r"\d+\.\d+(\.\d+)?", release)
    if not match:
        raise UserError(f"cannot read a kernel version from release {release!r}")
    return match.group(0)


def resolve_kernel_packages(apt: PrivateApt, spec: KernelSpec) -> KernelPackages:
    """The packages of the newest ``linux-image-<flavour>`` of the target's suite and series."""
    if spec.suite not in {suite for _, suite in SUITES}:
        known = ", ".join(suite for _, suite in SUITES)
        raise UserError(f"suite {spec.suite!r} is not in the private sources list; known: {known}")
    arch = spec.debian_arch
    meta = f"linux-image-{spec.flavour}:{arch}"
    accepted = {spec.suite + c for c in SUITE_COMPANIONS}
    versions = [v for v, suite in apt.madison(meta) if suite in accepted and _in_series(v, spec.series)]
    if not versions:
        raise InfraError(
            f"no {meta} {spec.series}.x in {spec.suite}: the mirror moved on? "
            f"see `apt-cache {' '.join(apt.options())} madison {meta}`"
        )
    version = newest_version(versions, apt.log)
    image = _depends_matching(apt.show(meta, version), rf"linux-image-{_NAME}", meta)
    release = image.removeprefix("linux-image-").removesuffix("-unsigned")
    headers = f"linux-headers-{release}"
    headers_fields = apt.show(f"{headers}:{arch}", version)
    common = _depends_matching(headers_fields, rf"linux-headers-{_NAME}-common", headers)
    kbuild = _depends_matching(headers_fields, rf"linux-kbuild-{_NAME}", headers)
    host = host_arch(apt.log)
    return KernelPackages(
        debian_version=version,
        release=release,
        image=f"{image}:{arch}={version}",
        headers=f"{headers}:{arch}={version}",
        headers_common=f"{common}={version}",  # Architecture: all
        kbuild=f"{kbuild}:{host}={version}",  # exactly the same source version, for the host
    )


def newest_version(versions: list[str], log: Log = no_log) -> str:
    """The highest Debian version, compared by ``dpkg --compare-versions``."""
    best = versions[0]
    for candidate in versions[1:]:
        if run(["dpkg", "--compare-versions", candidate, "gt", best], log, check=False).returncode == 0:
            best = candidate
    return best


def _in_series(debian_version: str, series: str) -> bool:
    return debian_version.startswith(series + ".") or debian_version.startswith(series + "-")


def _depends_matching(fields: dict[str, str], pattern: str, package: str) -> str:
    match = re.search(rf"(?<![\w.+-])({pattern})(?![\w.+-])", fields.get("Depends", ""))
    if not match:
        raise InfraError(f"{package} does not depend on {pattern}: Debian's packaging changed")
    return match.group(1)


def _populate(dest: Path, packages: KernelPackages, apt: PrivateApt, spec: KernelSpec, log: Log) -> None:
    """Download and unpack into ``dest.tmp-<pid>``, fix it up, write the marker, rename into place."""
    _remove_abandoned_tmp_dirs(dest)
    tmp = dest.with_name(f"{dest.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    started = time.monotonic()
    debs = apt.download([*packages.download_args(), f"busybox-static:{spec.debian_arch}"], tmp / "debs")
    log(f"# downloaded {len(debs)} packages in {time.monotonic() - started:.1f} s")
    started = time.monotonic()
    for deb in debs:
        run(["dpkg-deb", "-x", str(deb), str(tmp / "root")], log)
    shutil.rmtree(tmp / "debs")
    log(f"# unpacked in {time.monotonic() - started:.1f} s")
    _point_headers_at_common(tmp / "root", dest / "root", packages.release)
    _check_unpacked(tmp / "root", packages.release)
    marker = {"release": packages.release, "debian_version": packages.debian_version}
    (tmp / MARKER).write_text(json.dumps(marker) + "\n")
    if dest.exists():  # a leftover without marker, or another process just finished the same kernel
        if (dest / MARKER).is_file():
            shutil.rmtree(tmp)
            return
        shutil.rmtree(dest)
    tmp.rename(dest)


def _remove_abandoned_tmp_dirs(dest: Path) -> None:
    """Half-unpacked trees of fetches that were killed (their process is gone)."""
    for tmp in dest.parent.glob(f"{dest.name}.tmp-*"):
        pid = tmp.name.rsplit("-", 1)[-1]
        if pid.isdigit() and not _process_alive(int(pid)):
            shutil.rmtree(tmp, ignore_errors=True)


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _point_headers_at_common(root: Path, final_root: Path, release: str) -> None:
    """The flavour headers' Makefile is ``include /usr/src/<common>/Makefile``: make it private."""
    makefile = root / "usr/src" / f"linux-headers-{release}" / "Makefile"
    text = makefile.read_text()
    pattern = r"^include\s+(/usr/src/\S+/Makefile)\s*$"
    fixed, count = re.subn(pattern, rf"include {final_root}\1", text, flags=re.M)
    if count != 1:
        raise InfraError(f"{makefile}: expected one `include /usr/src/...` line; Debian's packaging changed")
    makefile.write_text(fixed)


def _check_unpacked(root: Path, release: str) -> None:
    needed = [
        root / "boot" / f"vmlinuz-{release}",
        root / "usr/src" / f"linux-headers-{release}" / ".config",
        root / "bin/busybox",
    ]
    missing = [str(p) for p in needed if not p.is_file()]
    if missing:
        raise InfraError(f"unpacked kernel lacks {', '.join(missing)}: Debian's packaging changed")


def _debian_tree(dest: Path, release: str) -> KernelTree:
    root = dest / "root"
    kdir = root / "usr/src" / f"linux-headers-{release}"
    marker = json.loads((dest / MARKER).read_text())
    if kernel_release(kdir) != release:
        raise InfraError(f"{kdir}: UTS_RELEASE {kernel_release(kdir)!r} is not the package's {release!r}")
    candidates = (root / "lib/modules" / release, root / "usr/lib/modules" / release)
    modules = next((d for d in candidates if d.is_dir()), None)
    return KernelTree(
        kdir=kdir,
        image=root / "boot" / f"vmlinuz-{release}",
        dtb=None,
        release=release,
        version=makefile_version(kdir) or _version_from_release(release),
        debian_version=str(marker["debian_version"]),
        config=kdir / ".config",
        busybox=root / "bin/busybox",
        modules_dir=modules,
    )


def fetch_busybox(target: Target, cache: Path | None = None, log: Log = no_log) -> Path:
    """Debian's static busybox for the target's architecture (for a user's own kernel tree, which has
    none): ``busybox-static:<arch>`` from the target's suite, cached like the kernels."""
    root = cache if cache is not None else default_cache_dir()
    spec = target.kernel
    dest = root / "busybox" / spec.debian_arch
    binary = dest / "bin" / "busybox"
    if binary.is_file():
        return binary
    apt = PrivateApt(root / "apt", archs=(spec.debian_arch, host_arch(log)), log=log)
    apt.ensure_lists(spec.suite)
    with tempfile.TemporaryDirectory(dir=root) as tmp:
        (deb,) = apt.download([f"busybox-static:{spec.debian_arch}"], Path(tmp))
        run(["dpkg-deb", "-x", str(deb), str(Path(tmp) / "root")], log)
        dest.mkdir(parents=True, exist_ok=True)
        (dest / "bin").mkdir(exist_ok=True)
        shutil.copy2(Path(tmp) / "root" / "bin" / "busybox", binary)
    return binary
