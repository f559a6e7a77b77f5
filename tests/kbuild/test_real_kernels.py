"""Real Debian kernels from the mirror, real cross builds, real vermagic.

The kernels land in the default cache (``$XDG_CACHE_HOME/kmodkit``), so later runs and CI reuse them;
a first run downloads ~40 MB per kernel (about 10 s each). Needs the network on a cold cache.
"""

from __future__ import annotations

import dataclasses
import lzma
import os
import shlex
import shutil
import struct
from pathlib import Path

import pytest
from elftools.elf.elffile import ELFFile

from kbuild.kernels import KernelTree, fetch_debian_kernel, local_kernel_tree
from kbuild.make import build_modules, check_vermagic, expected_vermagic, vermagic_of
from kbuild.targets import load_target
from kbuild.toolchain import Toolchain, find_toolchain
from kit.errors import UserError

HELLO_C = """\
#include <linux/module.h>
#include <linux/init.h>

static int __init hello_init(void) { pr_info("hello\\n"); return 0; }
static void __exit hello_exit(void) { }
module_init(hello_init);
module_exit(hello_exit);
MODULE_LICENSE("GPL");
"""
BAD_C = """\
#include <linux/module.h>

static int __init bad_init(void)
{
\tint x = ;
\treturn x;
}
module_init(bad_init);
MODULE_LICENSE("GPL");
"""
ZIMAGE_MAGIC = 0x016F2818  # arch/arm/boot/compressed/head.S: at offset 0x24 of every ARM zImage
EM_ARM = "EM_ARM"
SERIES = {"arm-5.10": "5.10", "arm-6.1": "6.1", "arm-6.12": "6.12"}


@pytest.fixture(scope="module", params=sorted(SERIES))
def kernel(request: pytest.FixtureRequest) -> tuple[str, KernelTree, Toolchain]:
    target = load_target(request.param)
    return request.param, fetch_debian_kernel(target), find_toolchain(target)


def write_module(directory: Path, name: str, source: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / f"{name}.c").write_text(source)
    (directory / "Kbuild").write_text(f"obj-m += {name}.o\n")
    return directory


def shipped_module_vermagic(tree: KernelTree, tmp_path: Path) -> str:
    """vermagic of a module Debian built and shipped with the image (6.12 compresses them with xz)."""
    assert tree.modules_dir is not None
    shipped = next(iter(sorted(tree.modules_dir.rglob("af_key.ko*"))))
    if shipped.suffix == ".xz":
        plain = tmp_path / "af_key.ko"
        plain.write_bytes(lzma.decompress(shipped.read_bytes()))
        shipped = plain
    return vermagic_of(shipped)


def test_fetched_tree_is_complete_and_consistent(kernel: tuple[str, KernelTree, Toolchain]) -> None:
    name, tree, _ = kernel
    series = SERIES[name]
    assert tree.version.startswith(series + ".")
    assert tree.debian_version is not None and tree.debian_version.startswith(tree.version)
    assert tree.release.startswith(series + ".") and tree.release.endswith("-armmp")
    assert tree.kdir.name == f"linux-headers-{tree.release}"
    with tree.image.open("rb") as f:
        f.seek(0x24)
        assert struct.unpack("<I", f.read(4))[0] == ZIMAGE_MAGIC
    assert tree.busybox is not None
    with tree.busybox.open("rb") as f:
        assert ELFFile(f).header["e_machine"] == EM_ARM
    assert "CONFIG_ARM=y" in tree.config.read_text().splitlines()
    makefile = (tree.kdir / "Makefile").read_text()
    assert makefile.startswith("include /") and str(tree.kdir.parent) in makefile  # the private copy
    assert tree.modules_dir is not None and tree.modules_dir.name == tree.release
    assert tree.dtb is None


def test_second_fetch_reuses_the_cache(kernel: tuple[str, KernelTree, Toolchain]) -> None:
    name, tree, _ = kernel
    lines: list[str] = []
    again = fetch_debian_kernel(load_target(name), log=lines.append)
    assert again == tree
    assert not any(" download " in line or line.startswith("dpkg-deb") for line in lines)


def test_hello_builds_loads_vermagic_and_skips_when_unchanged(
    kernel: tuple[str, KernelTree, Toolchain], tmp_path: Path
) -> None:
    _, tree, toolchain = kernel
    hello = write_module(tmp_path / "hello", "hello", HELLO_C)
    lines: list[str] = []
    first = build_modules(tree, toolchain, [hello], log=lines.append)
    assert [(m.name, m.ko, m.rebuilt) for m in first] == [("hello", hello / "hello.ko", True)]
    echoed = [shlex.split(line) for line in lines if " make -C " in f" {line}"]  # after ccache's VAR=value
    make = echoed[0][echoed[0].index("make"):] if echoed else []
    assert make[:5] == ["make", "-C", str(tree.kdir), f"M={hello}", "ARCH=arm"], lines
    with first[0].ko.open("rb") as f:
        assert ELFFile(f).header["e_machine"] == EM_ARM
    # The vermagic computed from the .config agrees with Debian's own modules and with ours.
    assert expected_vermagic(tree) == shipped_module_vermagic(tree, tmp_path)
    assert vermagic_of(first[0].ko) == expected_vermagic(tree)
    check_vermagic(first[0].ko, tree)
    second = build_modules(tree, toolchain, [hello])
    assert second[0].rebuilt is False
    os.utime(hello / "hello.c")  # touched: make runs again and relinks
    mtime = first[0].ko.stat().st_mtime_ns
    third = build_modules(tree, toolchain, [hello])
    assert third[0].rebuilt is True and first[0].ko.stat().st_mtime_ns > mtime


def test_vermagic_mismatch_is_a_user_error(kernel: tuple[str, KernelTree, Toolchain], tmp_path: Path) -> None:
    _, tree, toolchain = kernel
    hello = write_module(tmp_path / "hello", "hello", HELLO_C)
    ko = build_modules(tree, toolchain, [hello])[0].ko
    other = dataclasses.replace(tree, release=tree.release.replace("-armmp", "-other"))
    with pytest.raises(UserError, match="rebuild it against"):
        check_vermagic(ko, other)


def test_syntax_error_shows_the_compiler_line(kernel: tuple[str, KernelTree, Toolchain], tmp_path: Path) -> None:
    _, tree, toolchain = kernel
    bad = write_module(tmp_path / "bad", "bad", BAD_C)
    good = write_module(tmp_path / "good", "hello", HELLO_C)
    with pytest.raises(UserError) as err:
        build_modules(tree, toolchain, [good, bad], jobs=2)
    message = str(err.value)
    assert f"{bad}/bad.c:5:" in message and "error:" in message
    assert tree.release in message and "\n" not in message
    assert (good / "hello.ko").is_file()  # the other module was still built


def test_several_modules_in_parallel_keep_order(kernel: tuple[str, KernelTree, Toolchain], tmp_path: Path) -> None:
    _, tree, toolchain = kernel
    dirs = [write_module(tmp_path / f"m{i}", f"mod{i}", HELLO_C) for i in range(3)]
    built = build_modules(tree, toolchain, dirs, jobs=2)
    assert [m.name for m in built] == ["mod0", "mod1", "mod2"]
    assert all(m.ko.is_file() and m.elapsed_s > 0 for m in built)


def test_fetched_headers_work_as_a_local_tree(kernel: tuple[str, KernelTree, Toolchain], tmp_path: Path) -> None:
    _, tree, toolchain = kernel
    local = local_kernel_tree(tree.kdir, tree.image)
    assert (local.release, local.version, local.config) == (tree.release, tree.version, tree.config)
    hello = write_module(tmp_path / "hello", "hello", HELLO_C)
    check_vermagic(build_modules(local, toolchain, [hello])[0].ko, tree)


def test_fetch_into_a_fresh_cache_dir(tmp_path: Path) -> None:
    """A cold cache: private apt lists, download, unpack; the cache dir holds everything."""
    if shutil.which("apt-get") is None:
        pytest.fail("apt-get is needed to fetch Debian kernels")
    lines: list[str] = []
    tree = fetch_debian_kernel(load_target("arm-6.1"), cache=tmp_path, log=lines.append)
    assert tree.kdir.is_relative_to(tmp_path) and tree.image.is_file()
    assert any(line.startswith("apt-get ") and line.endswith(" update") for line in lines)
    assert any(" download linux-image-" in line for line in lines)
    assert (tmp_path / "apt/sources.list").is_file()
    assert not list((tmp_path / "kernels/armhf").glob("*.tmp-*"))
