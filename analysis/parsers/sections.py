"""/sys/module/<M>/sections/*: section name -> load address.

Two spellings are accepted, one per line:

* the bundle's ``sections/M.txt``: ``<section name> 0x<addr>`` (docs/contracts.md §2);
* ``grep . /sys/module/M/sections/.*``: ``/sys/module/M/sections/.text:0xbf000000``.

The kernel prints each attribute as ``0x%px`` (``module_sect_read``: kernel/module.c 5.8..6.0,
kernel/module/sysfs.c 6.1+; ``module_sect_show`` with ``%pK`` before 5.8), zeroed for readers
without ``kallsyms_show_value``; zero is kept as 0.
The runner's glob also visits ``.`` and ``..`` (directories, no content): such lines are skipped.
"""

from __future__ import annotations

import re

from analysis.parsers._lines import data_lines
from kit.errors import ParseError

# An address is a pointer (0x%px: at most 16 hex digits); a longer one is a malformed line.
_PLAIN = re.compile(r"(?P<name>\S+)\s+(?:0x)?(?P<addr>[0-9a-fA-F]{1,16})")
_GREP = re.compile(r"(?:\S*/)?sections/(?P<name>[^:/\s]+):\s*(?:0x)?(?P<addr>[0-9a-fA-F]{1,16})")
_DIRECTORY_ENTRY = re.compile(r"(?:\S*/)?\.\.?:?")


def parse_sections(text: str, path: str = "sections") -> dict[str, int]:
    """Section name -> address. Conflicting duplicates are an error; exact repeats are not."""
    sections: dict[str, int] = {}
    for number, line in data_lines(text):
        if _DIRECTORY_ENTRY.fullmatch(line):
            continue
        match = _GREP.fullmatch(line) or _PLAIN.fullmatch(line)
        if match is None:
            raise ParseError(path, number, f"expected '<section> 0x<address>': {line[:80]!r}")
        name, address = match["name"], int(match["addr"], 16)
        if sections.get(name, address) != address:
            raise ParseError(path, number, f"section {name} listed twice with different addresses")
        sections[name] = address
    return sections
