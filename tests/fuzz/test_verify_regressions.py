"""Crashes the verify_bundle fuzzer found outside the files of this change (analysis/model,
analysis/verify, analysis/elf: not the parsers), each as its minimal input on a real bundle.

Each must end cleanly: checks, or a KitError with one line (they raised ValueError/OSError before the fix).
"""

from __future__ import annotations

import shutil
from pathlib import Path

from analysis.verify.verify import BundleVerdict, verify_bundle
from kit.errors import KitError
from tests.fuzz._mutate import DATA, clean
from tests.fuzz.test_fuzz_verify import module_bundle


def checked(root: Path) -> BundleVerdict | KitError:
    outcome = clean(lambda: verify_bundle(root))
    assert isinstance(outcome, BundleVerdict | KitError)
    return outcome


def test_the_undamaged_bundles_check(tmp_path: Path) -> None:
    shutil.copytree(DATA / "bundles" / "crossboot-6.1", tmp_path / "board")
    module_bundle(DATA / "runs" / "arm-6.1", "kit_kmap", tmp_path / "run", logs=False, ko=True)
    assert isinstance(checked(tmp_path / "board"), BundleVerdict)
    assert isinstance(checked(tmp_path / "run"), BundleVerdict)


def test_kernel_version_of_4301_digits(tmp_path: Path) -> None:
    root = tmp_path / "board"
    shutil.copytree(DATA / "bundles" / "crossboot-6.1", root)
    toml = (root / "target.toml").read_text()
    (root / "target.toml").write_text(toml.replace('release = "6.1.0-50-armmp"', f'release = "{"1" * 4301}.1"'))
    checked(root)


def test_module_name_longer_than_a_file_name(tmp_path: Path) -> None:
    root = tmp_path / "run"
    module_bundle(DATA / "runs" / "arm-6.1", "kit_vmalloc", root, logs=False, ko=False)
    (root / "status.txt").write_text("m" * 300 + " insmod=0 rmmod=0\n")  # ENAMETOOLONG: vmallocinfo/m...m.before.txt
    checked(root)


def test_config_value_that_is_not_a_number(tmp_path: Path) -> None:
    root = tmp_path / "run"
    module_bundle(DATA / "runs" / "arm-6.1", "kit_kmap", root, logs=False, ko=True)
    config = (root / "config").read_text()
    assert "CONFIG_ARM_L1_CACHE_SHIFT=6\n" in config and "CONFIG_ARM_MODULE_PLTS=y\n" in config
    (root / "config").write_text(config.replace("CONFIG_ARM_L1_CACHE_SHIFT=6\n", "CONFIG_ARM_L1_CACHE_SHIFT=6x\n"))
    checked(root)


def test_cmdline_size_of_4301_digits(tmp_path: Path) -> None:
    """Also reached by CONFIG_PAGE_OFFSET=<4301 digits> in config. Drop this xfail and the entry in
    test_fuzz_verify.KNOWN_ELSEWHERE once memparse_prefix refuses it."""
    root = tmp_path / "run"
    module_bundle(DATA / "runs" / "arm-6.1", "kit_vmalloc", root, logs=False, ko=False)
    (root / "cmdline.txt").write_text("console=ttyAMA0 vmalloc=" + "1" * 4301 + "\n")
    checked(root)
