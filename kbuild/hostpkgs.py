"""Host packages a target needs (Debian/Ubuntu names), and the command that installs them.

``invoke setup`` calls these; nothing here runs apt itself.
"""

from __future__ import annotations

import os

from kbuild.targets import Target

# Needed for every target: Kbuild (make, bc), initramfs (cpio, gzip, xz-utils), module tools (kmod),
# the private apt setup of kbuild.kernels (apt, dpkg-deb, the archive keyring it names in signed-by),
# ccache (Kbuild's compiler probes and unchanged objects from its cache: kbuild.toolchain).
BASE_PACKAGES: tuple[str, ...] = (
    "make",
    "ccache",
    "bc",
    "kmod",
    "cpio",
    "gzip",
    "xz-utils",
    "dpkg-dev",
    "apt",
    "debian-archive-keyring",
    "ca-certificates",
)


# What the tests need beyond the targets (`invoke setup --all`): a real browser renders report.html.
TEST_PACKAGES: tuple[str, ...] = ("chromium",)


def host_packages(target: Target) -> list[str]:
    """Every apt package the host needs to build and boot ``target``: base, toolchain, QEMU; no repeats."""
    ordered = [*BASE_PACKAGES, *target.toolchain.apt_packages, *target.qemu.apt_packages]
    return list(dict.fromkeys(ordered))


def install_command(packages: list[str], euid: int | None = None) -> list[str]:
    """``apt-get install -y --no-install-recommends <packages>``, through sudo unless running as root."""
    uid = os.geteuid() if euid is None else euid
    sudo = [] if uid == 0 else ["sudo"]
    return [*sudo, "apt-get", "install", "-y", "--no-install-recommends", *packages]


def missing_packages(packages: list[str]) -> list[str]:
    """The packages dpkg does not list as installed (so `invoke setup` is quick when nothing is missing)."""
    import subprocess

    missing = []
    for package in packages:
        query = subprocess.run(["dpkg-query", "-W", "-f=${Status}", package], capture_output=True, text=True,
                               check=False)
        if "install ok installed" not in query.stdout:
            missing.append(package)
    return missing


def update_command(euid: int | None = None) -> list[str]:
    """``apt-get update`` (through sudo unless root): needed once before the first install."""
    uid = os.geteuid() if euid is None else euid
    return [*([] if uid == 0 else ["sudo"]), "apt-get", "update", "-q"]
