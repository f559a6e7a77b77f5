"""What the guest sends is untrusted: only the files its plan writes land in the bundle."""

from __future__ import annotations

from pathlib import Path

from deploy.bundle_io import GUEST_GLOBAL_FILES, GUEST_MODULE_FILES, guest_output_names, write_guest_files

HOSTILE = ["target.toml", "config", "boot.log", "verdict.json", "ko/kit_kmap.ko", "ko", ".", "..", "../escape.txt",
           "/etc/passwd", "modules/../../x.txt", "a" * 300, "modules/other.txt", "dmesg.txt/", "ktap/kit_kmap.ktap"]


def test_only_the_plans_files_are_written_and_the_rest_is_refused(tmp_path: Path) -> None:
    bundle = tmp_path / "bundle"
    (bundle / "ko").mkdir(parents=True)
    (bundle / "target.toml").write_text('arch = "arm"\n')
    expected = guest_output_names(["kit_kmap"])
    files = {name: b"guest bytes\n" for name in HOSTILE}
    files["dmesg.txt"] = b"[    0.000000] Booting Linux\n"
    files["vmallocinfo/kit_kmap.during.txt"] = b"0xf0000000-0xf0002000    8192 x pages=1 vmalloc\n"

    written, refused = write_guest_files(bundle, files, expected)

    assert sorted(p.relative_to(bundle).as_posix() for p in written) == ["dmesg.txt", "vmallocinfo/kit_kmap.during.txt"]
    assert refused == sorted(HOSTILE)
    assert (bundle / "target.toml").read_text() == 'arch = "arm"\n'
    assert not (bundle / "ko" / "kit_kmap.ko").exists()
    assert not (tmp_path / "escape.txt").exists() and not (tmp_path / "x.txt").exists()
    assert sorted(p.relative_to(bundle).as_posix() for p in bundle.rglob("*")) == [
        "dmesg.txt", "ko", "target.toml", "vmallocinfo", "vmallocinfo/kit_kmap.during.txt"]


def test_the_expected_names_follow_the_guest_plan() -> None:
    """Every name the host accepts is one that guest/kitrun.sh writes (``$out/...``, ``$1`` per module)."""
    plan = (Path(__file__).parents[2] / "deploy" / "guest" / "kitrun.sh").read_text()
    for name in GUEST_GLOBAL_FILES:
        assert f'"$out/{name}"' in plan, name
    for pattern in GUEST_MODULE_FILES:
        assert f'"$out/{pattern.format(m="$1")}"' in plan, pattern
    assert len(guest_output_names(["a", "b"])) == len(GUEST_GLOBAL_FILES) + 2 * len(GUEST_MODULE_FILES)


def test_a_later_batch_from_a_new_boot_keeps_the_first_globals_and_appends_status(tmp_path: Path) -> None:
    """After a power-cycle the plan runs on a new boot and writes its globals again: the bundle keeps the
    ones read with the first module's snapshots, and status.txt holds both boots' lines."""
    expected = guest_output_names(["kit_vmalloc", "crc7"])
    first = {"meminfo.txt": b"VmallocUsed:         740 kB\n", "cmdline.txt": b"boot one\n",
             "status.txt": b"kit_vmalloc insmod=0 rmmod=0\n"}
    write_guest_files(tmp_path, first, expected)
    again = {"meminfo.txt": b"VmallocUsed:         748 kB\n", "cmdline.txt": b"boot two\n",
             "status.txt": b"crc7 insmod=0 rmmod=0\n", "vmallocinfo/crc7.before.txt": b"0xf0800000-0xf0802000 8\n"}
    written, refused = write_guest_files(tmp_path, again, expected)
    assert refused == []
    assert (tmp_path / "meminfo.txt").read_bytes() == first["meminfo.txt"]
    assert (tmp_path / "cmdline.txt").read_bytes() == b"boot one\n"
    assert (tmp_path / "status.txt").read_bytes() == b"kit_vmalloc insmod=0 rmmod=0\ncrc7 insmod=0 rmmod=0\n"
    assert sorted(p.relative_to(tmp_path).as_posix() for p in written) == ["status.txt",
                                                                         "vmallocinfo/crc7.before.txt"]
