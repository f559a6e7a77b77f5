"""KTAP output of the test modules (Documentation/dev-tools/ktap.rst; docs/contracts.md §3).

::

    KTAP version 1
    1..N
    # <case>.<key>=<value>
    ok 1 layout
    not ok 2 <case> # <reason>
    ok 3 <case> # SKIP <reason>

Subtests are indented (four spaces in KUnit) and precede their parent's result line (at most
``MAX_NESTING`` levels; deeper lines are kept as unknown). The parser is lenient on purpose: unknown
lines are kept, and a plan with fewer results than announced gives
``truncated=True`` (a module that crashed, or a log cut short), never an exception.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from analysis.parsers._lines import numbered_lines
from kit.errors import ParseError

Directive = Literal["SKIP", "TODO"]

# Version, plan and test numbers longer than 20 digits are not KTAP: such a line is kept as unknown.
_VERSION = re.compile(r"(?:KTAP|TAP) version (?P<version>\d{1,20})\s*")
_PLAN = re.compile(r"1\.\.(?P<count>\d{1,20})(?:\s*#.*)?\s*")
_RESULT = re.compile(
    r"(?P<status>ok|not ok)\s+(?P<number>\d{1,20})(?:\s+-)?(?:\s+(?P<name>[^#]*?))?\s*(?:#\s*(?P<comment>.*?))?\s*"
)
_DIRECTIVE = re.compile(r"(?P<word>SKIP|TODO)\b\s*(?P<reason>.*)", re.IGNORECASE)
_DIAG = re.compile(r"#\s?(?P<text>.*)")
_KEY_VALUE = re.compile(r"(?P<key>[A-Za-z0-9_][A-Za-z0-9_.\-\[\]]*)=(?P<value>.*?)\s*")
# What the modules print (0x%px, %lu, %d): at most 16 hex or 20 decimal digits.
_INTEGER = re.compile(r"[+-]?(?:0[xX][0-9a-fA-F]{1,16}|\d{1,20})")


@dataclass(frozen=True, slots=True)
class KtapResult:
    """One ``ok``/``not ok`` line, with the diagnostics printed since the previous result."""

    number: int
    name: str
    ok: bool
    directive: Directive | None
    reason: str | None
    diagnostics: dict[str, str]
    diag_lines: tuple[str, ...]
    line: int
    subtest: KtapDocument | None = None

    @property
    def passed(self) -> bool:
        """``ok`` and not skipped."""
        return self.ok and self.directive != "SKIP"


@dataclass(frozen=True, slots=True)
class KtapDocument:
    """A parsed KTAP stream (or one indented subtest of it)."""

    path: str
    version: int | None
    plan: int | None
    results: list[KtapResult]
    diag: dict[str, str]
    diag_line_numbers: dict[str, int]
    trailing_diag: dict[str, str]
    unknown_lines: tuple[tuple[int, str], ...]
    truncated: bool
    line: int = 1

    def result(self, name: str) -> KtapResult | None:
        """The first result with this name, or ``None``."""
        return next((result for result in self.results if result.name == name), None)

    def diag_int(self, key: str) -> int | None:
        """A diagnostic as an integer (``0x..`` hexadecimal or decimal); ``None`` when absent."""
        value = self.diag.get(key)
        if value is None:
            return None
        if _INTEGER.fullmatch(value) is None:
            shown = value if len(value) <= 40 else value[:40] + "..."
            raise ParseError(self.path, self.diag_line_numbers.get(key),
                             f"{key}={shown!r} is not an integer (0x and 1-16 hex digits, or 1-20 decimal digits)")
        return _to_int(value)


def _to_int(value: str) -> int:
    """``0x1f`` as hexadecimal, anything else as decimal (``%px`` and ``%lu`` in the modules)."""
    sign = -1 if value.startswith("-") else 1
    digits = value.lstrip("+-")
    return sign * (int(digits, 16) if digits[:2] in ("0x", "0X") else int(digits, 10))


_Line = tuple[int, str, int]  # line number, text without surrounding whitespace ("" if blank), indentation


def parse_ktap(text: str, path: str = "ktap") -> KtapDocument:
    """Parse a KTAP stream. Never raises for odd content; see the module docstring."""
    lines: list[_Line] = []
    for number, raw in numbered_lines(text):
        line = raw.rstrip()
        content = line.lstrip()
        lines.append((number, content, len(line) - len(content)))  # indentation measured once per line
    return _parse_block(lines, path, indent=_first_indent(lines))


def _first_indent(lines: list[_Line]) -> int:
    return next((depth for _, content, depth in lines if content), 0)


class _Builder:
    """Mutable state while one indentation level is read."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.version: int | None = None
        self.plan: int | None = None
        self.results: list[KtapResult] = []
        self.diag: dict[str, str] = {}
        self.diag_line_numbers: dict[str, int] = {}
        self.pending: dict[str, str] = {}
        self.pending_lines: list[str] = []
        self.pending_subtest: KtapDocument | None = None
        self.unknown: list[tuple[int, str]] = []

    def add_diag(self, number: int, text: str) -> None:
        self.pending_lines.append(text)
        match = _KEY_VALUE.fullmatch(text)
        if match is not None:
            key, value = match["key"], match["value"]
            self.pending[key] = value
            self.diag[key] = value
            self.diag_line_numbers[key] = number

    def add_result(self, number: int, match: re.Match[str]) -> None:
        directive, reason = _split_comment(match["comment"])
        self.results.append(
            KtapResult(
                number=int(match["number"]),
                name=(match["name"] or "").strip(),
                ok=match["status"] == "ok",
                directive=directive,
                reason=reason,
                diagnostics=self.pending,
                diag_lines=tuple(self.pending_lines),
                line=number,
                subtest=self.pending_subtest,
            )
        )
        self.pending, self.pending_lines, self.pending_subtest = {}, [], None

    def document(self, first_line: int) -> KtapDocument:
        truncated = self.plan is not None and len(self.results) < self.plan
        return KtapDocument(
            path=self.path,
            version=self.version,
            plan=self.plan,
            results=self.results,
            diag=self.diag,
            diag_line_numbers=self.diag_line_numbers,
            trailing_diag=self.pending,
            unknown_lines=tuple(self.unknown),
            truncated=truncated,
            line=first_line,
        )


# KUnit nests suites a few levels deep; a block nested deeper than this is kept as unknown lines (a
# staircase of thousands of indentations would otherwise exhaust the stack, one recursion per level).
MAX_NESTING = 32


def _parse_block(lines: list[_Line], path: str, indent: int, level: int = 0) -> KtapDocument:
    builder = _Builder(path)
    index = 0
    while index < len(lines):
        number, content, depth = lines[index]
        if content and depth > indent:
            end = _end_of_block(lines, index, indent)
            if level < MAX_NESTING:
                builder.pending_subtest = _parse_block(lines[index:end], path, depth, level + 1)
            else:
                builder.unknown.extend((inner, text) for inner, text, _ in lines[index:end] if text)
            index = end
            continue
        _read_line(builder, number, content)
        index += 1
    return builder.document(lines[0][0] if lines else 1)


def _end_of_block(lines: list[_Line], start: int, indent: int) -> int:
    end = start
    while end < len(lines):
        _, content, depth = lines[end]
        if content and depth <= indent:
            break
        end += 1
    return end


def _read_line(builder: _Builder, number: int, line: str) -> None:
    if not line:
        return
    if (match := _RESULT.fullmatch(line)) is not None:
        builder.add_result(number, match)
    elif (match := _DIAG.fullmatch(line)) is not None:
        builder.add_diag(number, match["text"].strip())
    elif (match := _VERSION.fullmatch(line)) is not None and builder.version is None:
        builder.version = int(match["version"])
    elif (match := _PLAN.fullmatch(line)) is not None and builder.plan is None:
        builder.plan = int(match["count"])
    else:
        builder.unknown.append((number, line))


def _split_comment(comment: str | None) -> tuple[Directive | None, str | None]:
    if comment is None:
        return None, None
    match = _DIRECTIVE.fullmatch(comment)
    if match is None:
        return None, comment or None
    word: Directive = "SKIP" if match["word"].upper() == "SKIP" else "TODO"
    return word, match["reason"] or None


# dmesg prefixes: "<6>" (dmesg -r, /dev/kmsg), "[   12.345678] " timestamp, "[  T123] " caller id.
_DMESG_PREFIX = re.compile(r"(?:<\d+>)?(?:\[\s*\d+\.\d+\]\s?)?(?:\[\s*[TC]\d+\]\s?)?")


def extract_module_ktap(dmesg_text: str, module: str, path: str = "dmesg") -> str:
    """The KTAP printed by ``module``: its ``M: `` lines between ``kit: begin M`` and
    ``kit: released M`` (docs/contracts.md §2), prefixes removed, one line each.

    Lines of other modules or of the kernel inside the window are dropped. When the module was
    loaded more than once, the last window is used; a missing ``released`` marker (the guest died)
    takes everything to the end. No ``begin`` marker at all is a :class:`ParseError`.
    """
    begin, released = f"kit: begin {module}", f"kit: released {module}"
    prefix = f"{module}: "
    window: list[str] | None = None
    inside = False
    for _, raw in numbered_lines(dmesg_text):
        line = _DMESG_PREFIX.sub("", raw, count=1)
        if _is_marker(line, begin):
            window, inside = [], True
        elif inside and _is_marker(line, released):
            inside = False
        elif inside and window is not None and line.startswith(prefix):
            window.append(line[len(prefix) :])
    if window is None:
        raise ParseError(path, None, f"no 'kit: begin {module}' marker: the module was never loaded")
    # The loader prints notices with the module's prefix before init runs ("loading out-of-tree module
    # taints kernel.", kernel/module/main.c module_augment_kernel_taints): KTAP starts at its version line.
    start = next((i for i, line in enumerate(window) if _VERSION.fullmatch(line.strip())), 0)
    return "".join(f"{line}\n" for line in window[start:])


def _is_marker(line: str, marker: str) -> bool:
    return line == marker or line.startswith(marker + " ")


def extract_load_messages(dmesg_text: str, module: str) -> list[str]:
    """What the kernel printed while ``module``'s insmod ran: the lines between ``kit: begin M`` and
    ``kit: end M`` (the last such window; timestamps removed). Empty when there was no window."""
    begin, end = f"kit: begin {module}", f"kit: end {module}"
    window: list[str] = []
    inside = False
    for _, raw in numbered_lines(dmesg_text):
        line = _DMESG_PREFIX.sub("", raw, count=1).rstrip()
        if _is_marker(line, begin):
            window, inside = [], True
        elif inside and _is_marker(line, end):
            inside = False
        elif inside and line:
            window.append(line)
    return window
