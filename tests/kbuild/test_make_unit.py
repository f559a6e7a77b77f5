"""kbuild.make helpers that need no compiler."""

from __future__ import annotations

from pathlib import Path

import pytest

from kbuild.make import compile_error_message, module_names
from kit.errors import UserError

# make's output (stdout+stderr) for a module with a syntax error: 6.1.0-50-armmp headers, gcc-12,
# captured on the dev machine with the make command kbuild.make runs.
GCC_OUTPUT = """\
make: Entering directory '/root/.cache/kmodkit/kernels/armhf/6.1.0-50-armmp_6.1.176-1/root/usr/src/\
linux-headers-6.1.0-50-armmp'
  CC [M]  /tmp/h1-bad/m/bad.o
/tmp/h1-bad/m/bad.c: In function ‘bad_init’:
/tmp/h1-bad/m/bad.c:5:17: error: expected expression before ‘;’ token
    5 |         int x = ;
      |                 ^
make[1]: *** [/root/.cache/kmodkit/kernels/armhf/6.1.0-50-armmp_6.1.176-1/root/usr/src/linux-headers-6.1.0-50-common/\
scripts/Makefile.build:255: /tmp/h1-bad/m/bad.o] Error 1
make: *** [/root/.cache/kmodkit/kernels/armhf/6.1.0-50-armmp_6.1.176-1/root/usr/src/linux-headers-6.1.0-50-common/\
Makefile:2050: /tmp/h1-bad/m] Error 2
make: Leaving directory '/root/.cache/kmodkit/kernels/armhf/6.1.0-50-armmp_6.1.176-1/root/usr/src/\
linux-headers-6.1.0-50-armmp'
"""


def test_error_lines_with_file_and_line() -> None:
    message = compile_error_message("bad", "6.1.0-50-armmp", GCC_OUTPUT)
    assert message.startswith("module bad does not compile against 6.1.0-50-armmp: ")
    assert "/tmp/h1-bad/m/bad.c:5:17: error: expected expression before" in message
    assert "Error 2" not in message and "In function" not in message and "\n" not in message


def test_without_error_lines_the_tail_is_shown() -> None:
    message = compile_error_message("m", "r", "line one\nNo rule to make target 'x'\nlast words\n")
    assert "last words" in message


def test_module_names_from_kbuild_or_makefile(tmp_path: Path) -> None:
    (tmp_path / "Kbuild").write_text("obj-m += kit_vmalloc.o\nobj-m += two.o three.o\nccflags-y := -O2\n")
    assert module_names(tmp_path) == ["kit_vmalloc", "two", "three"]
    (tmp_path / "Kbuild").unlink()
    (tmp_path / "Makefile").write_text("obj-m := hello.o\nall:\n\tmake -C x M=$(PWD)\n")
    assert module_names(tmp_path) == ["hello"]
    (tmp_path / "Makefile").unlink()
    with pytest.raises(UserError, match="obj-m"):
        module_names(tmp_path)
