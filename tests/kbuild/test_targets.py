"""kbuild.targets: the real target files load; bad files fail with the file and the key named."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from kbuild.kernels import MARKER, cached_releases
from kbuild.targets import TARGETS_DIR, default_target_name, load_target, target_names
from kit.errors import ParseError, UserError


@pytest.fixture
def targets_copy(tmp_path: Path) -> Path:
    for path in TARGETS_DIR.glob("*.toml"):
        shutil.copy(path, tmp_path / path.name)
    return tmp_path


def test_names_come_from_the_files() -> None:
    files = {p.stem for p in TARGETS_DIR.glob("*.toml")} - {"DEFAULT"}
    assert set(target_names()) == files
    assert {"arm-5.10", "arm-6.1", "arm-6.12"} <= files


def test_default_is_a_loadable_target() -> None:
    assert default_target_name() == "arm-6.1"
    assert load_target(default_target_name()).name == "arm-6.1"


@pytest.mark.parametrize(
    ("name", "series", "suite"),
    [("arm-5.10", "5.10", "bullseye"), ("arm-6.1", "6.1", "bookworm"), ("arm-6.12", "6.12", "bookworm-backports")],
)
def test_each_target_loads_with_typed_fields(name: str, series: str, suite: str) -> None:
    target = load_target(name)
    assert (target.kernel.series, target.kernel.suite) == (series, suite)
    assert target.arch == "arm" and target.kernel.debian_arch == "armhf"
    assert target.qemu.mem_mib == 1024 and isinstance(target.qemu.smp, int)
    assert isinstance(target.toolchain.apt_packages, tuple)
    assert target.toolchain.cc.startswith(target.toolchain.cross_compile)


def test_unknown_target_lists_the_valid_ones() -> None:
    with pytest.raises(UserError) as err:
        load_target("arm-4.19")
    assert "arm-4.19" in str(err.value)
    for name in ("arm-5.10", "arm-6.1", "arm-6.12"):
        assert name in str(err.value)


def test_new_file_is_a_new_target(targets_copy: Path) -> None:
    shutil.copy(targets_copy / "arm-6.1.toml", targets_copy / "arm-6.1-big.toml")
    assert "arm-6.1-big" in target_names(targets_copy)
    assert load_target("arm-6.1-big", targets_copy).kernel.series == "6.1"


@pytest.mark.parametrize(
    ("old", "new", "words"),
    [
        ("mem_mib = 1024", 'mem_mib = "1024"', ["qemu.mem_mib", "int", "str"]),
        ("mem_mib = 1024", "mem_mib = true", ["qemu.mem_mib", "int", "bool"]),
        ("smp = 1", "smp = 0", ["qemu.smp", "positive"]),
        ('suite = "bookworm"', "suite = 12", ["kernel.suite", "str"]),
        ('apt_packages = ["qemu-system-arm"]', 'apt_packages = ["qemu-system-arm", 3]', ["qemu.apt_packages"]),
        ('cpu = "cortex-a15"', 'cpu = "cortex-a15"\ncpus = 2', ["unknown", "qemu.cpus"]),
        ('cpu = "cortex-a15"\n', "", ["missing", "qemu.cpu"]),
        ("[toolchain]", "[toolchains]", ["toolchains"]),
        ('arch = "arm"', "arch = arm", ["TOML"]),
    ],
)
def test_bad_field_names_file_and_key(targets_copy: Path, old: str, new: str, words: list[str]) -> None:
    path = targets_copy / "arm-6.1.toml"
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))
    with pytest.raises(ParseError) as err:
        load_target("arm-6.1", targets_copy)
    assert str(path) in str(err.value)
    for word in words:
        assert word in str(err.value)


def test_default_naming_a_missing_target_fails(targets_copy: Path) -> None:
    (targets_copy / "DEFAULT.toml").write_text('default = "arm-9.9"\n')
    with pytest.raises(ParseError, match=r"arm-9\.9"):
        default_target_name(targets_copy)


def test_cached_releases_names_only_the_targets_own_flavour_and_complete_entries(tmp_path: Path) -> None:
    arch = tmp_path / "kernels" / "armhf"
    for entry, complete in (("6.1.0-50-armmp_6.1.176-1", True), ("6.1.0-50-armmp-lpae_6.1.176-1", True),
                            ("6.1.0-51-armmp_6.1.180-1", False), ("6.12.95+deb12-armmp_6.12.95-1", True)):
        (arch / entry).mkdir(parents=True)
        if complete:
            (arch / entry / MARKER).write_text("")
    assert cached_releases(load_target("arm-6.1"), tmp_path) == ["6.1.0-50-armmp"]
    assert cached_releases(load_target("arm-lpae-6.1"), tmp_path) == ["6.1.0-50-armmp-lpae"]
    assert cached_releases(load_target("arm-6.12"), tmp_path) == ["6.12.95+deb12-armmp"]
    assert cached_releases(load_target("arm-5.10"), tmp_path) == []
