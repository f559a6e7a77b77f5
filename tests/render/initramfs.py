"""A minimal initramfs (newc cpio, gzip) that loads the kit modules one by one and powers off.

Test-only: the real guest runner is deploy/guest/kitrun.sh; this one exists so the template tests
can load the rendered modules on a real kernel without depending on the deploy layer.
"""

from __future__ import annotations

import gzip
import stat
from pathlib import Path

INIT_SCRIPT = """#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
echo 1 > /proc/sys/kernel/kptr_restrict
for m in {modules}; do
  echo "kit: begin $m" > /dev/kmsg
  insmod /kit/$m.ko; rc=$?
  rmmod $m; rc2=$?
  echo "kit: released $m rmmod=$rc2" > /dev/kmsg
  echo "STATUS $m insmod=$rc rmmod=$rc2"
done
echo "=== DMESG"
dmesg
echo "=== END"
poweroff -f
"""


def _entry(name: str, mode: int, data: bytes = b"", rdev: tuple[int, int] = (0, 0), ino: int = 0) -> bytes:
    fields = [ino, mode, 0, 0, 1, 0, len(data), 0, 0, rdev[0], rdev[1], len(name) + 1, 0]
    header = b"070701" + b"".join(b"%08X" % f for f in fields) + name.encode() + b"\0"
    header += b"\0" * (-len(header) % 4)
    return header + data + b"\0" * (-len(data) % 4)


def build_initramfs(busybox: Path, modules: list[Path], out: Path) -> Path:
    """Write ``out`` (gzip'ed newc cpio) with busybox, /init, /dev/console and /kit/<m>.ko."""
    init = INIT_SCRIPT.format(modules=" ".join(ko.stem for ko in modules)).encode()
    files: list[tuple[str, int, bytes, tuple[int, int]]] = [
        (d, stat.S_IFDIR | 0o755, b"", (0, 0)) for d in ("bin", "dev", "proc", "sys", "kit")
    ]
    files.append(("dev/console", stat.S_IFCHR | 0o600, b"", (5, 1)))
    files.append(("bin/busybox", stat.S_IFREG | 0o755, busybox.read_bytes(), (0, 0)))
    files.append(("init", stat.S_IFREG | 0o755, init, (0, 0)))
    files += [(f"kit/{ko.name}", stat.S_IFREG | 0o644, ko.read_bytes(), (0, 0)) for ko in modules]
    archive = b"".join(_entry(n, m, d, r, ino=i + 1) for i, (n, m, d, r) in enumerate(files))
    archive += _entry("TRAILER!!!", 0)
    out.write_bytes(gzip.compress(archive))
    return out
