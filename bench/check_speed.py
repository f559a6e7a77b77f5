"""Offline check throughput: `invoke check` on a synthetic bundle of 100k vmallocinfo lines plus
/proc/modules and /proc/meminfo (issue 3's performance goal: >= 200k lines per second).

It also times, in the same run and on the same file, the floor of any checker that reads these lines: a
plain regex parse (start, end, size, rest; numbers as int) and a sort by start. Issue 9's goal is the
ratio check / floor <= 1.5, the last line printed (medians of REPEAT runs each, to damp noise):

    check X s, parse floor Y s, ratio R

    python bench/check_speed.py [LINES]
"""

from __future__ import annotations

import re
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from analysis.verify.verify import verify_bundle

# vmalloc=976M (the 6.1 maximum) makes the window [0xc2800000, 0xff800000): room for 124928 areas.
CMDLINE = "console=ttyAMA0 vmalloc=976M"
VSTART, VEND = 0xC2800000, 0xFF800000
MODULES = 100
REPEAT = 5
_FLOOR_LINE = re.compile(r"^(0x[0-9a-f]+)-(0x[0-9a-f]+)\s+(\d+)\s+(.*)$")
TAILS = ("kernel_clone+0xac/0x3c4 pages={p} vmalloc", "load_firmware+0x34/0xc8 [isp] pages={p} vmalloc",
         "__devm_ioremap_resource+0x168/0x1dc phys=0x09000000 ioremap", "alloc_thing+0x0/0x4 pages={p} vmalloc")


def synthetic_vmallocinfo(lines: int) -> tuple[str, int]:
    """Back-to-back areas inside [VSTART, VEND): one page plus guard each (the window holds 61440)."""
    out, address, used_pages = [], VSTART, 0
    for index in range(lines):
        pages = 1
        size = (pages + 1) * 4096
        if address + size > VEND:
            break
        tail = TAILS[index % len(TAILS)]
        if "ioremap" in tail:
            tail = tail.replace("0x09000000", f"0x{0x09000000 + index * 0x2000:08x}")
        else:
            used_pages += pages
        out.append(f"0x{address:08x}-0x{address + size:08x} {size:7d} {tail.format(p=pages)}\n")
        address += size
    return "".join(out), used_pages


def make_bundle(root: Path, lines: int) -> int:
    text, used_pages = synthetic_vmallocinfo(lines)
    modules = "".join(f"0x{0xBF000000 + i * 0x5000:08x}-0x{0xBF005000 + i * 0x5000:08x}   20480 "
                      f"load_module+0xa90/0x21c8 pages=4 vmalloc\n" for i in range(MODULES))
    (root / "vmallocinfo.txt").write_text(modules + text)
    (root / "modules.txt").write_text("".join(
        f"mod{i} 16384 0 - Live 0x{0xBF000000 + i * 0x5000:08x} (O)\n" for i in range(MODULES)))
    (root / "meminfo.txt").write_text(
        "MemTotal:        1019988 kB\nLowTotal:         757844 kB\nHighTotal:        262144 kB\n"
        f"VmallocTotal:     {(VEND - VSTART) >> 10} kB\nVmallocUsed:      {(used_pages + 4 * MODULES) * 4} kB\n")
    (root / "target.toml").write_text(f'arch = "arm"\nmem_mib = 1024\nram_base = 0x40000000\ncmdline = "{CMDLINE}"\n'
                                      '[kernel]\nversion = "6.1.176"\n')
    return text.count("\n") + MODULES


def parse_floor(path: Path) -> list[tuple[int, int, int, str]]:
    """The least a checker of these lines does: read them, one regex per line, ints, sort by start."""
    match = _FLOOR_LINE.match
    rows = []
    for line in path.read_text().splitlines():
        found = match(line)
        if found is not None:
            start, end, size, rest = found.groups()
            rows.append((int(start, 16), int(end, 16), int(size), rest))
    rows.sort(key=lambda row: row[0])
    return rows


def seconds(work: Callable[[], object]) -> float:
    """Wall time of one call, the freeing of what it returns included (as for every run of a checker)."""
    started = time.perf_counter()
    work()
    return time.perf_counter() - started


def main() -> None:
    wanted = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        lines = make_bundle(root, wanted)
        best = float("inf")
        for _ in range(3):
            started = time.perf_counter()
            result = verify_bundle(root)
            best = min(best, time.perf_counter() - started)
        statuses = {c.status for c in result.checks}
        print(f"offline check: {lines} vmallocinfo lines + {MODULES} modules + meminfo in {best:.3f} s "
              f"= {lines / best:,.0f} lines/s (goal >= 200,000); {len(result.checks)} checks, statuses {statuses}")
        vmallocinfo = root / "vmallocinfo.txt"
        assert len(parse_floor(vmallocinfo)) == lines
        # Medians of REPEAT runs each, interleaved so that a burst of other work hits both sides alike.
        check_times, floor_times = [], []
        for _ in range(REPEAT):
            check_times.append(seconds(lambda: verify_bundle(root)))
            floor_times.append(seconds(lambda: parse_floor(vmallocinfo)))
        check, floor = statistics.median(check_times), statistics.median(floor_times)
        print(f"check {check:.3f} s, parse floor {floor:.3f} s, ratio {check / floor:.2f}")


if __name__ == "__main__":
    main()
