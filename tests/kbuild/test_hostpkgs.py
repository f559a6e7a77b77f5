"""kbuild.hostpkgs: the package list and the install command."""

from __future__ import annotations

from kbuild.hostpkgs import host_packages, install_command
from kbuild.targets import load_target


def test_packages_cover_toolchain_qemu_and_tools_once() -> None:
    target = load_target("arm-6.1")
    pkgs = host_packages(target)
    for needed in ("qemu-system-arm", "gcc-arm-linux-gnueabihf", "libc6-dev-armhf-cross", "make", "bc", "cpio"):
        assert needed in pkgs
    assert len(pkgs) == len(set(pkgs))


def test_install_command_uses_sudo_only_when_not_root() -> None:
    assert install_command(["make"], euid=0) == ["apt-get", "install", "-y", "--no-install-recommends", "make"]
    assert install_command(["make", "bc"], euid=1000)[:2] == ["sudo", "apt-get"]
    assert install_command(["make", "bc"], euid=1000)[-2:] == ["make", "bc"]
