"""Fuzz every parser of analysis/parsers with 10,000 damaged real captures each (see _mutate.py).

Each generated example gives every parser its own input (a window of one of its real captures, then
damaged), so the seven targets share hypothesis' cost per example. A parser returns its records or
raises ParseError (a KitError) with a one-line message naming the file; never another exception, never
more than a second for an example.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from functools import partial

import pytest
from hypothesis import given, note

from analysis.parsers import (
    BootLog,
    KtapDocument,
    address_state,
    extract_load_messages,
    extract_module_ktap,
    meminfo_summary,
    parse_boot_log,
    parse_ktap,
    parse_meminfo,
    parse_proc_modules,
    parse_sections,
    parse_vmallocinfo,
)
from kit.errors import KitError, ParseError
from tests.fuzz._mutate import (
    EXAMPLES,
    FUZZ,
    PROGRAMS,
    Choices,
    as_text,
    clean,
    damaged_from,
    read_seeds,
    staircase,
)

pytestmark = pytest.mark.fuzz

CAPTURES = ["captures/*.txt"]  # board captures: every kind of file mixed with prose and logs
BOOT = read_seeds(["runs/*/boot.log", "runs/*/dmesg.txt", "live/*/dmesg.txt", "bundles/*/boot.log",
                   "qemu-virt-*/boot.log", "qemu-virt-*/dmesg.txt", *CAPTURES])
VMALLOCINFO = read_seeds(["runs/*/vmallocinfo/*.txt", "live/*/vmallocinfo/*.txt", "bundles/*/vmallocinfo.txt",
                          "qemu-virt-*/vmallocinfo*", *CAPTURES])
MODULES = read_seeds(["runs/*/modules/*.txt", "live/*/modules/*.txt", "bundles/*/modules.txt",
                      "qemu-virt-*/modules*", *CAPTURES])
MEMINFO = read_seeds(["runs/*/meminfo.txt", "live/*/meminfo.txt", "bundles/*/meminfo.txt", "qemu-virt-*/meminfo*",
                      *CAPTURES])
SECTIONS = read_seeds(["runs/*/sections/*.txt", "live/*/sections/*.txt", "qemu-virt-*/sections*"])
KTAP = read_seeds(["runs/*/ktap/*.ktap"])
DMESG = read_seeds(["runs/*/dmesg.txt", "live/*/dmesg.txt"])

RUNS: Counter[str] = Counter()  # inputs given to each target


def expect_parse_error(outcome: object, path: str) -> None:
    """A parser's own error is a ParseError that names the file it was given."""
    if isinstance(outcome, KitError):
        assert isinstance(outcome, ParseError) and str(outcome).startswith(path), outcome


def walk_ktap(document: KtapDocument) -> None:
    """Everything a check reads from a document: results, subtests and every diagnostic as an integer."""
    for key in document.diag:
        expect_parse_error(clean(partial(document.diag_int, key)), document.path)
    for result in document.results:
        document.result(result.name)
        assert isinstance(result.passed, bool)
        if result.subtest is not None:
            walk_ktap(result.subtest)


def boot_log(text: str) -> None:
    assert isinstance(clean(lambda: parse_boot_log(text, "boot.log")), BootLog)  # never raises, by contract


def vmallocinfo(text: str) -> None:
    outcome = clean(lambda: parse_vmallocinfo(text, "vmallocinfo.txt"))
    expect_parse_error(outcome, "vmallocinfo.txt:")
    if isinstance(outcome, list):
        address_state(outcome)


def proc_modules(text: str) -> None:
    expect_parse_error(clean(lambda: parse_proc_modules(text, "modules.txt")), "modules.txt:")


def meminfo(text: str) -> None:
    outcome = clean(lambda: parse_meminfo(text, "meminfo.txt"))
    expect_parse_error(outcome, "meminfo.txt:")
    if isinstance(outcome, dict):
        meminfo_summary(outcome)


def sections(text: str) -> None:
    expect_parse_error(clean(lambda: parse_sections(text, "sections.txt")), "sections.txt:")


def ktap(text: str) -> None:
    outcome = clean(lambda: parse_ktap(text, "kit.ktap"))
    assert isinstance(outcome, KtapDocument)  # lenient by contract: odd lines are kept, never an error
    walk_ktap(outcome)


def module_ktap(text: str) -> None:
    assert all(isinstance(line, str) for line in extract_load_messages(text, "kit_kmap"))  # never raises
    for module in ("kit_vmalloc", "kit_alloc"):
        outcome = clean(partial(extract_module_ktap, text, module, "dmesg.txt"))
        expect_parse_error(outcome, "dmesg.txt")
        if isinstance(outcome, str):
            walk_ktap(parse_ktap(outcome, f"{module}.ktap"))


STAIRCASE = 32  # one input in 32 also gets a 1000-1500 deep staircase of indentation (KTAP nesting)
# name, seeds, window (lines), staircase one time in, check
TARGETS: list[tuple[str, list[bytes], int, int, Callable[[str], None]]] = [
    ("parse_boot_log", BOOT, 120, 0, boot_log),
    ("parse_vmallocinfo", VMALLOCINFO, 80, 0, vmallocinfo),
    ("parse_proc_modules", MODULES, 80, 0, proc_modules),
    ("parse_meminfo", MEMINFO, 80, 0, meminfo),
    ("parse_sections", SECTIONS, 80, 0, sections),
    ("parse_ktap", KTAP, 80, STAIRCASE, ktap),
    ("extract_module_ktap+extract_load_messages", DMESG, 200, 0, module_ktap),
]


@FUZZ
@given(PROGRAMS)
def _fuzz_parsers(choices: Choices) -> None:
    for name, seeds, lines, stairs, check in TARGETS:
        data = damaged_from(choices, seeds, lines)
        if stairs and choices.below(stairs) == 0:
            data = staircase(data, choices)
        text = as_text(data)
        try:
            check(text)
        except BaseException:
            note(f"{name} input: {text!r}")  # formatted only for a failing example: repr() costs
            raise
        RUNS[name] += 1


def test_fuzz_parsers() -> None:
    RUNS.clear()
    _fuzz_parsers()
    assert all(RUNS[name] >= EXAMPLES for name, *_ in TARGETS), RUNS
