"""Kernels to build against and boot: a Debian kernel fetched from the mirror, or a user's tree.

``fetch_debian_kernel`` uses a private apt configuration under the cache directory (its own
sources.list, lists and archives; the system's apt setup is never touched), resolves the current ABI
from the flavour metapackage at fetch time (ABI names move: 6.1.0-50 today, -51 tomorrow), downloads
the image, the headers, the ``-common`` headers, the host's ``linux-kbuild`` of exactly the same
source version and ``busybox-static``, and unpacks them with ``dpkg-deb -x``. A tree is unpacked into
a temporary directory and renamed into place once complete (the marker file is written last), so an
interrupted fetch never leaves a half tree that looks usable.

Each package's ``DEBIAN/md5sums`` is kept with the tree (``kbuild.checksums``) and a cached tree is
checked against it before every use: a damaged entry is named in the log, removed and fetched again.
An entry unpacked before the checksums were kept is verified once against its packages, downloaded
again for their md5sums (its tree is kept when intact: runs using it meanwhile are not disturbed).
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

from kbuild import checksums
from kbuild.apt import SUITE_COMPANIONS, SUITES, PrivateApt, host_arch
from kbuild.targets import KernelSpec, Target
from kbuild.toolchain import Log, no_log, run
from kit.errors import InfraError, UserError

MARKER = "kmodkit-complete.json"
BUSYBOX = "bin/busybox"  # in busybox-static, and in a kernel entry's tree
_NAME = r"[a-z0-9][a-z0-9.+-]*?"  # the rest of a package name, lazily (Debian policy 5.6.1)


@dataclass(frozen=True)
class KernelTree:
    """Everything needed to build modules for a kernel and boot it."""

    kdir: Path  # headers (or full build) dir, for `make -C`
    image: Path | None  # vmlinuz / zImage; None for a board's own tree (the board boots its own kernel)
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


def cached_releases(target: Target, cache: Path | None = None) -> list[str]:
    """The releases of ``target``'s series and flavour fully unpacked in the cache (no network: what
    ``invoke targets`` shows; ``fetch_debian_kernel`` still checks the archive for a newer one)."""
    spec = target.kernel
    arch_dir = (cache if cache is not None else default_cache_dir()) / "kernels" / spec.debian_arch
    found = []
    for entry in sorted(arch_dir.glob("*_*")) if arch_dir.is_dir() else []:
        release = entry.name.split("_", 1)[0]
        series_ok = release.startswith(spec.series + ".") or release.startswith(spec.series + "-")
        if series_ok and release.endswith("-" + spec.flavour) and (entry / MARKER).is_file():
            found.append(release)
    return found


def fetch_debian_kernel(target: Target, cache: Path | None = None, log: Log = no_log) -> KernelTree:
    """Fetch (or reuse from the cache) the current Debian kernel of ``target`` and return its tree."""
    root = cache if cache is not None else default_cache_dir()
    spec = target.kernel
    apt = PrivateApt(root / "apt", archs=(spec.debian_arch, host_arch(log)), log=log)
    apt.ensure_lists(spec.suite)
    packages = resolve_kernel_packages(apt, spec)
    dest = root / "kernels" / spec.debian_arch / f"{packages.release}_{packages.debian_version}"
    if not ((dest / MARKER).is_file() and _cached_entry_intact(dest, packages, apt, spec, log)):
        _populate(dest, packages, apt, spec, log)
    return _debian_tree(dest, packages.release)


def local_kernel_tree(
    kdir: Path, image: Path | None, dtb: Path | None = None, busybox: Path | None = None
) -> KernelTree:
    """A user's prepared kernel tree (``make modules_prepare`` done, or an installed headers dir);
    ``image`` None: modules only (a board boots its own kernel)."""
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
        image=image.resolve() if image else None,
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


def _cached_entry_intact(dest: Path, packages: KernelPackages, apt: PrivateApt, spec: KernelSpec, log: Log) -> bool:
    """Check a cached entry against its packages' md5sums; a damaged one is said so and removed."""
    check = checksums.check_entry(dest, dest / "root")
    damage = check.damage if check is not None else _verify_old_entry(dest, packages, apt, spec, log)
    if damage is None:
        if check is not None:
            which = f"all {check.files} files" if check.full else f"its {check.files} boot-critical files"
            log(f"# reusing cached kernel {dest} ({which} verified in {check.elapsed_s:.2f} s)")
        return True
    log(f"# cached kernel {dest} is damaged: {damage}; removing it and fetching it again")
    _discard(dest)
    return False


def _verify_old_entry(
    dest: Path, packages: KernelPackages, apt: PrivateApt, spec: KernelSpec, log: Log
) -> checksums.Damage | None:
    """An entry without (readable) manifests: verified against its packages, downloaded again."""
    log(f"# cached kernel {dest} has no md5sums of its packages (an older kmodkit's): verifying it against them")
    try:
        return _record_checksums_of_old_entry(dest, packages, apt, spec, log)
    except InfraError as e:  # offline: the tree worked before; used as before this check, and said so
        log(f"# warning: cannot verify {dest} ({e}); using it unverified this time")
        return None


def _record_checksums_of_old_entry(
    dest: Path, packages: KernelPackages, apt: PrivateApt, spec: KernelSpec, log: Log
) -> checksums.Damage | None:
    """Download the entry's packages again (apt verifies them against the signed lists), take their
    md5sums and hash the whole tree; when it matches, record them (the tree itself is not touched)."""
    scratch = dest.with_name(f"{dest.name}.tmp-verify-{os.getpid()}")
    shutil.rmtree(scratch, ignore_errors=True)
    try:
        debs = _download(packages, apt, spec, scratch / "debs", log)
        sums = _md5sums_of(debs, log)
        headers = next(d for d in debs if checksums.package_name(d) == f"linux-headers-{packages.release}")
        run(["dpkg-deb", "-x", str(headers), str(scratch / "root")], log)  # its Makefile, rewritten the same way
        _point_headers_at_common(scratch / "root", dest / "root", packages.release)
        _expect_rewritten_makefile(sums, scratch / "root", packages.release)
        return _record_checksums(dest, dest / "root", sums, packages, log)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _download(packages: KernelPackages, apt: PrivateApt, spec: KernelSpec, into: Path, log: Log) -> list[Path]:
    started = time.monotonic()
    debs = apt.download([*packages.download_args(), f"busybox-static:{spec.debian_arch}"], into)
    log(f"# downloaded {len(debs)} packages in {time.monotonic() - started:.1f} s")
    return debs


def _md5sums_of(debs: list[Path], log: Log) -> checksums.Manifest:
    """Every package's md5sums; a path in two packages keeps the last one's, as ``dpkg-deb -x`` in order."""
    sums: checksums.Manifest = {}
    for deb in debs:
        sums |= checksums.package_md5sums(deb, log)
    return sums


def _expect_rewritten_makefile(sums: checksums.Manifest, root: Path, release: str) -> None:
    """The kit rewrites the flavour headers' Makefile after unpacking (``_point_headers_at_common``), so
    its package's md5 can never match: expect the md5 of the rewritten file (``root``'s) instead."""
    path = _flavour_makefile(release)
    sums[path] = checksums.FileSum(sums[path].package, checksums.md5_of(root / path))


def _record_checksums(
    dest: Path, root: Path, sums: checksums.Manifest, packages: KernelPackages, log: Log
) -> checksums.Damage | None:
    started = time.monotonic()
    damage = checksums.record(dest, root, sums, lambda manifest: _boot_critical(manifest, packages))
    if damage is None:
        log(f"# verified {len(sums)} files against their packages' md5sums in {time.monotonic() - started:.1f} s")
    return damage


def _boot_critical(manifest: checksums.Manifest, packages: KernelPackages) -> set[str]:
    """The files hashed on every use: what QEMU boots and what every module build reads or runs
    (the kbuild tools: fixdep, modpost...). No dtb: QEMU virt generates the device tree."""
    release = packages.release
    kdir = f"usr/src/linux-headers-{release}"
    kbuild = packages.kbuild.split(":", 1)[0]
    wanted = {
        f"boot/vmlinuz-{release}",
        BUSYBOX,
        f"{kdir}/.config",
        f"{kdir}/Module.symvers",
        _flavour_makefile(release),
        f"{kdir}/include/generated/autoconf.h",
        f"{kdir}/include/generated/utsrelease.h",
        f"{kdir}/include/config/auto.conf",
    }
    return {path for path, s in manifest.items() if path in wanted or s.package == kbuild}


def _flavour_makefile(release: str) -> str:
    return f"usr/src/linux-headers-{release}/Makefile"


def _discard(dest: Path) -> None:
    """Move a damaged entry aside first (no run sees half of it), then delete it."""
    doomed = dest.with_name(f"{dest.name}.tmp-damaged-{os.getpid()}")
    shutil.rmtree(doomed, ignore_errors=True)
    try:
        dest.rename(doomed)
    except FileNotFoundError:  # another run removed it first
        return
    shutil.rmtree(doomed, ignore_errors=True)


def _populate(dest: Path, packages: KernelPackages, apt: PrivateApt, spec: KernelSpec, log: Log) -> None:
    """Download and unpack into ``dest.tmp-<pid>``, fix it up, record and verify the packages' md5sums,
    write the marker, rename into place."""
    _remove_abandoned_tmp_dirs(dest)
    tmp = dest.with_name(f"{dest.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    debs = _download(packages, apt, spec, tmp / "debs", log)
    started = time.monotonic()
    for deb in debs:
        run(["dpkg-deb", "-x", str(deb), str(tmp / "root")], log)
    sums = _md5sums_of(debs, log)
    shutil.rmtree(tmp / "debs")
    log(f"# unpacked in {time.monotonic() - started:.1f} s")
    _point_headers_at_common(tmp / "root", dest / "root", packages.release)
    _expect_rewritten_makefile(sums, tmp / "root", packages.release)
    _check_unpacked(tmp / "root", packages.release)
    damage = _record_checksums(tmp, tmp / "root", sums, packages, log)
    if damage is not None:
        raise InfraError(f"just unpacked, {damage}: is the disk full or failing? free space in {tmp.parent}, retry")
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
        if pid.isdigit() and not process_alive(int(pid)):
            shutil.rmtree(tmp, ignore_errors=True)


def process_alive(pid: int) -> bool:
    """Whether a process with this id exists (work directories name the process that owns them)."""
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
    none): ``busybox-static:<arch>`` from the target's suite, cached like the kernels (and checked
    against the package's md5sums before each use)."""
    root = cache if cache is not None else default_cache_dir()
    spec = target.kernel
    dest = root / "busybox" / spec.debian_arch
    binary = dest / "bin" / "busybox"
    if binary.is_file() and _cached_busybox_intact(dest, log):
        return binary
    apt = PrivateApt(root / "apt", archs=(spec.debian_arch, host_arch(log)), log=log)
    apt.ensure_lists(spec.suite)
    with tempfile.TemporaryDirectory(dir=root) as tmp:
        (deb,) = apt.download([f"busybox-static:{spec.debian_arch}"], Path(tmp))
        run(["dpkg-deb", "-x", str(deb), str(Path(tmp) / "root")], log)
        wanted = {BUSYBOX: checksums.package_md5sums(deb, log)[BUSYBOX]}
        manifest, damage = checksums.find_damage(Path(tmp) / "root", wanted, hash_all=True)
        if damage is not None:
            raise InfraError(f"just unpacked, {damage}: is the disk full or failing? free space in {root}, retry")
        binary.parent.mkdir(parents=True, exist_ok=True)
        partial = binary.with_name(f"busybox.tmp-{os.getpid()}")
        shutil.copy2(Path(tmp) / "root" / BUSYBOX, partial)  # copy2: the stamp (mtime) stays the package's
        checksums.save(dest, checksums.MANIFEST, manifest)
        partial.replace(binary)
    return binary


def _cached_busybox_intact(dest: Path, log: Log) -> bool:
    manifest = checksums.load(dest, checksums.MANIFEST)
    if manifest is None:
        problem = "has no md5sums of its package (an older kmodkit's)"
    else:
        damage = checksums.find_damage(dest, manifest, hash_all=True)[1]
        if damage is None:
            return True
        problem = f"is damaged: {damage}"
    log(f"# cached busybox {dest} {problem}; fetching it again")
    return False
