"""The cross toolchain of a target, and how host tools are run (every command echoed, copy-pasteable).

Debian's headers hard-wire ``CC=$(CROSS_COMPILE)gcc-<N>`` in ``.kernelvariables`` (gcc-10 for 5.10,
absent on bookworm), so the build always passes ``CC=<target cc>``: gcc-12 builds modules for 5.10,
6.1 and 6.12 that load and run. Where ccache is installed (``invoke setup`` installs it), ``CC`` goes through it
(``CC="ccache <cc>"``, as the kernel's own docs suggest for rebuilds): the ~25 compiler probes Kbuild's top
Makefile runs on every ``make`` (cc-option, as-instr) and unchanged objects come from its cache, the output is
the compiler's own. ccache runs in its depend mode (``CCACHE_DEPEND=1``: a changed source is compiled once,
not preprocessed first to look it up; Kbuild always asks for the dependency file that mode reads).
``CCACHE_DISABLE=1`` turns it off.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from kbuild.targets import Target
from kit.errors import InfraError, UserError

Log = Callable[[str], None]


def no_log(_line: str) -> None:
    """The default ``log``: say nothing."""


def shell_line(cmd: Sequence[str], cwd: Path | None = None, env: Mapping[str, str] | None = None) -> str:
    """``cmd`` as one copy-pasteable shell line (``cd DIR && ...`` when it runs elsewhere, ``VAR=value ...``
    for the environment it adds)."""
    line = shlex.join([*(f"{name}={value}" for name, value in (env or {}).items()), *cmd])
    return f"cd {shlex.quote(str(cwd))} && {line}" if cwd is not None else line


def run(
    cmd: Sequence[str], log: Log = no_log, cwd: Path | None = None, check: bool = True,
    env: Mapping[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run a host tool (``env``: variables added to ours), echoed through ``log``. A missing tool, or a
    failure with ``check``: InfraError."""
    log(shell_line(cmd, cwd, env))
    try:
        result = subprocess.run(list(cmd), cwd=cwd, capture_output=True, text=True, check=False,
                                env={**os.environ, **env} if env else None)
    except FileNotFoundError as e:
        raise InfraError(f"{cmd[0]} is not installed: run `invoke setup`") from e
    if check and result.returncode != 0:
        last = (result.stderr.strip() or result.stdout.strip() or "no output").splitlines()[-1]
        raise InfraError(f"`{shell_line(cmd, cwd)}` failed with status {result.returncode}: {last}")
    return result


@dataclass(frozen=True)
class Toolchain:
    """What `make` needs to cross-build modules: ``ARCH``, ``CROSS_COMPILE`` and ``CC``."""

    arch: str
    cross_compile: str
    cc: str  # a command name on PATH, e.g. arm-linux-gnueabihf-gcc-12
    launcher: str | None = None  # ccache, when installed

    def make_variables(self) -> list[str]:
        cc = f"{self.launcher} {self.cc}" if self.launcher else self.cc
        return [f"ARCH={self.arch}", f"CROSS_COMPILE={self.cross_compile}", f"CC={cc}"]

    def make_environment(self) -> dict[str, str]:
        """What ``make`` runs with besides our environment: ccache's depend mode (a user's setting wins)."""
        if self.launcher != "ccache" or "CCACHE_DEPEND" in os.environ or "CCACHE_NODEPEND" in os.environ:
            return {}
        return {"CCACHE_DEPEND": "1"}


def find_toolchain(target: Target, which: Callable[[str], str | None] = shutil.which) -> Toolchain:
    """The target's cross compiler and binutils, or a UserError naming the apt packages to install."""
    spec = target.toolchain
    packages = " ".join(spec.apt_packages)
    missing = [tool for tool in (spec.cc, f"{spec.cross_compile}ld") if which(tool) is None]
    if missing:
        raise UserError(
            f"{' and '.join(missing)} not found: install {packages} "
            f"(`invoke setup`, or `apt-get install {packages}`)"
        )
    if which("make") is None:
        raise UserError("make not found: install make (`invoke setup`)")
    launcher = "ccache" if which("ccache") else None
    return Toolchain(arch=target.arch, cross_compile=spec.cross_compile, cc=spec.cc, launcher=launcher)
