"""--module X.ko: bad files are refused from the file alone, a wrong vermagic right after the kernel phase;
every message names the path as the user gave it (issue 12 row 5). Real files only: Debian's modules
(tests/data/ko, the cached kernels' own), host binaries, objects made by the target's cross compiler."""

from __future__ import annotations

import gzip
import lzma
import platform
import shutil
import subprocess
from pathlib import Path

import pytest

from kbuild.kernels import KernelTree
from kbuild.make import expected_vermagic
from kbuild.targets import load_target
from kit.errors import UserError
from kit.pipeline import ship_user_modules
from kit.request import RunRequest
from kit.user_modules import UserModule, check_user_modules, check_user_vermagic
from tests.conftest import debian_busybox, debian_kernel, module_of_another_kernel, target_toolchain

REPO = Path(__file__).resolve().parent.parent.parent
KO = REPO / "tests" / "data" / "ko"
HOST_MACHINE = {"x86_64": "x86-64", "aarch64": "arm64 (AArch64)", "i686": "x86 (i386)"}


def request(*modules: Path, target: str = "arm-6.1", tmp: Path | None = None) -> RunRequest:
    if tmp is None:
        return RunRequest(target=load_target(target), user_modules=modules)
    return RunRequest(target=load_target(target), user_modules=modules, generated_root=tmp / "generated",
                      results_root=tmp / "results")


def refused(*modules: Path, target: str = "arm-6.1") -> str:
    with pytest.raises(UserError) as err:
        check_user_modules(request(*modules, target=target))
    assert err.value.exit_code == 2
    message = str(err.value)
    assert "\n" not in message and "ship-user" not in message and "incoming" not in message
    return message


def arm_object(tmp: Path, name: str, c_source: str, *flags: str) -> Path:
    """An ARM relocatable object made by the target's cross compiler."""
    source = tmp / f"{name}.c"
    source.write_text(c_source)
    out = tmp / f"{name}.o"
    subprocess.run([target_toolchain("6.1").cc, *flags, "-c", str(source), "-o", str(out)], check=True)
    return out


def modinfo_object(tmp: Path, name: str, *entries: str) -> Path:
    """An ARM ET_REL whose .modinfo holds ``entries`` (what a .ko's file checks look at)."""
    text = "".join(entry.replace('"', '\\"') + "\\0" for entry in entries)
    source = f'static const char m[] __attribute__((used, section(".modinfo"))) = "{text}";\n'
    return arm_object(tmp, name, source)


def test_a_missing_file(tmp_path: Path) -> None:
    assert refused(tmp_path / "nope.ko") == f"--module {tmp_path}/nope.ko: no such file; check the path"


def test_a_broken_symlink(tmp_path: Path) -> None:
    (tmp_path / "link.ko").symlink_to(tmp_path / "gone.ko")
    assert "no such file (a broken symbolic link)" in refused(tmp_path / "link.ko")


def test_a_directory_without_a_module(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("not a module\n")
    assert refused(tmp_path) == (f"--module {tmp_path}: a directory without `obj-m += <name>.o` in a Kbuild or "
                                 "Makefile; pass a module's source directory or the .ko itself")


def test_not_a_regular_file() -> None:
    assert refused(Path("/dev/null")) == "--module /dev/null: not a regular file; pass the module file itself (X.ko)"


def test_a_text_file(tmp_path: Path) -> None:
    text = tmp_path / "driver.ko"
    text.write_text("obj-m += driver.o\n")
    assert refused(text) == f"--module {text}: a text file, not a kernel module; pass the .ko itself"


def test_an_empty_file(tmp_path: Path) -> None:
    (tmp_path / "e.ko").touch()
    assert "an empty file" in refused(tmp_path / "e.ko")


def test_a_text_file_named_compressed(tmp_path: Path) -> None:
    for suffix, what in ((".xz", "xz"), (".gz", "gzip"), (".zst", "zstd")):
        fake = tmp_path / f"driver.ko{suffix}"
        fake.write_text("not compressed\n")
        assert refused(fake).startswith(f"--module {fake}: named {suffix} but not {what}-compressed;")


def test_compressed_data_named_plain_ko(tmp_path: Path) -> None:
    xz = tmp_path / "crc7.ko"
    xz.write_bytes(lzma.compress((KO / "6.1" / "crc7.ko").read_bytes(), format=lzma.FORMAT_XZ))
    assert refused(xz) == f"--module {xz}: xz-compressed data; name it crc7.ko.xz (or decompress it)"


def test_compressed_text(tmp_path: Path) -> None:
    gz = tmp_path / "x.ko.gz"
    gz.write_bytes(gzip.compress(b"just text\n"))
    assert refused(gz) == f"--module {gz}: decompressed, a text file, not a kernel module; pass the .ko itself"


def test_a_host_executable_is_the_wrong_machine() -> None:
    true = Path(shutil.which("true") or "/bin/true")
    machine = HOST_MACHINE[platform.machine()]
    assert refused(true) == (f"--module {true}: {machine} ELF, the target arm-6.1 is 32-bit little-endian ARM: "
                             "pass a module built for it")


def test_a_big_endian_arm_object(tmp_path: Path) -> None:
    big = arm_object(tmp_path, "be", "int x = 1;\n", "-mbig-endian")
    assert refused(big).startswith(f"--module {big}: big-endian ARM ELF, the target arm-6.1 is 32-bit little-endian")


def test_an_arm_executable_is_not_a_module() -> None:
    busybox = debian_busybox("6.1")
    message = refused(busybox)
    assert message.startswith(f"--module {busybox}: an ARM executable (ET_EXEC)") or \
        message.startswith(f"--module {busybox}: an ARM shared object or PIE executable (ET_DYN)"), message
    assert "not a kernel module" in message


def test_an_object_without_modinfo(tmp_path: Path) -> None:
    obj = arm_object(tmp_path, "plain", "int x = 1;\n")
    assert refused(obj).startswith(f"--module {obj}: an ARM object without a .modinfo section")


def test_modinfo_without_name_is_an_unlinked_object(tmp_path: Path) -> None:
    obj = modinfo_object(tmp_path, "unlinked", "license=GPL", "vermagic=6.1.0-57-armmp SMP ")
    assert refused(obj).startswith(f"--module {obj}: its .modinfo has no name=, not a linked kernel module")


def test_modinfo_without_vermagic(tmp_path: Path) -> None:
    obj = modinfo_object(tmp_path, "novermagic", "license=GPL", "name=novermagic")
    assert refused(obj).startswith(f"--module {obj}: its .modinfo has no vermagic=")


def test_a_name_that_is_no_module_name(tmp_path: Path) -> None:
    obj = modinfo_object(tmp_path, "slash", "name=../evil", "vermagic=x ")
    assert "is not a module name" in refused(obj)


def test_a_truncated_module(tmp_path: Path) -> None:
    cut = tmp_path / "crc7.ko"
    cut.write_bytes((KO / "6.1" / "crc7.ko").read_bytes()[:3000])
    assert refused(cut).startswith(f"--module {cut}: damaged ELF file")


def test_two_modules_of_one_name() -> None:
    first, second = KO / "6.1" / "crc7.ko", KO / "6.12" / "crc7.ko.xz"
    assert refused(first, second) == (f"--module {first} and --module {second} are both module crc7: the kernel "
                                      "loads one module of a name; pass it once")


def test_a_module_named_like_a_kit_module(tmp_path: Path) -> None:
    obj = modinfo_object(tmp_path, "fake", "name=kit_kmap", "vermagic=6.1.0-57-armmp SMP ")
    assert refused(obj).startswith(f"--module {obj}: its module name kit_kmap is one of the kit's own test modules")


def test_good_modules_compressed_or_not_are_read_with_their_names() -> None:
    good = (KO / "6.1" / "crc7.ko", KO / "6.12" / "nls_cp437.ko.xz", KO / "5.10" / "ts_kmp.ko")
    modules = check_user_modules(request(*good))
    assert [(m.given, m.name) for m in modules] == [(good[0], "crc7"), (good[1], "nls_cp437"), (good[2], "ts_kmp")]
    assert modules[1].data == lzma.decompress(good[1].read_bytes())
    assert modules[0].vermagic.startswith("6.1.0-50-armmp SMP ")


def test_gzip_and_zstd_modules(tmp_path: Path) -> None:
    raw = (KO / "6.1" / "crc7.ko").read_bytes()
    gz = tmp_path / "crc7.ko.gz"
    gz.write_bytes(gzip.compress(raw))
    zst = tmp_path / "zst" / "crc7.ko.zst"
    zst.parent.mkdir()
    subprocess.run(["zstd", "-q", "-o", str(zst), str(KO / "6.1" / "crc7.ko")], check=True)
    for path in (gz, zst):
        (module,) = check_user_modules(request(path))
        assert (module.name, module.data) == ("crc7", raw)


def test_no_modules_no_checks() -> None:
    assert check_user_modules(request()) == []


# ------------------------------------------------------------------------------------------------
# against the kernel


def module_of(tree: KernelTree, name: str) -> Path:
    assert tree.modules_dir is not None, f"{tree.release}: no lib/modules in the cached image package"
    (found,) = tree.modules_dir.rglob(f"{name}.ko*")
    return found


def test_a_module_of_another_kernel_names_both_releases(tmp_path: Path) -> None:
    tree = debian_kernel("6.1")
    given, claims = module_of_another_kernel(tmp_path)
    modules = check_user_modules(request(given))
    assert claims != tree.release
    with pytest.raises(UserError) as err:
        check_user_vermagic(modules, tree)
    assert str(err.value) == (f"--module {given}: vermagic {claims} vs kernel {tree.release}: "
                              f"rebuild it against {tree.kdir}")


def test_same_release_other_flags_names_both_strings(tmp_path: Path) -> None:
    tree = debian_kernel("6.1")
    obj = modinfo_object(tmp_path, "flags", "name=flags", f"vermagic={tree.release} SMP mod_unload ")
    (module,) = check_user_modules(request(obj))
    with pytest.raises(UserError) as err:
        check_user_vermagic([module], tree)
    message = str(err.value)
    assert message.startswith(f"--module {obj}: vermagic '{tree.release} SMP mod_unload' vs the kernel's "
                              f"'{expected_vermagic(tree).strip()}'")


def test_the_kernels_own_module_passes() -> None:
    tree = debian_kernel("6.1")
    modules = check_user_modules(request(module_of(tree, "crc7")))
    check_user_vermagic(modules, tree)


def test_ship_stages_the_uncompressed_module_under_its_name(tmp_path: Path) -> None:
    tree = debian_kernel("6.12")
    xz = module_of(tree, "crc7")
    assert xz.name == "crc7.ko.xz"
    req = request(xz, target="arm-6.12", tmp=tmp_path)
    (shipped,) = ship_user_modules(req, tree)
    assert shipped == tmp_path / "generated" / "arm-6.12" / "ship-user" / "crc7.ko"
    assert shipped.read_bytes() == lzma.decompress(xz.read_bytes())
    assert sorted(p.name for p in shipped.parent.iterdir()) == ["crc7.ko"]
    mtime = shipped.stat().st_mtime_ns
    assert ship_user_modules(req, tree, check_user_modules(req)) == [shipped]
    assert shipped.stat().st_mtime_ns == mtime  # same bytes: not rewritten


def test_ship_refuses_a_wrong_vermagic_naming_the_users_path(tmp_path: Path) -> None:
    tree = debian_kernel("6.1")
    given = KO / "6.12" / "crc7.ko.xz"
    with pytest.raises(UserError) as err:
        ship_user_modules(request(given, tmp=tmp_path), tree)
    message = str(err.value)
    assert message.startswith(f"--module {given}: vermagic 6.12.95+deb12-armmp vs kernel {tree.release}:")
    assert "ship-user" not in message and str(tmp_path) not in message
    assert not (tmp_path / "generated").exists()  # nothing staged


def test_user_module_repr_leaves_the_bytes_out() -> None:
    module = UserModule(Path("x.ko"), "x", "v ", b"\x7fELF" * 1000)
    assert "ELF" not in repr(module) and module.where == "--module x.ko"
