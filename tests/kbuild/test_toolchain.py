"""kbuild.toolchain: compiler lookup and echoed commands."""

from __future__ import annotations

from pathlib import Path

import pytest

from kbuild.targets import load_target
from kbuild.toolchain import find_toolchain, run, shell_line
from kit.errors import InfraError, UserError


def test_missing_compiler_names_the_package() -> None:
    target = load_target("arm-5.10")
    with pytest.raises(UserError) as err:
        find_toolchain(target, which=lambda tool: None if tool.endswith("gcc-12") else "/usr/bin/" + tool)
    assert "arm-linux-gnueabihf-gcc-12" in str(err.value)
    assert "gcc-arm-linux-gnueabihf" in str(err.value)
    assert "invoke setup" in str(err.value)


def test_real_toolchain_forces_cc() -> None:
    toolchain = find_toolchain(load_target("arm-5.10"))  # the host has gcc-12 only; 5.10 asks for gcc-10
    assert "CC=arm-linux-gnueabihf-gcc-12" in toolchain.make_variables()
    assert "ARCH=arm" in toolchain.make_variables()


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
