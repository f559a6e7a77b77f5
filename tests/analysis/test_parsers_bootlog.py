"""Boot-log spellings: prefixes, quoting, (ptrval), one-line blocks, x86-32, several boots."""

from __future__ import annotations

from analysis.parsers import parse_boot_log

BLOCK = [
    "Virtual kernel memory layout:",
    "    vector  : 0xffff0000 - 0xffff1000   (   4 kB)",
    "    fixmap  : 0xffc00000 - 0xfff00000   (3072 kB)",
    "    vmalloc : 0xf0800000 - 0xff800000   ( 240 MB)",
    "    lowmem  : 0xc0000000 - 0xf0000000   ( 768 MB)",
    "    pkmap   : 0xbfe00000 - 0xc0000000   (   2 MB)",
    "    modules : 0xbf000000 - 0xbfe00000   (  14 MB)",
    "      .text : 0xc0008000 - 0xc05a8d84   (5764 kB)",
]
EXPECTED = {
    "vector": (0xFFFF0000, 0xFFFF1000),
    "fixmap": (0xFFC00000, 0xFFF00000),
    "vmalloc": (0xF0800000, 0xFF800000),
    "lowmem": (0xC0000000, 0xF0000000),
    "pkmap": (0xBFE00000, 0xC0000000),
    "modules": (0xBF000000, 0xBFE00000),
    ".text": (0xC0008000, 0xC05A8D84),
}


def with_prefix(prefix: str) -> str:
    return "".join(f"{prefix}{line}\n" for line in BLOCK) + f"{prefix}SLUB: HWalign=64\n"


def test_plain_block() -> None:
    boot = parse_boot_log(with_prefix(""))
    assert boot.layout == EXPECTED and boot.layout_line == 1
    assert boot.layout_size_kb["vmalloc"] == 240 * 1024 and boot.layout_size_kb[".text"] == 5764


def test_every_prefix_spelling() -> None:
    for prefix in (
        "[    0.000000] ",
        "<5>[    0.000000] ",
        "<5>",
        "> [    0.000000] ",
        "> > ",
        "Jan  1 00:00:00 granite2 kernel: ",
        "Jan  1 00:00:00 granite2 kernel: [    0.000000] ",
        "[    0.000000][    T0] ",
    ):
        assert parse_boot_log(with_prefix(prefix)).layout == EXPECTED, prefix


def test_block_on_one_line_with_escaped_newlines() -> None:
    for separator in ("\\x0a", "#012"):
        text = "[    0.000000] " + separator.join(BLOCK) + "\n"
        assert parse_boot_log(text).layout == EXPECTED, separator


def test_ptrval_values_are_unknown() -> None:
    text = "Virtual kernel memory layout:\n    vmalloc : 0x(ptrval) - 0x(ptrval)   ( 240 MB)\n"
    boot = parse_boot_log(text)
    assert boot.layout == {"vmalloc": (None, None)} and boot.layout_size_kb == {"vmalloc": 240 * 1024}


def test_x86_32_block_lowercase_header() -> None:
    text = (
        "[    0.000000] virtual kernel memory layout:\n"
        "[    0.000000]     fixmap  : 0xfff16000 - 0xfffff000   ( 932 kB)\n"
        "[    0.000000]     vmalloc : 0xf87fe000 - 0xff7fe000   ( 112 MB)\n"
        "[    0.000000] Checking if this processor honours the WP bit even in supervisor mode...Ok.\n"
    )
    boot = parse_boot_log(text)
    assert boot.layout == {"fixmap": (0xFFF16000, 0xFFFFF000), "vmalloc": (0xF87FE000, 0xFF7FE000)}
    assert boot.layout_size_kb == {"fixmap": 932, "vmalloc": 112 * 1024}


def test_arm64_gigabytes_and_qualifiers() -> None:
    text = (
        "Virtual kernel memory layout:\n"
        "    vmalloc : 0xffffff8000000000 - 0xffffffbebfff0000   (   250 GB)\n"
        "    vmemmap : 0xffffffbec0000000 - 0xffffffbfc0000000   (     4 GB maximum)\n"
    )
    boot = parse_boot_log(text)
    assert boot.layout["vmalloc"] == (0xFFFFFF8000000000, 0xFFFFFFBEBFFF0000)
    assert boot.layout_size_kb == {"vmalloc": 250 * 1024 * 1024, "vmemmap": 4 * 1024 * 1024}


def test_banner_release_version_cmdline_and_memory() -> None:
    text = (
        "[    0.000000] Linux version 6.1.0-50-armmp (debian-kernel@lists.debian.org) (gcc-12) "
        "#1 SMP Debian 6.1.176-1\n"
        "[    0.000000] Kernel command line: console=ttyAMA0 vmalloc=512M  \n"
        "[    0.000000] Memory: 1000660K/1048576K available (11264K kernel code, 1700K rwdata, 3732K rodata, "
        "2048K init, 377K bss, 31532K reserved, 16384K cma-reserved, 245760K highmem)\n"
    )
    boot = parse_boot_log(text)
    assert boot.release == "6.1.0-50-armmp" and boot.version == (6, 1, 0)
    assert boot.linux_version is not None and boot.linux_version.endswith("Debian 6.1.176-1")
    assert boot.cmdline == "console=ttyAMA0 vmalloc=512M"
    assert boot.memory is not None
    memory = boot.memory
    assert (memory.available_kb, memory.total_kb, memory.highmem_kb) == (1000660, 1048576, 245760)
    assert (boot.memory.reserved_kb, boot.memory.cma_reserved_kb, boot.memory.line) == (31532, 16384, 3)
    assert boot.memory.fields["kernel code"] == 11264


def test_release_with_suffixes() -> None:
    assert parse_boot_log("Linux version 5.2.0-rc6+ (x@y)\n").version == (5, 2, 0)
    assert parse_boot_log("Linux version 3.18.24-yocto-standard (x@y)\n").version == (3, 18, 24)
    assert parse_boot_log("Linux version 3.18 (x@y)\n").version == (3, 18)


def test_wrapped_memory_line_stops_after_a_few_lines() -> None:
    text = "Memory: 100K/200K available (1K kernel code,\nnever\nclosed\nhere\nat\nall\n"
    text += "Kernel command line: a\n"
    boot = parse_boot_log(text)
    assert boot.memory is not None and boot.memory.available_kb == 100
    assert boot.cmdline == "a"


def test_a_new_banner_starts_a_new_boot() -> None:
    first = "Linux version 5.10.0-32-armmp (x)\nKernel command line: first\n" + with_prefix("")
    second = "Linux version 6.1.0-50-armmp (x)\nKernel command line: second\n"
    boot = parse_boot_log(first + second)
    assert (boot.release, boot.cmdline, boot.layout, boot.memory) == ("6.1.0-50-armmp", "second", {}, None)


def test_block_ends_at_the_first_other_line() -> None:
    text = with_prefix("") + "    later   : 0x00000001 - 0x00000002   (   0 kB)\n"
    assert "later" not in parse_boot_log(text).layout


def test_nothing_found() -> None:
    boot = parse_boot_log("hello\nworld\n")
    assert (boot.linux_version, boot.release, boot.version, boot.cmdline, boot.memory) == (None,) * 5
    assert boot.layout == {} and boot.layout_line is None
