"""Captures a bring-up engineer copied off a board and pasted (a forum post, an e-mail, a ticket, a journal).

:func:`normalize_paste` undoes the wrapping, so that every parser sees the text the kernel printed:

* a paste whose newlines became literal ``\\n`` (one long line; JSON-escaped with ``\\t``, ``\\"``; or
  rsyslog's ``#012``/``#011``): a line holding two or more such escapes, or a text of one line holding one,
  is split back into lines (a JSON string's surrounding quotes are dropped);
* CRLF (and CR, and a serial console's CRCRLF) line ends become LF;
* per line: mail quoting (``>``, ``> ``, ``>> ``, ``> > ``, any depth), a syslog or journal prefix
  (``Jan 12 10:11:12 host kernel: ``; ``Jan 12 10:11:12.123456`` (journalctl short-precise), an ISO/RFC 3339
  time ``2024-01-12T10:11:12.123456+00:00 host kernel: `` (short-iso, rsyslog), an RFC 5424 ``<6>1 ...
  host kernel - - - ``, journalctl short-full's weekday and zone, OpenWrt logread's ``Wed Jan 12 10:11:12
  2024 kern.notice kernel: ``), and indentation in front of a printk stamp ``[    0.000000]`` (the kernel never
  prints any there). journalctl's ``-- Logs begin at ...``, ``-- Boot <id> --``, ``-- Reboot --`` lines become
  blank (blank, not removed: line numbers stay those of the paste);
* below the leading ``#`` provenance lines, each block of lines between blank lines loses the indentation
  all its lines share (``textwrap.dedent`` per block: a block indented by 4 spaces or a tab as a whole is
  moved left; the deeper indentation of a layout block's region lines inside it is kept).

It changes nothing in a clean capture (a search of the whole text finds nothing to undo: no per-line work),
and it is idempotent: it applies the steps until the text no longer changes.

:func:`split_paste` cuts one pasted file into the bundle files (``boot.log``, ``vmallocinfo.txt``,
``meminfo.txt``, ``modules.txt``, ``cmdline.txt``) by the line parsers' own rules. Every part keeps each of
its lines at its line number in the paste (the other lines are blank), so a parser's "line N" is the paste's.

A pointer printed as ``0x(ptrval)`` is unknown: :func:`unknown_pointers_as_zero` reads it in vmallocinfo as
the kernel's "not shown" spelling (``0x00000000``, kptr_restrict=2), so the checks take their zeroed path.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from analysis.parsers.bootlog import parse_boot_log
from analysis.parsers.meminfo import is_meminfo_line
from analysis.parsers.modules import is_proc_modules_line
from analysis.parsers.vmallocinfo import parse_vmallocinfo
from kit.errors import ParseError

BOOT_LOG, VMALLOCINFO, MEMINFO, MODULES, CMDLINE = (
    "boot.log", "vmallocinfo.txt", "meminfo.txt", "modules.txt", "cmdline.txt")
PARTS = (BOOT_LOG, VMALLOCINFO, MEMINFO, MODULES, CMDLINE)

_MAX_PASSES = 4  # one pass undoes everything but a wrapping hidden by another; the last pass finds nothing

_MONTH = r"(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)"
_WEEKDAY = r"(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun)"
# What a wrapping leaves at a line start; a text without any (nor a CR, a "\n" or a "#012") is returned as
# it is. The first characters of these, searched first: one scan of a 100k-line vmallocinfo costs ~3 ms.
_WRAPPED_START = re.compile(
    r"^(?:[ \t>]|-- |<\d{1,3}>1|\d{4}-\d\d-\d\d[T ]|" + _WEEKDAY + r"\b|" + _MONTH + r"\b)", re.MULTILINE)
_FIRST_CHARS = " \t>-<JFMASONDTW12"
_CANDIDATE_START = re.compile(r"\n[" + re.escape(_FIRST_CHARS) + "]")
_LINE_END = re.compile(r"\r+\n?")
_NEWLINE_ESCAPE = re.compile(r"\\n|#012")
_ESCAPE = re.compile(r'\\r\\n|\\n|\\r|\\t|\\"|#012|#011')
_UNESCAPED = {"\\r\\n": "\n", "\\n": "\n", "\\r": "", "\\t": "\t", '\\"': '"', "#012": "\n", "#011": "\t"}
_JSON_STRING = re.compile(r'\s*"(?P<body>.*)",?\s*')

_QUOTE = re.compile(r"(?:[ \t]*>)+ ?")
_SYSLOG = re.compile(
    r"[ \t]*(?:<\d{1,3}>1\s)?"  # RFC 5424: <PRI>VERSION
    r"(?:" + _WEEKDAY + r",?\s+)?"  # journalctl short-full, OpenWrt logread
    r"(?:" + _MONTH + r"\s+\d{1,2}\s+\d\d:\d\d:\d\d(?:[.,]\d{1,9})?(?:\s+\d{4})?"  # BSD syslog, short-precise
    r"|\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\d(?:[.,]\d{1,9})?(?:\s?(?:Z|[+-]\d\d:?\d\d|[A-Z]{2,5}))?)"  # ISO, RFC 3339
    r"\s+(?:\S+\s+)?(?:[a-z]+\.[a-z]+\s+)?"  # host, busybox/OpenWrt facility.level
    r"kernel(?::|\s+-\s+-\s+-)\s?"
)
_STAMP_INDENT = re.compile(r"[ \t]+(?=(?:<\d{1,3}>)?\[\s*\d+\.\d+\])")
_JOURNAL_MARK = re.compile(r"-- (?:Logs begin at|Journal begins at|Boot [0-9a-f]{32}|Reboot|No entries)\b.*")

# --- normalize_paste -------------------------------------------------------------------------------


def normalize_paste(text: str) -> str:
    """``text`` without the wrapping a paste adds (module docstring); a clean capture comes back unchanged."""
    for _ in range(_MAX_PASSES):
        if not _maybe_wrapped(text):
            return text
        done = _normalize_once(text)
        if done == text:
            return text
        text = done
    return text


def _maybe_wrapped(text: str) -> bool:
    """Cheap scans first (the offline checker reads 100k-line files through here)."""
    if "\r" in text or ("\\" in text and "\\n" in text) or ("#" in text and "#012" in text):
        return True
    if text[:1] not in _FIRST_CHARS and _CANDIDATE_START.search(text) is None:
        return False
    return _WRAPPED_START.search(text) is not None


def _normalize_once(text: str) -> str:
    if "\\n" in text or "#012" in text:
        text = _unescape(text)
    if "\r" in text:
        text = _LINE_END.sub("\n", text)
    lines = [_unwrap_line(line) for line in text.split("\n")]
    return "\n".join(_dedent_blocks(lines))


def _unescape(text: str) -> str:
    lines = text.split("\n")
    one_line = sum(1 for line in lines if line.strip()) <= 1
    return "\n".join(_unescape_line(line) if _is_escaped(line, one_line) else line for line in lines)


def _is_escaped(line: str, one_line: bool) -> bool:
    escapes = len(_NEWLINE_ESCAPE.findall(line))
    return escapes >= 2 or (one_line and escapes >= 1)


def _unescape_line(line: str) -> str:
    quoted = _JSON_STRING.fullmatch(line)
    body = quoted["body"] if quoted is not None else line
    return _ESCAPE.sub(lambda match: _UNESCAPED[match.group()], body)


def _unwrap_line(line: str) -> str:
    """The line without its quoting, syslog/journal prefixes and indentation before a printk stamp."""
    while (match := _QUOTE.match(line) or _SYSLOG.match(line) or _STAMP_INDENT.match(line)) is not None:
        line = line[match.end():]
    return "" if _JOURNAL_MARK.fullmatch(line.strip()) else line


def _dedent_blocks(lines: list[str]) -> list[str]:
    """Each block (lines between blank ones) below the leading ``#`` provenance lines, dedented."""
    header = 0
    while header < len(lines) and lines[header].startswith("#"):
        header += 1
    out, block = lines[:header], []
    for line in lines[header:]:
        if line.strip():
            block.append(line)
            continue
        out += _dedent(block)
        out.append(line)
        block = []
    return out + _dedent(block)


def _dedent(block: list[str]) -> list[str]:
    indents = [line[: len(line) - len(line.lstrip(" \t"))] for line in block]
    common = min(indents, key=len, default="")
    while common and not all(indent.startswith(common) for indent in indents):
        common = common[:-1]
    return [line[len(common):] for line in block] if common else block


# --- pointers ----------------------------------------------------------------------------------------

_PTRVAL = re.compile(r"0x\(_*ptrval_*\)")


def unknown_pointers_as_zero(text: str) -> str:
    """vmallocinfo text with ``0x(ptrval)`` (``%pK`` before the hash key was ready; ``(____ptrval____)`` on
    64-bit) spelled as the kernel spells a pointer it does not show: zero. The parser then reads the
    snapshot as ``zeroed`` and the address checks are skipped, as for kptr_restrict=2."""
    return _PTRVAL.sub("0x00000000", text) if "(" in text and "ptrval" in text else text  # "(": one memchr


# --- split_paste -------------------------------------------------------------------------------------

# A shell command line, with or without its prompt: "root@rpi:/proc# cat modules", "/ # cat /proc/cmdline",
# "$ sudo cat /proc/vmallocinfo", "[root@board ~]# dmesg", "cat /proc/meminfo".
_COMMAND = re.compile(
    r"(?:(?:\[[^\]]*\]|\S*)\s?[#$%>]\s*)?(?:sudo\s+)?"
    r"(?P<command>cat|dmesg|journalctl|logread|head|tail|grep|less|more)(?:\s+(?P<arguments>.*))?"
)
_VMALLOC_START = re.compile(r"0x(?:[0-9a-fA-F]+|\(_*ptrval_*\))-0x")
_STAMPED = re.compile(r"^(?:<\d{1,3}>)?\[\s*\d+\.\d+\]", re.MULTILINE)
# meminfo keys taken even alone; any other "Key: number" line counts only next to another one (a boot
# line such as "CPU: 1" is not a /proc/meminfo dump).
_MEMINFO_KEYS = frozenset({"MemTotal", "MemFree", "LowTotal", "HighTotal", "VmallocTotal", "VmallocUsed",
                           "VmallocChunk", "CmaTotal"})


def split_paste(text: str) -> dict[str, str]:
    """One pasted capture cut into bundle files: file name -> text, only the parts it holds.

    Lines are classified after :func:`normalize_paste`: a /proc/vmallocinfo, /proc/modules or /proc/meminfo
    line by its parser's rule; a shell prompt line (``# cat /proc/meminfo``) and ``#`` comment lines by
    nobody; the line after a ``cat /proc/cmdline`` prompt is the command line (else the last boot's
    ``Kernel command line:``); everything else is the boot log, kept when it holds a printk-stamped line or
    something the boot-log parser reads (banner, layout block, ``Memory:`` line, command line).
    """
    lines = normalize_paste(text).splitlines()
    kinds = _meminfo_in_groups(lines, _classify(lines))
    parts = {name: _part(lines, kinds, name) for name in (VMALLOCINFO, MEMINFO, MODULES) if name in kinds}
    boot = _part(lines, kinds, BOOT_LOG)
    boot_log = parse_boot_log(boot)
    if _STAMPED.search(boot) or boot_log.linux_version or boot_log.layout or boot_log.memory or boot_log.cmdline:
        parts[BOOT_LOG] = boot
    cmdline = [line.strip() for line, kind in zip(lines, kinds, strict=True) if kind == CMDLINE]
    if cmdline or (boot_log.cmdline is not None and BOOT_LOG in parts):
        parts[CMDLINE] = (cmdline[-1] if cmdline else boot_log.cmdline or "") + "\n"
    return {name: parts[name] for name in PARTS if name in parts}


def _part(lines: Sequence[str], kinds: Sequence[str | None], name: str) -> str:
    return "".join(f"{line}\n" if kind == name else "\n" for line, kind in zip(lines, kinds, strict=True))


def _classify(lines: Sequence[str]) -> list[str | None]:
    kinds: list[str | None] = []
    after_cmdline_prompt = False
    for line in lines:
        stripped = line.strip()
        kind: str | None = None
        if stripped and (command := _COMMAND.fullmatch(stripped)) is not None:
            after_cmdline_prompt = _reads_cmdline(command)
        elif stripped:
            if stripped.startswith("#"):
                kind = None
            elif after_cmdline_prompt:
                kind = CMDLINE
            else:
                kind = _data_kind(stripped)
            after_cmdline_prompt = False
        kinds.append(kind)
    return kinds


def _reads_cmdline(command: re.Match[str]) -> bool:
    arguments = (command["arguments"] or "").split()
    return command["command"] == "cat" and bool(arguments) and arguments[-1].rsplit("/", 1)[-1] == "cmdline"


def _data_kind(line: str) -> str:
    if _VMALLOC_START.match(line) and is_vmallocinfo_line(line):
        return VMALLOCINFO
    if is_proc_modules_line(line):
        return MODULES
    if is_meminfo_line(line):
        return MEMINFO
    return BOOT_LOG


def is_vmallocinfo_line(line: str) -> bool:
    """The line (surrounding whitespace ignored) is one /proc/vmallocinfo line, ``0x(ptrval)`` ones too."""
    try:
        return len(parse_vmallocinfo(unknown_pointers_as_zero(line.strip()))) == 1
    except ParseError:
        return False


def _meminfo_in_groups(lines: Sequence[str], kinds: list[str | None]) -> list[str | None]:
    """A lone ``Key: number`` line is a meminfo line only for the keys the checks read."""
    for index, kind in enumerate(kinds):
        if kind != MEMINFO:
            continue
        neighbours = kinds[max(index - 1, 0):index] + kinds[index + 1:index + 2]
        if MEMINFO not in neighbours and lines[index].strip().split(":", 1)[0] not in _MEMINFO_KEYS:
            kinds[index] = BOOT_LOG
    return kinds
