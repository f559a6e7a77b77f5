"""/proc/modules.

Line format (``m_show``: kernel/module.c 2.6..6.0, kernel/module/procfs.c 6.1+; kernel-model.md §3.3)::

    <name> <size> <refcount> <users> <Live|Loading|Unloading> 0x<address>[ (<taints>)]

``print_unload_info`` prints ``" %i "`` then one ``"<user>,"`` per using module, ``"[permanent],"``
for a module with init but no exit, or ``"-"`` when it printed nothing. Without
CONFIG_MODULE_UNLOAD it prints ``" - -"`` (refcount unknown). ``module_flags`` prints the taint
letters in parentheses, followed by ``+`` (Loading) or ``-`` (Unloading); the state marks are not
kept in ``taints`` because ``state`` already says it. The address is ``0x%px`` (``0x%pK`` before
4.15, hashed or zeroed for unprivileged readers); an all-zero address becomes ``None``, and so does
``0x(ptrval)`` (``%pK`` read before the pointer-hash key was ready: the value is unknown).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from analysis.parsers._lines import data_lines
from kit.errors import ParseError

_PERMANENT = "[permanent]"

# Numbers are bounded to what m_show can print (%u, %i: 10 digits; %px: 16 hex digits; 20 allowed), so a
# longer digit run is a malformed line, never an int() of thousands of digits.
_LINE = re.compile(
    r"(?P<name>\S+)\s+(?P<size>\d{1,20})\s+(?P<refcount>-?\d{1,20}|-)\s+(?P<users>\S+)"
    r"\s+(?P<state>Live|Loading|Unloading)"
    r"(?:\s+0x(?:(?P<address>[0-9a-fA-F]{1,16})|\(_*ptrval_*\)))?"
    r"(?:\s+\((?P<taints>[A-Za-z]*)[+-]?\))?\s*"
)


@dataclass(frozen=True, slots=True)
class ProcModule:
    """One loaded module as /proc/modules shows it."""

    name: str
    size: int
    refcount: int | None
    users: tuple[str, ...]
    permanent: bool
    state: str
    address: int | None
    taints: str
    line: int


def parse_proc_modules(text: str, path: str = "modules") -> list[ProcModule]:
    """Parse /proc/modules. Blank lines and ``#`` provenance lines are skipped."""
    modules: list[ProcModule] = []
    for number, line in data_lines(text):
        match = _LINE.fullmatch(line)
        if match is None:
            raise ParseError(path, number, f"not a /proc/modules line: {line[:80]!r}")
        modules.append(_module_from_match(match, number))
    return modules


def is_proc_modules_line(line: str) -> bool:
    """The line (surrounding whitespace ignored) is one line of /proc/modules."""
    return _LINE.fullmatch(line.strip()) is not None


def _module_from_match(match: re.Match[str], number: int) -> ProcModule:
    refcount = match["refcount"]
    users_field = match["users"]
    users = tuple(user for user in users_field.split(",") if user and user not in ("-", _PERMANENT))
    address = match["address"]
    return ProcModule(
        name=match["name"],
        size=int(match["size"]),
        refcount=None if refcount == "-" else int(refcount),
        users=users,
        permanent=_PERMANENT in users_field,
        state=match["state"],
        address=(int(address, 16) or None) if address is not None else None,
        taints=match["taints"] or "",
        line=number,
    )
