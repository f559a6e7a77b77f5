"""Damaging real captures the way consoles, boards and people do: a window of the capture, then a few
of: truncation, byte flips, interleaved kernel log lines, huge numbers, NULs, CRLF or stray CR, random
unicode, lost / repeated / swapped lines, deeper indentation. Hypothesis draws one integer per example
(PROGRAMS), read as bytes by :class:`Choices`, which every choice of the damage comes from.

Every fuzz target is run through :func:`clean`: a result, or the kit's own error (a KitError) whose
message is one non-empty line. Any other exception fails the example; hypothesis shrinks it.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable, Sequence
from datetime import timedelta
from pathlib import Path
from typing import TypeVar

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from kit.errors import KitError

DATA = Path(__file__).resolve().parents[1] / "data"
EXAMPLES = max(10_000, int(os.environ.get("KMODKIT_FUZZ_EXAMPLES", "0")))  # set it higher for a longer hunt
T = TypeVar("T")

# 10,000 generated inputs per target, reproducible (derandomize: the seed comes from the test's name),
# nothing stored between runs, at most 1 s per input.
FUZZ = settings(
    max_examples=EXAMPLES,
    derandomize=True,
    database=None,
    deadline=timedelta(seconds=1),
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example],
)


def read_seeds(patterns: Iterable[str]) -> list[bytes]:
    """The files under tests/data matching ``patterns`` (glob), sorted; at least one must exist."""
    found = sorted({path for pattern in patterns for path in DATA.glob(pattern) if path.is_file()})
    assert found, f"no seed files for {list(patterns)}"
    return [path.read_bytes() for path in found]


KERNEL_LINES = [
    b"[    5.123456] random: crng init done",
    b"[   12.000001] kit: begin kit_vmalloc",
    b"[   12.000002] kit: released kit_vmalloc rmmod=0",
    b"<6>[    1.640406] Run /init as init process",
    b"[  T123] kit_vmalloc: # subpage.addr=0xf0812000",
    b"Jan  1 00:00:00 host kernel: [    0.000000] Memory: 1024K/2048K available (8K kernel code, 0K highmem)",
    b"[    3.021746] reboot: Power down",
    b"KIT>F dmesg.txt 12",
    b"KIT>EOF dmesg.txt",
    b"|0xf0800000-0xf0802000    8192 start_kernel+0x1/0x2 pages=1 vmalloc",
    b"KTAP version 1",
    b"1..3",
    b"ok 1 layout",
    b"not ok 2 subpage # reason",
    b"    # subtest.addr=0x1",
    b"Virtual kernel memory layout:",
    b"    vmalloc : 0xf0000000 - 0xff800000   ( 248 MB)",
]
TRICKY = [
    "\x00", "\r", "\r\n", "\n", "\t", " ", "\x0b", "\x0c", "\x1c", "\x85", "\u2028", "\u2029", "\ufeff",
    "\u0663", "\uff19", "\U0001d7d7", "\u00b2", "\u00bd", "\u2167", "é", "#", "=", "0x", "-", ":", "(", ")",
    "[", "]", "|", "KIT>", "\x1b[0m", "\ufffd",
]
NUMBERS = [
    "0", "-1", "00", "9" * 20, "9" * 64, "1" * 4301, "1" * 5000, "4294967296", "18446744073709551616",
    "f" * 40, "0x" + "f" * 40, "1e9", "+1", "\u0663\u0663", "\uff11",
]
_DIGITS = re.compile(rb"[0-9a-fA-F]+")


class Choices:
    """Choices read from hypothesis' bytes, as a fuzzer's data provider does: one draw per example
    (hypothesis' own cost per draw dominates otherwise), and shrinking the bytes simplifies the input
    (fewer damages, earlier seeds, smaller positions). Past the end every choice is 0."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.offset = 0

    def below(self, bound: int) -> int:
        """A choice in ``[0, bound)``."""
        if bound <= 1:
            return 0
        width = (bound.bit_length() + 7) // 8
        chunk = self.data[self.offset : self.offset + width]
        self.offset += width
        return int.from_bytes(chunk, "big") % bound if chunk else 0

    def __repr__(self) -> str:  # hypothesis prints the falsifying program like this
        return f"Choices(bytes.fromhex({self.data.hex()!r}))"

    def pick(self, items: Sequence[T]) -> T:
        return items[self.below(len(items))]

    def text(self, limit: int) -> str:
        """Random unicode (any plane; a surrogate becomes U+FFFD)."""
        chars = [self.below(0x30000) for _ in range(self.below(limit + 1))]
        return "".join("\ufffd" if 0xD800 <= char < 0xE000 else chr(char) for char in chars)


_LINE_STARTS: dict[bytes, list[int]] = {}  # per seed (a bytes object hashes once)


def _line_starts(data: bytes) -> list[int]:
    return [0, *(match.end() for match in re.finditer(rb"\n", data))]


def _seed_line_starts(seed: bytes) -> list[int]:
    found = _LINE_STARTS.get(seed)
    if found is None:
        found = _LINE_STARTS[seed] = _line_starts(seed)
    return found


def _window(choices: Choices, seed: bytes, max_lines: int) -> bytes:
    """A run of whole lines of the seed (the whole seed one time in eight)."""
    if choices.below(8) == 0:
        return seed
    starts = _seed_line_starts(seed)
    first = choices.below(len(starts))
    last = first + 1 + choices.below(max_lines)
    return seed[starts[first] : starts[last] if last < len(starts) else len(seed)]


def damage(data: bytes, choices: Choices, max_ops: int = 4, ops: Sequence[str] | None = None) -> bytes:
    """Up to ``max_ops`` damages of ``data`` (none, sometimes), each one of ``ops`` (default OPS)."""
    for _ in range(choices.below(max_ops + 1)):
        op = choices.pick(ops or OPS)
        position, other = choices.below(1 << 20), choices.below(1 << 16)
        text = choices.text(12) if op == "unicode" else ""
        line = choices.pick(KERNEL_LINES) if op == "kernel-line" else b""
        data = _apply(data, op, position, other, text, line)
    return data


def _apply(data: bytes, op: str, position: int, other: int, text: str, line: bytes) -> bytes:
    here = position % (len(data) + 1)
    if op == "truncate":
        return data[:here]
    if op == "cut-front":
        return data[here:]
    if op == "flip" and data:
        index = position % len(data)
        return data[:index] + bytes([data[index] ^ (other % 255 + 1)]) + data[index + 1 :]
    if op == "kernel-line":
        starts = _line_starts(data)
        at = starts[position % len(starts)]
        return data[:at] + line + b"\n" + data[at:]
    if op == "number":
        run = _DIGITS.search(data, here) or _DIGITS.search(data)  # the next number from a random place
        if run is None:
            return data
        return data[: run.start()] + NUMBERS[other % len(NUMBERS)].encode() + data[run.end() :]
    if op == "nul":
        return data[:here] + b"\0" * (other % 64 + 1) + data[here:]
    if op == "crlf":
        return data.replace(b"\n", b"\r\n") if other % 2 else data[:here] + b"\r" + data[here:]
    if op == "unicode":
        return data[:here] + text.encode() + data[here:]
    if op == "tricky":
        return data[:here] + TRICKY[other % len(TRICKY)].encode() + data[here:]
    lines = data.split(b"\n")
    first, second = position % len(lines), other % len(lines)
    if op == "drop-line":
        del lines[first]
    elif op == "repeat-line":
        lines[first:first] = [lines[first]] * (other % 20 + 1)
    elif op == "swap-lines":
        lines[first], lines[second] = lines[second], lines[first]
    elif op == "indent":  # deeper and deeper indentation of the next lines (KTAP subtests), up to 64
        for depth, index in enumerate(range(first, min(len(lines), first + other % 64 + 1)), 1):
            lines[index] = b" " * depth + lines[index]
    elif op == "long-line":
        lines[first] = lines[first] * (other % 20 + 2)
    return b"\n".join(lines)


OPS = ["truncate", "cut-front", "flip", "kernel-line", "number", "nul", "crlf", "unicode", "tricky",
       "drop-line", "repeat-line", "swap-lines", "indent", "long-line"]
PROGRAM_BYTES = 256
# One draw per example: an integer read as bytes by Choices (hypothesis' cost per draw, and per byte of
# a st.binary, is most of an example's time otherwise). Shrinking the integer shrinks the program.
PROGRAMS = st.integers(0, (1 << (8 * PROGRAM_BYTES)) - 1).map(lambda n: Choices(n.to_bytes(PROGRAM_BYTES, "little")))


def staircase(data: bytes, choices: Choices) -> bytes:
    """One short line of ``data`` repeated 1000-1500 times, each copy one space deeper (KTAP subtests nest
    by indentation: this is deeper than Python's recursion limit). Costly to parse: used sparingly."""
    lines = data.split(b"\n")
    first = choices.below(len(lines))
    line = lines[first][:40].lstrip()
    lines[first : first + 1] = [b" " * depth + line for depth in range(1, 1000 + choices.below(500))]
    return b"\n".join(lines)


def damaged_from(choices: Choices, seeds: list[bytes], max_lines: int = 80, max_ops: int = 4,
                 ops: Sequence[str] | None = None) -> bytes:
    """A window of one of ``seeds`` (real captures) with up to ``max_ops`` damages applied."""
    return damage(_window(choices, choices.pick(seeds), max_lines), choices, max_ops, ops)


def as_text(data: bytes) -> str:
    """Bytes as the bundle reader decodes them (UTF-8, undecodable bytes replaced)."""
    return data.decode("utf-8", errors="replace")


def clean(call: Callable[[], T]) -> T | KitError:
    """``call()``'s result, or the KitError it raised (checked: a one-line, non-empty message)."""
    try:
        return call()
    except KitError as err:
        message = str(err)
        assert message.strip() and len(message.splitlines()) == 1, f"not a one-line message: {message!r}"
        return err
