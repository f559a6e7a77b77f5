"""/proc/vmallocinfo.

Line format (mm/vmalloc.c ``s_show`` 2.6.28..6.11, ``vmalloc_info_show`` 6.12; see
kernel-model.md §2.5)::

    0x%pK-0x%pK %7ld[ caller[ [module]]][ pages=N][ phys=%pa][ ioremap][ sparse][ vmalloc][ vmap]
        [ user][ dma-coherent][ vpages][ N<node>=<pages>...]
    0x%pK-0x%pK %7ld vm_map_ram            (a vmap_area without vm_struct; 5.10+)
    0x%pK-0x%pK %7ld unpurged vm_area      (show_purge_info, lazily freed; 5.10+)

Era differences the parser accepts: ``phys=e0300000`` without ``0x`` (``%llx``, before 4.x),
16-digit ``phys=`` on LPAE (``%pa`` of a 64-bit phys_addr_t), ``sparse`` (6.12 only), NUMA
counts, ``[module buildid]`` callers (CONFIG_STACKTRACE_BUILD_ID), zeroed (kptr_restrict=2 or
an unprivileged reader) and hashed (kptr_restrict=0) addresses.
"""

from __future__ import annotations

import gc
import re
from typing import Literal, NamedTuple

from kit.errors import ParseError

EntryKind = Literal["area", "vm_map_ram", "unpurged"]
AddressState = Literal["real", "zeroed", "hashed", "empty"]

# Flag words in the order s_show prints them (mm/vmalloc.c, 6.1 s_show / 6.12 vmalloc_info_show).
KNOWN_FLAGS: tuple[str, ...] = ("ioremap", "sparse", "vmalloc", "vmap", "user", "dma-coherent", "vpages")

_FLAG_WORDS = "|".join(re.escape(flag) for flag in KNOWN_FLAGS)

# One precompiled expression for the whole line: the fast path of the offline checker. Numbers are
# bounded to what the kernel can print (a 64-bit pointer: 16 hex digits; a long: 20 decimal digits),
# so a longer digit run is a malformed line (a ParseError), never an int() of thousands of digits.
# It is written as a head (addresses and size) and a tail (the rest) for the whole-text path below.
_HEAD = r"0x(?P<start>[0-9a-fA-F]{1,16})-0x(?P<end>[0-9a-fA-F]{1,16})\s+(?P<size>\d{1,20})"
_TAIL = (
    r"(?:"
    r"\s+(?P<special>vm_map_ram|unpurged vm_area)"
    r"|"
    r"(?:\s+(?!(?:pages|phys)=|N\d+=|(?:" + _FLAG_WORDS + r")(?:\s|$))"
    r"(?P<caller>\S+)(?:\s+\[(?P<module>[^\]\s]+)(?:\s+[0-9a-fA-F]+)?\])?)?"
    r"(?:\s+pages=(?P<pages>\d{1,20}))?"
    r"(?:\s+phys=(?:0x)?(?P<phys>[0-9a-fA-F]{1,16}))?"
    r"(?P<flags>(?:\s+(?:" + _FLAG_WORDS + r"))*)"
    r"(?P<numa>(?:\s+N\d{1,10}=\d{1,20})*)"
    r")\s*"
)
_LINE = re.compile(_HEAD + _TAIL)
_TAIL_LINE = re.compile(_TAIL)

# The whole-text path (parse_vmallocinfo): every line's head in one findall over the text, each
# distinct tail parsed once. It gives what the line loop gives, line for line, because
# * it only runs on ASCII text without \r, \v, \f, \x1c-\x1e (the only ASCII characters other than \n
#   that str.splitlines breaks at), so the lines of ``^...$`` (re.MULTILINE) are those of splitlines;
# * ``[^\S\n]`` is ``\s`` without \n and ``.`` is anything but \n, so a match stays on its line, and
#   as many matches as lines means every line matched;
# * in _LINE each of start, end and size takes its whole digit run or nothing matches (what follows each
#   is "-", whitespace then a digit, whitespace or the end), so _LINE matches a line iff _TAIL matches
#   what follows its size's digits, with the same groups.
# Anything else (blank or "#" lines, leading blanks, a malformed line) goes through the line loop.
_HEADS = re.compile(r"^0x([0-9a-fA-F]{1,16})-0x([0-9a-fA-F]{1,16})[^\S\n]+(\d{1,20})(.*)$", re.MULTILINE)
_OTHER_BREAKS = ("\r", "\x0b", "\x0c", "\x1c", "\x1d", "\x1e")
_NUMA = re.compile(r"N(\d+)=(\d+)")

_EMPTY_FLAGS: frozenset[str] = frozenset()
_flag_sets: dict[str, frozenset[str]] = {"": _EMPTY_FLAGS}


class VmallocEntry(NamedTuple):
    """One line of /proc/vmallocinfo. ``size`` is the printed size (guard page included).

    A NamedTuple, not a dataclass: read-only like a frozen one, and built from the regex groups with
    one tuple allocation (the offline checker's hot path: >= 200k lines/s).
    """

    start: int
    end: int
    size: int
    caller: str | None
    caller_module: str | None
    pages: int | None
    phys: int | None
    flags: frozenset[str]
    kind: EntryKind
    numa: dict[int, int]
    line: int


def parse_vmallocinfo(text: str, path: str = "vmallocinfo") -> list[VmallocEntry]:
    """Parse the whole file. Blank lines and ``#`` provenance lines are skipped."""
    entries = _parse_whole_text(text)
    return entries if entries is not None else _parse_lines(text, path)


# What a line's tail gives its entry: caller, module, pages, phys, flags, kind, numa counts.
_Tail = tuple[str | None, str | None, int | None, int | None, frozenset[str], EntryKind, dict[int, int]]


def _parse_whole_text(text: str) -> list[VmallocEntry] | None:
    """The common case, a file of vmallocinfo lines only: one regex search over the whole text, each
    distinct tail parsed once. None when the text is anything else (the line loop then parses it, or
    names the bad line)."""
    if not text.isascii() or any(brk in text for brk in _OTHER_BREAKS):
        return None
    enabled = gc.isenabled()
    gc.disable()  # 100k+ tuples, and records that all survive: collections meanwhile would free nothing
    try:
        return _parse_heads(text)
    finally:
        if enabled:
            gc.enable()


def _parse_heads(text: str) -> list[VmallocEntry] | None:
    heads = _HEADS.findall(text)
    if len(heads) != text.count("\n") + (not text.endswith("\n")) - (not text):
        return None
    tails: dict[str, _Tail] = {}
    for rest in {head[3] for head in heads}:
        tail = _tail(rest)
        if tail is None:
            return None
        tails[rest] = tail
    entries: list[VmallocEntry] = []
    append = entries.append
    new = tuple.__new__
    entry_type = VmallocEntry
    for number, (start, end, size, rest) in enumerate(heads, start=1):
        caller, module, pages, phys, flags, kind, numa = tails[rest]
        append(new(entry_type, (int(start, 16), int(end, 16), int(size), caller, module, pages, phys, flags, kind,
                                dict(numa), number)))   # each entry its own numa dict, as the line loop gives
    return entries


def _tail(rest: str) -> _Tail | None:
    """The fields after the size, as the line loop computes them from _LINE's groups."""
    match = _TAIL_LINE.fullmatch(rest)
    if match is None:
        return None
    special, caller, module, pages, phys, flags, numa = match.groups()
    return (
        caller,
        module,
        int(pages) if pages is not None else None,
        int(phys, 16) if phys is not None else None,
        (_flag_sets.get(flags) or _flag_set(flags)) if flags else _EMPTY_FLAGS,
        "area" if special is None else _SPECIAL_KIND[special],
        _numa_counts(numa) if numa else {},
    )


def _parse_lines(text: str, path: str) -> list[VmallocEntry]:
    """One line at a time: any text, and the ParseError naming the first bad line."""
    entries: list[VmallocEntry] = []
    append = entries.append
    fullmatch = _LINE.fullmatch
    new = tuple.__new__
    entry_type = VmallocEntry
    flag_sets = _flag_sets
    for number, raw in enumerate(text.splitlines(), start=1):
        match = fullmatch(raw)
        if match is None:
            stripped = raw.strip()
            if not stripped or stripped[0] == "#":
                continue
            match = fullmatch(stripped)
            if match is None:
                raise ParseError(path, number, f"not a vmallocinfo line: {_shorten(stripped)!r}")
        start, end, size, special, caller, module, pages, phys, flags, numa = match.groups()
        # Hot path, inlined: one tuple built in place (no keyword handling, no per-field setattr).
        entry = new(entry_type, (
            int(start, 16),
            int(end, 16),
            int(size),
            caller,
            module,
            int(pages) if pages is not None else None,
            int(phys, 16) if phys is not None else None,
            (flag_sets.get(flags) or _flag_set(flags)) if flags else _EMPTY_FLAGS,
            "area" if special is None else _SPECIAL_KIND[special],
            _numa_counts(numa) if numa else {},
            number,
        ))
        append(entry)
    return entries


_SPECIAL_KIND: dict[str, EntryKind] = {"vm_map_ram": "vm_map_ram", "unpurged vm_area": "unpurged"}


def _flag_set(words: str) -> frozenset[str]:
    """The flag words as a frozenset, shared between lines with the same words."""
    found = _flag_sets.get(words)
    if found is None:
        found = frozenset(words.split())
        _flag_sets[words] = found
    return found


def _numa_counts(numa: str) -> dict[int, int]:
    return {int(node): int(count) for node, count in _NUMA.findall(numa)}


def _shorten(line: str, limit: int = 80) -> str:
    return line if len(line) <= limit else line[:limit] + "..."


def address_state(entries: list[VmallocEntry]) -> AddressState:
    """Whether the addresses in a snapshot can be compared (kernel-model.md §2.6).

    ``zeroed``: every start and end is 0 (kptr_restrict=2, or not root). ``hashed``: %pK hashed each
    pointer on its own, so ``end - start`` disagrees with the printed size. ``real`` otherwise.
    """
    if not entries:
        return "empty"
    if all(entry.start == 0 and entry.end == 0 for entry in entries):
        return "zeroed"
    if any(entry.end - entry.start != entry.size for entry in entries):
        return "hashed"
    return "real"
