"""The boot console (or dmesg): banner, command line, ``Memory:`` line, and the old layout block.

* ``Linux version <release> (...) ...`` (init/version.c ``linux_banner``, all versions).
* ``Kernel command line: ...`` (init/main.c ``start_kernel``).
* ``Memory: <avail>K/<total>K available (<n>K kernel code, ..., <n>K highmem)``
  (mm/page_alloc.c ``mem_init_print_info`` 3.15+; 6.12 mm/mm_init.c), and the older ARM form
  ``Memory: 161848k/161848k available, 100296k reserved, 0K highmem`` (arch/arm/mm/init.c
  ``mem_init`` before 3.15) or x86-32 ``Memory: 1534628k/1572800k available (4679k kernel code, ...)``.
* ``Virtual kernel memory layout:`` (arch/arm/mm/init.c ``mem_init`` up to 5.0, removed by commit
  1c31d4e96b8c; x86-32 arch/x86/mm/init_32.c spells it ``virtual kernel memory layout:``) followed by
  ``<region> : 0x<start> - 0x<end>   (<size> kB|MB)``. 4.15..5.0 may print ``0x(ptrval)`` (the
  pointer hash was not yet seeded; ``0x(____ptrval____)`` on 64-bit): such a value is ``None``.

Every line may carry prefixes: mail quoting (``> ``), a syslog header (``Jan  1 00:00:00 host
kernel: ``), a ``<6>`` level and a ``[    0.000000] `` timestamp. A block logged as one line with
literal ``\\x0a`` (or rsyslog ``#012``) separators is split back into lines. A new ``Linux version``
banner starts a new boot: the result describes the last boot in the text.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from analysis.parsers._lines import numbered_lines

_PREFIX = re.compile(
    r"(?:>\s?)*"  # mail quoting
    r"(?:[A-Z][a-z]{2}\s+\d+\s+\d\d:\d\d:\d\d\s+\S+\s+kernel:\s?)?"  # syslog header
    r"(?:<\d+>)?"  # console level
    r"(?:\[\s*\d+\.\d+\]\s?)?"  # printk timestamp
    r"(?:\[\s*[TC]\d+\]\s?)?"  # printk caller id
)
_ESCAPED_NEWLINE = re.compile(r"\\x0a|#012")
_BANNER = re.compile(r"Linux version (?P<release>\S+)(?P<rest>.*)")
_CMDLINE = re.compile(r"Kernel command line:\s?(?P<cmdline>.*)")
_LAYOUT_HEADER = re.compile(r"[Vv]irtual kernel memory layout:\s*")
# Numbers are bounded to what the kernel prints (a pointer: 16 hex digits; a size: 20 decimal digits): a
# longer digit run is not one of these lines (its item stays None), never an int() of thousands of digits.
_ADDRESS = r"0x(?:\(_*ptrval_*\)|[0-9a-fA-F]{1,16})"  # 64-bit kernels: (____ptrval____)
_REGION = re.compile(
    r"(?P<name>[A-Za-z._][\w .\-/]*?)\s*:\s*(?P<start>" + _ADDRESS + r")\s*-\s*(?P<end>" + _ADDRESS + r")"
    r"(?:\s*\(\s*(?P<size>\d{1,20})\s*(?P<unit>[kKMG]B)(?:\s+\w+)?\s*\))?.*"
)
_MEMORY = re.compile(r"Memory:\s*(?P<avail>\d{1,20})[kK]/(?P<total>\d{1,20})[kK] available(?P<rest>.*)")
_MEMORY_FIELD = re.compile(r"(?<!\d)(?P<value>\d{1,20})[kK]\s+(?P<name>[A-Za-z][\w -]*?)\s*(?=[,)]|$)")
_RELEASE_NUMBERS = re.compile(r"\d{1,9}(?:\.\d{1,9})*(?!\d)")  # 5.10.0, 6.1.176; a longer run gives no version

# Region names of the ARM (arch/arm/mm/init.c) and x86-32 (arch/x86/mm/init_32.c) blocks: a capture
# that lost the header line still starts a block at one of these.
KNOWN_REGIONS = frozenset(
    {"vector", "fixmap", "vmalloc", "lowmem", "pkmap", "modules", ".text", ".init", ".data", ".bss"}
)
# A wrapped Memory: line is joined over at most this many extra lines.
_MAX_MEMORY_CONTINUATION = 4

_UNIT_KB = {"kB": 1, "KB": 1, "MB": 1024, "GB": 1024 * 1024}


@dataclass(frozen=True, slots=True)
class MemoryLine:
    """The ``Memory: A/T available (...)`` line, in kB. ``fields`` keeps every ``<n>K <name>``."""

    available_kb: int
    total_kb: int
    fields: dict[str, int]
    line: int

    @property
    def highmem_kb(self) -> int | None:
        return self.fields.get("highmem")

    @property
    def reserved_kb(self) -> int | None:
        return self.fields.get("reserved")

    @property
    def cma_reserved_kb(self) -> int | None:
        return self.fields.get("cma-reserved")


@dataclass(frozen=True, slots=True)
class BootLog:
    """What the parser found; ``None`` (or an empty dict) for what the log does not contain."""

    path: str
    linux_version: str | None
    release: str | None
    version: tuple[int, ...] | None
    cmdline: str | None
    memory: MemoryLine | None
    layout: dict[str, tuple[int | None, int | None]]
    layout_size_kb: dict[str, int]
    layout_line: int | None


@dataclass
class _State:
    linux_version: str | None = None
    cmdline: str | None = None
    memory: MemoryLine | None = None
    layout: dict[str, tuple[int | None, int | None]] = field(default_factory=dict)
    layout_size_kb: dict[str, int] = field(default_factory=dict)
    layout_line: int | None = None
    in_layout: bool = False
    memory_start: int | None = None
    memory_text: str = ""
    memory_extra_lines: int = 0


def parse_boot_log(text: str, path: str = "boot.log") -> BootLog:
    """Parse a console log or dmesg. Never raises: a missing item is ``None``."""
    state = _State()
    for number, line in _logical_lines(text):
        if state.memory_start is not None:
            _continue_memory(state, line)
            continue
        _read_line(state, number, line)
    if state.memory_start is not None:  # a wrapped Memory: line that never closed
        state.memory = _memory_line(state.memory_text, state.memory_start)
    return _result(state, path)


def _logical_lines(text: str) -> list[tuple[int, str]]:
    """Lines with prefixes removed; escaped newlines split into several lines of the same number."""
    lines: list[tuple[int, str]] = []
    for number, raw in numbered_lines(text):
        for part in _ESCAPED_NEWLINE.split(raw):
            lines.append((number, _PREFIX.sub("", part, count=1).rstrip()))
    return lines


def _read_line(state: _State, number: int, line: str) -> None:
    stripped = line.strip()
    if state.in_layout:
        if _read_region(state, stripped):
            return
        state.in_layout = False
    if _BANNER.match(stripped):
        _start_new_boot(state, stripped)
    elif (match := _CMDLINE.match(stripped)) is not None:
        state.cmdline = match["cmdline"].strip()
    elif _LAYOUT_HEADER.fullmatch(stripped):
        state.in_layout, state.layout_line = True, number
        state.layout, state.layout_size_kb = {}, {}
    elif _MEMORY.match(stripped):
        state.memory_start, state.memory_text, state.memory_extra_lines = number, stripped, 0
        if stripped.count("(") <= stripped.count(")"):
            _finish_memory(state)
    elif _starts_headerless_block(stripped):
        state.in_layout, state.layout_line = True, number
        state.layout, state.layout_size_kb = {}, {}
        _read_region(state, stripped)


def _starts_headerless_block(line: str) -> bool:
    match = _REGION.fullmatch(line)
    return match is not None and match["size"] is not None and match["name"].strip() in KNOWN_REGIONS


def _start_new_boot(state: _State, banner: str) -> None:
    fresh = _State(linux_version=banner)
    for name in ("linux_version", "cmdline", "memory", "layout", "layout_size_kb", "layout_line"):
        setattr(state, name, getattr(fresh, name))


def _read_region(state: _State, line: str) -> bool:
    match = _REGION.fullmatch(line)
    if match is None:
        return False
    name = match["name"].strip()
    state.layout[name] = (_address(match["start"]), _address(match["end"]))
    if match["size"] is not None:
        state.layout_size_kb[name] = int(match["size"]) * _UNIT_KB.get(match["unit"], 1)
    return True


def _address(text: str) -> int | None:
    return None if "ptrval" in text else int(text, 16)


def _continue_memory(state: _State, line: str) -> None:
    """A ``Memory:`` line wrapped by a mail client continues until its parenthesis closes."""
    state.memory_text += " " + line.strip()
    state.memory_extra_lines += 1
    closed = state.memory_text.count("(") <= state.memory_text.count(")")
    if closed or state.memory_extra_lines >= _MAX_MEMORY_CONTINUATION:
        _finish_memory(state)


def _finish_memory(state: _State) -> None:
    assert state.memory_start is not None
    state.memory = _memory_line(state.memory_text, state.memory_start)
    state.memory_start, state.memory_text = None, ""


def _memory_line(text: str, number: int) -> MemoryLine | None:
    match = _MEMORY.match(text)
    if match is None:
        return None
    fields = {found["name"]: int(found["value"]) for found in _MEMORY_FIELD.finditer(match["rest"])}
    return MemoryLine(int(match["avail"]), int(match["total"]), fields, number)


def _result(state: _State, path: str) -> BootLog:
    release = version = None
    if state.linux_version is not None and (banner := _BANNER.match(state.linux_version)) is not None:
        release = banner["release"]
        numbers = _RELEASE_NUMBERS.match(release)
        version = tuple(int(part) for part in numbers.group().split(".")) if numbers else None
    return BootLog(
        path=path,
        linux_version=state.linux_version,
        release=release,
        version=version,
        cmdline=state.cmdline,
        memory=state.memory,
        layout=state.layout,
        layout_size_kb=state.layout_size_kb,
        layout_line=state.layout_line,
    )
