"""The real Debian kernels every kernel-needing test uses, obtained the way CI has them.

CI runs ``invoke setup --all`` first, which fetches the three targets' kernels into the kit's cache
(``~/.cache/kmodkit``) with ``kbuild.kernels.fetch_debian_kernel``; here the same call returns the
cached tree at once (a cold cache downloads it). A kernel or toolchain that cannot be had FAILS the
test with the reason (never a skip: CI must notice).
"""

from __future__ import annotations

import functools
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from deploy.console import ConsoleShell
from deploy.qemu import QemuChannel
from kbuild.kernels import KernelTree, fetch_debian_kernel
from kbuild.targets import Target, load_target
from kbuild.toolchain import Toolchain, find_toolchain
from kit.errors import KitError

SERIES = ("5.10", "6.1", "6.12")  # kbuild/targets/arm-<series>.toml


def debian_target(series: str) -> Target:
    """The kit's target for a Debian armmp series, e.g. ``arm-6.1``."""
    return load_target(f"arm-{series}")


@functools.cache
def debian_kernel(series: str) -> KernelTree:
    """The target's Debian kernel from the kit's cache (fetched on a cold cache), once per session."""
    name = f"arm-{series}"
    try:
        return fetch_debian_kernel(load_target(name))
    except KitError as error:
        pytest.fail(f"cannot get the Debian kernel of {name} (run `invoke setup --all`): {error}", pytrace=False)


def debian_busybox(series: str) -> Path:
    """The static busybox fetched with the target's kernel (for initramfs images)."""
    busybox = debian_kernel(series).busybox
    if busybox is None or not busybox.is_file():
        pytest.fail(f"the arm-{series} kernel tree has no busybox ({busybox}): run `invoke setup --all`")
    return busybox


def target_toolchain(series: str) -> Toolchain:
    """The cross toolchain the target names, or a failure saying which packages to install."""
    try:
        return find_toolchain(debian_target(series))
    except KitError as error:
        pytest.fail(f"no toolchain for arm-{series}: {error}", pytrace=False)


STACK_SOURCES = Path(__file__).parent / "e2e" / "data" / "stack"


def build_own_stack(out: Path, series: str = "6.1") -> dict[str, Path]:
    """The two-module driver stack of tests/e2e/data/stack (stack_base exports a symbol stack_user uses),
    built with Kbuild for Debian's ``series`` kernel in ``out``: module name -> .ko."""
    from kbuild.make import build_module_dir

    shutil.copytree(STACK_SOURCES, out)
    built = build_module_dir(debian_kernel(series), target_toolchain(series), out)
    return {module.name: module.ko for module in built}


def debian_lib_module(name: str, series: str = "6.1") -> Path:
    """One of the kernel package's own lib/ modules (test_static_keys, test_static_key_base...)."""
    modules_dir = debian_kernel(series).modules_dir
    assert modules_dir is not None
    (found,) = (modules_dir / "kernel" / "lib").glob(f"{name}.ko*")
    return found


def qemu_binary(series: str) -> str:
    """The target's QEMU binary on PATH, or a failure (CI installs it with `invoke setup`)."""
    binary = debian_target(series).qemu.binary
    if shutil.which(binary) is None:
        pytest.fail(f"{binary} not on PATH: run `invoke setup --all`", pytrace=False)
    return binary


@pytest.fixture(scope="session")
def debian_kernels() -> Callable[[str], KernelTree]:
    """``debian_kernels("6.1")``: the KernelTree of target ``arm-6.1`` (memoised for the session)."""
    return debian_kernel


@pytest.fixture
def host_shell(tmp_path: Path) -> Iterator[ConsoleShell]:
    """A ConsoleShell on a real `sh` fed like guest/init.sh does it (`cat | sh`), over pipes."""
    process = subprocess.Popen(["sh", "-c", "echo 'KIT>READY'; cat | sh"], stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    shell = ConsoleShell(QemuChannel(process), tmp_path / "console.log")
    shell.wait_ready(10)
    yield shell
    process.kill()
    process.wait()
    shell.close()


def module_of_another_kernel(out_dir: Path) -> tuple[Path, str]:
    """A real module built for another 6.1 kernel than the cached one: tests/data/ko/6.1/crc7.ko (built for
    6.1.0-50-armmp), copied; when Debian's mirror serves that very kernel, the copy's vermagic release is
    rewritten to another ABI number of the same length. Returns the copy and the release it claims."""
    data = (Path(__file__).parent / "data" / "ko" / "6.1" / "crc7.ko").read_bytes()
    built_for, cached = "6.1.0-50-armmp", debian_kernel("6.1").release
    claims = built_for if cached != built_for else "6.1.0-49-armmp"
    out = out_dir / "crc7.ko"
    out.write_bytes(data.replace(f"vermagic={built_for} ".encode(), f"vermagic={claims} ".encode()))
    return out, claims
