"""Parsers for what a target produces: /proc files, the boot console and KTAP.

Pure functions over text. Each takes the text and a path label used in messages, returns read-only
records (frozen dataclasses; VmallocEntry is a NamedTuple for speed; ``None`` where a value is
absent) and raises :class:`kit.errors.ParseError` naming the file and line when the input is
malformed. Nothing here prints, reads files or exits.
"""

from analysis.parsers.bootlog import BootLog, MemoryLine, parse_boot_log
from analysis.parsers.ktap import KtapDocument, KtapResult, extract_load_messages, extract_module_ktap, parse_ktap
from analysis.parsers.meminfo import MeminfoSummary, meminfo_summary, parse_meminfo
from analysis.parsers.modules import ProcModule, parse_proc_modules
from analysis.parsers.sections import parse_sections
from analysis.parsers.vmallocinfo import KNOWN_FLAGS as KNOWN_VMALLOC_FLAGS
from analysis.parsers.vmallocinfo import VmallocEntry, address_state, parse_vmallocinfo

parse_modules = parse_proc_modules  # the name used in docs/contracts.md §4

__all__ = [
    "KNOWN_VMALLOC_FLAGS",
    "BootLog",
    "KtapDocument",
    "KtapResult",
    "MeminfoSummary",
    "MemoryLine",
    "ProcModule",
    "VmallocEntry",
    "address_state",
    "extract_load_messages",
    "extract_module_ktap",
    "meminfo_summary",
    "parse_boot_log",
    "parse_ktap",
    "parse_meminfo",
    "parse_modules",
    "parse_proc_modules",
    "parse_sections",
    "parse_vmallocinfo",
]
