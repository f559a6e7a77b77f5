"""Test-data helpers for the parser tests: where the captures are and how to cut them up."""

from __future__ import annotations

import re
from pathlib import Path

DATA = Path(__file__).resolve().parent.parent / "data"
CAPTURES = DATA / "captures"
QEMU_VERSIONS = ("5.10", "6.1", "6.12")

_SECTION = re.compile(r"^## \((\d+)\)[^\n]*\n", re.MULTILINE)


def read_capture(name: str) -> str:
    return (CAPTURES / name).read_text()


def qemu_file(version: str, name: str) -> str:
    return (DATA / f"qemu-virt-{version}" / name).read_text()


def capture_sections(text: str) -> dict[int, str]:
    """A capture cut at its ``## (n) title`` headers: n -> the text below (0: before the first)."""
    parts = _SECTION.split(text)
    sections = {0: parts[0]}
    for index in range(1, len(parts), 2):
        sections[int(parts[index])] = parts[index + 1]
    return sections


def without_shell_prompts(text: str) -> str:
    """Drop ``user@host:dir# command`` lines that a pasted terminal session contains."""
    return "".join(line for line in text.splitlines(keepends=True) if not re.match(r"\S+@\S+:\S*[#$] ", line))


def test_capture_sections_cuts_at_numbered_headers() -> None:
    text = "# provenance\n## (1) console\nA\n## (2) cat /proc/modules\nB\nC\n"
    assert capture_sections(text) == {0: "# provenance\n", 1: "A\n", 2: "B\nC\n"}


def test_shell_prompts_are_dropped_and_data_kept() -> None:
    text = "root@raspberrypi:/proc# cat modules \nipv6 1 0 - Live 0x7f000000\n"
    assert without_shell_prompts(text) == "ipv6 1 0 - Live 0x7f000000\n"

# The shared captures' file names (tests/data/captures)
ALLWINNER = "arm-allwinner-sun8i-256mb-3.4.39.txt"
FULLHAN = "arm-fullhan-fh8856v200-36mb-4.9.129-boot-meminfo-vmallocinfo.txt"
KASAN = "arm-kasan-dev-5.4.24-vmsplit2g-900mb.txt"
GRANITE2 = "arm-marvell-granite2-1gb-3.18-boot-and-modules.txt"
VEXPRESS = "arm-qemu-vexpress-a9-512mb-4.9.240-vmsplit2g.txt"
RASPBIAN = "arm-rpi-raspbian-proc-modules.txt"
FLORENT = "gh-FlorentRevest-linux-1-arm-highmem-pkmap-512mb.txt"
TECHNICOLOR = "gh-hack-technicolor-233-bcm63138-256mb-modules-18mb.txt"
TEST_VMALLOC = "test_vmalloc-summary-lines-real-runs.txt"
X86_2632 = "x86-32-ubuntu-2.6.32-1.5gb-highmem.txt"
X86_38 = "x86-32-ubuntu-3.8.0-2gb-vmalloc512MB-cmdline.txt"
