"""Split a capture.sh console log into fixture files under tests/data/live/<version>/.

usage: python3 split.py <version> <console.log>
Each file starts with '# ' provenance lines; the rest is exactly what the guest printed.
"""

from __future__ import annotations

import re
import sys
from datetime import date
from pathlib import Path

RELEASES = {"5.10": "5.10.0-32-armmp", "6.1": "6.1.0-50-armmp", "6.12": "6.12.95+deb12-armmp"}
QEMU = ("qemu-system-arm 7.2 -M virt -cpu cortex-a15 -m 1024 -nographic -no-reboot "
        "-append 'console=ttyAMA0 panic=-1' (TCG, 1 CPU)")


def header(version: str, what: str) -> str:
    return (f"# {what}: Debian {RELEASES[version]} booted by tests/data/live/src/capture.sh {version} "
            f"on {date.today().isoformat()}\n# {QEMU}; kptr_restrict=1, read as root in the initramfs\n")


def sections_lines(body: list[str]) -> list[str]:
    out = []
    for line in body:
        m = re.match(r"/sys/module/[^/]+/sections/(.+):(0x[0-9a-f]+)$", line)
        if m:
            out.append(f"{m.group(1)} {m.group(2)}")
    return out


def main(version: str, log: Path) -> None:
    root = Path(__file__).resolve().parent.parent / version
    text = log.read_bytes().decode("utf-8", "replace").replace("\r", "")
    rcs = re.findall(r"^@@@RC (\S+) (\d+)$", text, re.M)
    for m in re.finditer(r"^@@@BEGIN ([^\n]+)\n(.*?)^@@@END$", text, re.M | re.S):
        name, body = m.group(1).split(), m.group(2).splitlines()
        if name[0] == "sections":
            body = sections_lines(body)
        if len(name) == 1:
            path = root / f"{name[0]}.txt"
        elif name[0].startswith("vmallocinfo."):
            path = root / "vmallocinfo" / f"{name[1]}.{name[0].split('.')[1]}.txt"
        else:
            path = root / name[0] / f"{name[1]}.txt"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(header(version, " ".join(name)) + "".join(line + "\n" for line in body))
    (root / "status.txt").write_text(header(version, "insmod exit codes")
                                     + "".join(f"{m} insmod={rc}\n" for m, rc in rcs))


if __name__ == "__main__":
    main(sys.argv[1], Path(sys.argv[2]))
