"""--module DIR (issue 11): a module source tree is mirrored into the kit's build directory and built there
with the real cross compiler against Debian's 6.1 tree; the user's tree gets no build output."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from kbuild.targets import load_target
from kit.errors import UserError
from kit.request import RunRequest
from kit.user_modules import check_user_modules
from kit.user_trees import UserTree, build_user_trees, check_user_tree, mirror_dir, mirror_sources
from tests.conftest import STACK_SOURCES, debian_kernel, target_toolchain


def test_mirror_copies_changed_files_only_and_drops_removed_ones(tmp_path: Path) -> None:
    source, mirror = tmp_path / "src", tmp_path / "mirror"
    (source / "sub").mkdir(parents=True)
    (source / "Kbuild").write_text("obj-m += a.o\n")
    (source / "a.c").write_text("int a;\n")
    (source / "sub" / "b.h").write_text("#define B 1\n")
    (source / "a.o").write_bytes(b"the user's own build output")  # not a source: not mirrored
    mirror_sources(source, mirror)
    assert sorted(str(p.relative_to(mirror)) for p in mirror.rglob("*") if p.is_file()) == ["Kbuild", "a.c", "sub/b.h"]
    (mirror / "a.o").write_bytes(b"Kbuild's output in the mirror")
    os.utime(mirror / "Kbuild", (1, 1))  # an unchanged file keeps its mtime: make does not see a change
    (source / "a.c").write_text("int a = 2;\n")
    (source / "sub" / "b.h").unlink()
    mirror_sources(source, mirror)
    assert (mirror / "a.c").read_text() == "int a = 2;\n" and not (mirror / "sub" / "b.h").exists()
    assert (mirror / "Kbuild").stat().st_mtime == 1
    assert (mirror / "a.o").read_bytes() == b"Kbuild's output in the mirror"


def test_two_trees_of_one_name_are_built_apart(tmp_path: Path) -> None:
    one, two = UserTree(tmp_path / "a" / "drv", ("x",)), UserTree(tmp_path / "b" / "drv", ("x",))
    assert mirror_dir(one, tmp_path).name.startswith("drv-") and mirror_dir(one, tmp_path) != mirror_dir(two, tmp_path)


def test_a_tree_is_built_in_the_mirror_and_its_modules_listed(tmp_path: Path) -> None:
    tree = check_user_tree(shutil.copytree(STACK_SOURCES, tmp_path / "stack"))
    assert tree.names == ("stack_base", "stack_user")
    built = build_user_trees([tree], debian_kernel("6.1"), target_toolchain("6.1"), tmp_path / "user-src",
                             lambda _line: None)
    assert [ko.name for ko in built[tree.given]] == ["stack_base.ko", "stack_user.ko"]
    assert all(ko.is_relative_to(tmp_path / "user-src") for ko in built[tree.given])
    assert sorted(p.name for p in tree.given.iterdir()) == ["Kbuild", "stack_base.c", "stack_user.c"]


def test_a_compile_error_names_the_users_file(tmp_path: Path) -> None:
    (tmp_path / "drv").mkdir()
    (tmp_path / "drv" / "Kbuild").write_text("obj-m += drv.o\n")
    (tmp_path / "drv" / "drv.c").write_text('#include <linux/module.h>\nMODULE_LICENSE("GPL");\nint x = ;\n')
    tree = check_user_tree(tmp_path / "drv")
    with pytest.raises(UserError) as err:
        build_user_trees([tree], debian_kernel("6.1"), target_toolchain("6.1"), tmp_path / "user-src",
                         lambda _line: None)
    assert f"{tmp_path}/drv/drv.c:3:9: error: expected expression" in str(err.value)
    assert "user-src" not in str(err.value)


@pytest.mark.parametrize(("obj", "says"), [
    ("kit_vmalloc", "its module name kit_vmalloc is one of the kit's own test modules"),
    ("stack_base", "are both module stack_base"),
])
def test_a_tree_naming_a_kit_module_or_a_module_given_twice_is_refused(tmp_path: Path, obj: str, says: str) -> None:
    for name in ("one", "two"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "Kbuild").write_text(f"obj-m += {obj if name == 'one' else 'stack_base'}.o\n")
        (tmp_path / name / "m.c").write_text("int m;\n")
    request = RunRequest(load_target("arm-6.1"), user_modules=(tmp_path / "one", tmp_path / "two"))
    with pytest.raises(UserError, match=says):
        check_user_modules(request)
