"""kbuild.toolchain: compiler lookup and echoed commands."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest

from kbuild.targets import load_target
from kbuild.toolchain import find_toolchain, run, shell_line
from kit.errors import InfraError, UserError
from tests.conftest import debian_kernel

HELLO = Path(__file__).resolve().parents[1] / "deploy" / "data" / "hello"


def test_missing_compiler_names_the_package() -> None:
    target = load_target("arm-5.10")
    with pytest.raises(UserError) as err:
        find_toolchain(target, which=lambda tool: None if tool.endswith("gcc-12") else "/usr/bin/" + tool)
    assert "arm-linux-gnueabihf-gcc-12" in str(err.value)
    assert "gcc-arm-linux-gnueabihf" in str(err.value)
    assert "invoke setup" in str(err.value)


def test_real_toolchain_forces_cc_through_ccache() -> None:
    toolchain = find_toolchain(load_target("arm-5.10"))  # the host has gcc-12 only; 5.10 asks for gcc-10
    assert "CC=ccache arm-linux-gnueabihf-gcc-12" in toolchain.make_variables()  # invoke setup installs ccache
    assert "ARCH=arm" in toolchain.make_variables()


def test_without_ccache_cc_is_the_compiler_itself() -> None:
    toolchain = find_toolchain(load_target("arm-6.1"), which=lambda tool: None if tool == "ccache" else "/usr/bin/x")
    assert "CC=arm-linux-gnueabihf-gcc-12" in toolchain.make_variables()


def test_a_module_built_through_ccache_is_the_compilers_own(tmp_path: Path) -> None:
    """Kbuild through ccache in depend mode (twice: a cold cache, then hits) and without it: the same .ko bytes."""
    tree, toolchain = debian_kernel("6.1"), find_toolchain(load_target("arm-6.1"))
    env = {**os.environ, **toolchain.make_environment(), "CCACHE_DIR": str(tmp_path / "ccache")}
    assert env["CCACHE_DEPEND"] == "1"  # as the kit builds: ccache's depend mode
    kos = []
    for chain in (toolchain, toolchain, replace(toolchain, launcher=None)):
        shutil.rmtree(tmp_path / "hello", ignore_errors=True)  # one path: the debug info names it
        module_dir = shutil.copytree(HELLO, tmp_path / "hello")
        cmd = ["make", "-C", str(tree.kdir), f"M={module_dir}", *chain.make_variables(), "modules"]
        subprocess.run(cmd, check=True, capture_output=True, env=env)
        kos.append((module_dir / "hello.ko").read_bytes())
    assert kos[0] == kos[1] == kos[2]
    stats = subprocess.run(["ccache", "--print-stats"], env=env, capture_output=True, text=True, check=True).stdout
    assert int(re.search(r"^direct_cache_hit\t(\d+)", stats, re.M).group(1)) > 20  # the probes and hello.o, again


def test_commands_are_echoed_copy_pasteable(tmp_path: Path) -> None:
    lines: list[str] = []
    run(["touch", "a file"], lines.append, cwd=tmp_path)
    assert (tmp_path / "a file").is_file()
    assert lines == [shell_line(["touch", "a file"], tmp_path)]
    assert lines[0].endswith("touch 'a file'") and lines[0].startswith("cd ")


def test_missing_tool_and_failure_are_infra_errors() -> None:
    with pytest.raises(InfraError, match="not installed"):
        run(["kmodkit-no-such-tool"])
    with pytest.raises(InfraError, match="status 1"):
        run(["false"])
