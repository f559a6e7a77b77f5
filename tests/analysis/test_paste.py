"""Pasted captures (analysis/parsers/paste.py): the wrapping a forum post, an e-mail, a ticket or a journal adds.

Every case starts from a REAL capture (tests/data/captures, the same files as shared/data/captures, or a
bundle of tests/data/bundles), applies one wrapping the way a paste does, and asserts that what the parsers
read after normalize_paste equals what they read from the clean capture. Each form also has a test that
bypasses normalize_paste and shows the wrapped text parsing differently (or not at all), so these tests can
fail. The one synthetic input is said so where it is built: vmallocinfo/modules with ``0x(ptrval)``
written over a real capture's addresses (no real capture with them was found; the boot log with
``0x(ptrval)`` is real: tests/data/captures/arm-licheepi-nano-f1c100s-32mb-4.15-ptrval-indented.txt).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from analysis.model.banner import stated_inputs
from analysis.parsers import parse_boot_log, parse_meminfo, parse_proc_modules, parse_vmallocinfo
from analysis.parsers.paste import normalize_paste, split_paste
from analysis.verify.bundle import load_bundle
from analysis.verify.verify import verify_bundle
from kit.errors import ParseError, UserError
from tests.analysis.test_parsers_helpers import (
    ALLWINNER,
    CAPTURES,
    DATA,
    FULLHAN,
    GRANITE2,
    KASAN,
    RASPBIAN,
    VEXPRESS,
    X86_38,
    capture_sections,
    read_capture,
)

REPO = Path(__file__).resolve().parent.parent.parent
BUNDLES = DATA / "bundles"
SHARED_CAPTURES = REPO.parent / "shared" / "data" / "captures"

LICHEE = "arm-licheepi-nano-f1c100s-32mb-4.15-ptrval-indented.txt"

# Files that are themselves pasted forms: the kasan-dev mail keeps its "> " quoting; the Lichee Pi page
# keeps its 4-space reStructuredText indentation. Every other data file is clean.
PASTED_FORMS = {f"captures/{KASAN}", "kasan-5.4.24/boot.log", f"captures/{LICHEE}"}


def body(name: str) -> str:
    """A capture without its ``#`` provenance lines: what an engineer would paste."""
    return "".join(line for line in read_capture(name).splitlines(keepends=True) if not line.startswith("#"))


# --- the wrappings ---------------------------------------------------------------------------------

def per_line(prefix: str, blank: str = "") -> Callable[[str], str]:
    def wrap(text: str) -> str:
        return "".join(f"{prefix}{line}\n" if line.strip() else f"{blank}\n" for line in text.splitlines())
    return wrap


def syslog(prefix: str) -> Callable[[str], str]:
    """A syslog file: every kernel line behind ``prefix``, the printk stamp kept."""
    return per_line(prefix, blank=prefix.rstrip())


def journal(prefix: str) -> Callable[[str], str]:
    """journalctl -k: header line, ``prefix`` and the message without its printk stamp and level."""
    stamp = re.compile(r"^(?:<\d+>)?\[\s*\d+\.\d+\] ?")

    def wrap(text: str) -> str:
        lines = [f"{prefix}{stamp.sub('', line)}\n" for line in text.splitlines() if line.strip()]
        return ("-- Logs begin at Fri 2024-01-12 10:00:01 UTC, end at Fri 2024-01-12 10:20:02 UTC. --\n"
                "-- Boot 0f3c2a6e4b8d4c1f9e7a5b3d1c0e2f4a --\n" + "".join(lines)
                + "Jan 12 10:11:13 myboard systemd[1]: Started Journal Service.\n")
    return wrap


def escaped(text: str) -> str:
    """The newlines (and tabs) became literal ``\\n`` (``\\t``): one long line."""
    return text.rstrip("\n").replace("\t", "\\t").replace("\n", "\\n") + "\n"


def json_string(text: str) -> str:
    """A ticket system's JSON export: one quoted string with ``\\n`` escapes."""
    return json.dumps(text, ensure_ascii=False) + "\n"


FORMS: dict[str, Callable[[str], str]] = {
    "indent4": per_line("    "),
    "tab": per_line("\t"),
    "quote": per_line("> ", blank=">"),
    "quote2": per_line(">> ", blank=">>"),
    "quote_nospace": per_line(">", blank=">"),
    "quote_indented": per_line(">   ", blank=">"),
    "crlf": lambda text: text.replace("\n", "\r\n"),
    "crcrlf": lambda text: text.replace("\n", "\r\r\n"),
    "escaped": escaped,
    "json": json_string,
}
KERNEL_LOG_FORMS: dict[str, Callable[[str], str]] = {
    "syslog": syslog("Jan 12 10:11:12 myboard kernel: "),
    "syslog_padded_day": syslog("Jan  2 10:11:12 myboard kernel: "),
    "syslog_busybox": syslog("Jan 12 10:11:12 myboard kern.notice kernel: "),
    "syslog_openwrt": syslog("Fri Jan 12 10:11:12 2024 kern.notice kernel: "),
    "syslog_rfc3339": syslog("2024-01-12T10:11:12.123456+00:00 myboard kernel: "),
    "syslog_rfc5424": syslog("<6>1 2024-01-12T10:11:12.123456Z myboard kernel - - - "),
    "journal": journal("Jan 12 10:11:12 myboard kernel: "),
    "journal_precise": journal("Jan 12 10:11:12.123456 myboard kernel: "),
    "journal_iso": journal("2024-01-12T10:11:12+0000 myboard kernel: "),
    "journal_full": journal("Fri 2024-01-12 10:11:12 UTC myboard kernel: "),
}


# --- what the parsers read -------------------------------------------------------------------------

def boot_facts(text: str) -> tuple[object, ...]:
    """The boot log's banner, command line, Memory: line and layout block (line numbers left out)."""
    boot = parse_boot_log(text)
    memory = boot.memory
    return (boot.release, boot.linux_version, boot.cmdline, boot.layout, boot.layout_size_kb,
            None if memory is None else (memory.available_kb, memory.total_kb, memory.fields))


def vmalloc_facts(text: str) -> list[tuple[object, ...]]:
    return [tuple(entry) for entry in parse_vmallocinfo(text)]


def modules_facts(text: str) -> list[tuple[object, ...]]:
    return [(m.name, m.size, m.refcount, m.users, m.permanent, m.state, m.address, m.taints, m.line)
            for m in parse_proc_modules(text)]


BOOT_LOGS = {
    ALLWINNER: body(ALLWINNER),
    VEXPRESS: body(VEXPRESS),
    "fullhan (1) dmesg": capture_sections(read_capture(FULLHAN))[1],
    "granite2 (1) console": capture_sections(read_capture(GRANITE2))[1],
    X86_38: body(X86_38),
}
PROC_FILES: dict[str, tuple[str, Callable[[str], object]]] = {
    "fullhan (3) vmallocinfo": (capture_sections(read_capture(FULLHAN))[3], vmalloc_facts),
    "hashed-6.1 vmallocinfo": ((BUNDLES / "hashed-6.1" / "vmallocinfo.txt").read_text(), vmalloc_facts),
    "fullhan (2) meminfo": (capture_sections(read_capture(FULLHAN))[2], parse_meminfo),
    "granite2 (2) modules": (capture_sections(read_capture(GRANITE2))[2], modules_facts),
}


def test_the_clean_captures_say_something() -> None:
    """The comparisons below are not between two empty results."""
    for name, text in BOOT_LOGS.items():
        assert boot_facts(text)[3], name
    for name, (text, facts) in PROC_FILES.items():
        assert facts(text), name


@pytest.mark.parametrize("form", sorted(FORMS))
@pytest.mark.parametrize("name", sorted(BOOT_LOGS))
def test_boot_log_in_every_paste_form(name: str, form: str) -> None:
    clean = BOOT_LOGS[name]
    assert boot_facts(normalize_paste(FORMS[form](clean))) == boot_facts(clean)


@pytest.mark.parametrize("form", sorted(KERNEL_LOG_FORMS))
@pytest.mark.parametrize("name", sorted(BOOT_LOGS))
def test_boot_log_in_every_syslog_and_journal_form(name: str, form: str) -> None:
    clean = BOOT_LOGS[name]
    assert boot_facts(normalize_paste(KERNEL_LOG_FORMS[form](clean))) == boot_facts(clean)


@pytest.mark.parametrize("form", sorted(FORMS))
@pytest.mark.parametrize("name", sorted(PROC_FILES))
def test_proc_files_in_every_paste_form(name: str, form: str) -> None:
    """Line numbers too: no form but a one-line blob changes them, and that blob starts at line 1."""
    clean, facts = PROC_FILES[name]
    assert facts(normalize_paste(FORMS[form](clean))) == facts(clean)


@pytest.mark.parametrize("form", sorted(FORMS) + sorted(KERNEL_LOG_FORMS))
def test_normalize_is_idempotent(form: str) -> None:
    wrap = {**FORMS, **KERNEL_LOG_FORMS}[form]
    for text in (*BOOT_LOGS.values(), *(text for text, _ in PROC_FILES.values())):
        once = normalize_paste(wrap(text))
        assert normalize_paste(once) == once


# --- each form would fail without normalize_paste --------------------------------------------------

def misread(facts: Callable[[str], object], wrapped: str, clean: str) -> bool:
    """The parser refuses the wrapped text, or reads something else from it (">galcore" as a module name)."""
    try:
        return facts(wrapped) != facts(clean)
    except ParseError:
        return True


def test_indentation_hides_the_banner_and_the_block_without_normalization() -> None:
    """A forum's code block (4 spaces) or a tab: the printk stamp is no longer at the line start."""
    clean = BOOT_LOGS[ALLWINNER]
    for form in ("indent4", "tab"):
        wrapped = FORMS[form](clean)
        assert boot_facts(wrapped)[:1] == (None,) and boot_facts(wrapped)[3] == {}, form
        assert boot_facts(normalize_paste(wrapped)) == boot_facts(clean)


def test_quoting_breaks_the_proc_parsers_and_an_indented_quote_the_boot_log() -> None:
    """The boot-log parser strips "> " itself; /proc/vmallocinfo, meminfo and modules do not, and a
    quoted code block (">   [    0.000000] ...", an e-mail reply to a pasted log) defeats the boot log too."""
    for form in ("quote", "quote2", "quote_nospace"):
        for name, (clean, facts) in PROC_FILES.items():
            assert misread(facts, FORMS[form](clean), clean), (name, form)
            assert facts(normalize_paste(FORMS[form](clean))) == facts(clean), (name, form)
    clean = BOOT_LOGS[VEXPRESS]
    wrapped = FORMS["quote_indented"](clean)
    assert boot_facts(wrapped) != boot_facts(clean)
    assert boot_facts(normalize_paste(wrapped)) == boot_facts(clean)


def test_crcrlf_line_ends_cut_the_layout_block_without_normalization() -> None:
    """Plain CRLF is already read by str.splitlines(); a serial console seen through a terminal that adds
    its own CR gives CRCRLF, one empty line after each: the layout block ends after its first region."""
    clean = BOOT_LOGS[ALLWINNER]
    assert boot_facts(FORMS["crlf"](clean)) == boot_facts(clean)
    wrapped = FORMS["crcrlf"](clean)
    assert len(parse_boot_log(wrapped).layout) == 1 < len(parse_boot_log(clean).layout)
    assert boot_facts(normalize_paste(wrapped)) == boot_facts(clean)
    assert "\r" not in normalize_paste(FORMS["crlf"](clean))


def test_syslog_prefixes_the_boot_log_parser_does_not_know() -> None:
    """The plain "Jan 12 10:11:12 host kernel: " prefix was already stripped by the boot-log parser; a
    busybox/OpenWrt facility, journalctl's microseconds and any ISO (RFC 3339/5424) time were not."""
    clean = BOOT_LOGS[VEXPRESS]
    assert boot_facts(KERNEL_LOG_FORMS["syslog"](clean)) == boot_facts(clean)
    for form in ("syslog_busybox", "syslog_openwrt", "syslog_rfc3339", "syslog_rfc5424", "journal_precise",
                 "journal_iso", "journal_full"):
        wrapped = KERNEL_LOG_FORMS[form](clean)
        assert boot_facts(wrapped) != boot_facts(clean), form
        assert boot_facts(normalize_paste(wrapped)) == boot_facts(clean), form


def test_escaped_newlines_hide_everything_without_normalization() -> None:
    for form in ("escaped", "json"):
        clean = BOOT_LOGS[VEXPRESS]
        wrapped = FORMS[form](clean)
        assert wrapped.count("\n") == 1
        assert boot_facts(wrapped) != boot_facts(clean)
        assert boot_facts(normalize_paste(wrapped)) == boot_facts(clean)
        for name, (proc, facts) in PROC_FILES.items():
            assert misread(facts, FORMS[form](proc), proc), name


def test_journal_header_lines_become_blank_lines() -> None:
    text = "-- Logs begin at Fri 2024-01-12 10:00:01 UTC, end at Fri 2024-01-12 10:20:02 UTC. --\n-- Reboot --\n"
    assert normalize_paste(text) == "\n\n"


# --- clean files stay as they are ------------------------------------------------------------------

def data_files() -> list[Path]:
    roots = [CAPTURES, BUNDLES, DATA / "runs", SHARED_CAPTURES]
    return sorted(path for root in roots if root.is_dir() for path in root.rglob("*")
                  if path.is_file() and path.suffix != ".ko")


def test_every_clean_data_file_is_unchanged() -> None:
    """Every capture, bundle and run file, as the bundle loader reads it (text mode: CRLF already LF)."""
    files = data_files()
    assert len(files) > 150
    changed = set()
    for path in files:
        text = path.read_text(errors="replace")
        if normalize_paste(text) != text:
            changed.add(f"{path.parent.name}/{path.name}")
    assert changed == PASTED_FORMS


def test_raw_console_logs_differ_only_in_their_crlf() -> None:
    """The kit's own run boot.log files hold the serial console's CRLF (read as bytes)."""
    for path in sorted((DATA / "runs").glob("*/boot.log")):
        raw = path.read_bytes().decode()
        assert "\r\n" in raw
        assert normalize_paste(raw) == raw.replace("\r\n", "\n")


def test_the_pasted_data_files_parse_as_their_clean_forms() -> None:
    kasan = read_capture(KASAN)
    assert boot_facts(normalize_paste(kasan)) == boot_facts(kasan)  # the boot-log parser strips "> " itself
    assert normalize_paste(kasan).count("\n") == kasan.count("\n")
    assert "\n> " not in normalize_paste(kasan)


# --- (ptrval) and hashed pointers ------------------------------------------------------------------

def test_real_ptrval_boot_log_pasted_indented() -> None:
    """Lichee Pi Nano, 4.15: the .text/.init/.data/.bss lines print 0x(ptrval); the page indents the log."""
    text = read_capture(LICHEE)
    assert parse_boot_log(text).layout == {}  # the indentation hides the stamps
    boot = parse_boot_log(normalize_paste(text))
    assert boot.release == "4.15.0-next-20180202-licheepi-nano+" and boot.version == (4, 15, 0)
    assert boot.layout["lowmem"] == (0xC0000000, 0xC2000000) and boot.layout["vmalloc"] == (0xC2800000, 0xFF800000)
    assert boot.layout[".text"] == (None, None) and boot.layout_size_kb[".text"] == 6112
    assert boot.cmdline == "console=ttyS0,115200 panic=5 rootwait root=/dev/mtdblock3 rw rootfstype=jffs2"
    assert boot.memory is not None and (boot.memory.available_kb, boot.memory.total_kb) == (23752, 32768)


def test_real_ptrval_capture_is_checked_as_a_file_and_as_a_bundle(tmp_path: Path) -> None:
    """The file as it is, and split into a bundle directory: the same checks, the ARM block consistent."""
    capture = CAPTURES / LICHEE
    as_file = verify_bundle(capture)
    (tmp_path / "boot.log").write_text(capture.read_text())
    as_dir = verify_bundle(tmp_path)
    statuses = {check.id: check.status for check in as_file.checks}
    assert statuses == {check.id: check.status for check in as_dir.checks}
    assert [check.id for check in as_file.checks if check.status in ("fail", "error")] == []
    for region in ("vector", "fixmap", "vmalloc", "lowmem", "pkmap", "modules"):
        assert statuses[f"layout.block.{region}"] == "pass", region
    assert as_file.context.version == (4, 15, 0)


def test_64_bit_ptrval_spelling_is_unknown_too() -> None:
    text = "Virtual kernel memory layout:\n    vmalloc : 0x(____ptrval____) - 0x(____ptrval____)   ( 250 GB)\n"
    assert parse_boot_log(text).layout == {"vmalloc": (None, None)}


def test_ptrval_vmallocinfo_and_modules_skip_the_address_checks(tmp_path: Path) -> None:
    """SYNTHETIC: the real fullhan vmallocinfo and granite2 /proc/modules with every address written over
    as 0x(ptrval) (%pK read before the hash key was ready). Nothing raises; the addresses are unknown, so
    the address checks take their existing "zeroed" path (skip), the size checks still run."""
    vmalloc = capture_sections(read_capture(FULLHAN))[3]
    hidden = "\n".join("0x(ptrval)-0x(ptrval)" + line[line.index(" "):] for line in vmalloc.splitlines())
    (tmp_path / "vmallocinfo.txt").write_text(hidden + "\n")
    modules = capture_sections(read_capture(GRANITE2))[2]
    (tmp_path / "modules.txt").write_text(re.sub(r"Live 0x[0-9a-f]+", "Live 0x(ptrval)", modules))
    bundle = load_bundle(tmp_path)
    assert bundle.modules is not None and {module.address for module in bundle.modules} == {None}
    checks = {check.id: check for check in verify_bundle(tmp_path).checks}
    assert checks["vmallocinfo.snapshot.guard"].status == "pass"
    for name in ("arithmetic", "order", "overlap", "region", "ioremap_align"):
        check = checks[f"vmallocinfo.snapshot.{name}"]
        assert check.status == "skip" and "zeroed" in check.detail, name
    for name in ("aligned", "overlap", "region"):
        assert checks[f"modules.snapshot.{name}"].status == "skip"


def test_ptrval_module_line() -> None:
    (module,) = parse_proc_modules("galcore 161066 0 - Live 0x(ptrval) (O)\n")
    assert (module.name, module.address, module.taints) == ("galcore", None, "O")


def test_hashed_64_bit_pointers_pasted_quoted_are_checked_like_the_bundle(tmp_path: Path) -> None:
    """hashed-6.1 (real %pK hashes): as one quoted paste, and with 64-bit %p hashes (0x00000000abcd1234)."""
    bundle = BUNDLES / "hashed-6.1"
    vmalloc = (bundle / "vmallocinfo.txt").read_text()
    modules = (bundle / "modules.txt").read_text()
    paste = tmp_path / "hashed.txt"
    paste.write_text(FORMS["quote"](f"# cat /proc/modules\n{modules}\n# cat /proc/vmallocinfo\n{vmalloc}"))
    assert statuses(paste) == statuses(text_files_only(bundle, tmp_path / "bundle"))
    wide = "\n".join(line if line.startswith("#") else "0x00000000" + line[2:11] + "0x00000000" + line[13:]
                     for line in vmalloc.splitlines())
    entries = parse_vmallocinfo(normalize_paste(FORMS["indent4"](wide)))
    assert len(entries) == len(parse_vmallocinfo(vmalloc)) and entries[0].start == 0x49AF7ED9
    paste.write_text(f"$ cat /proc/vmallocinfo\n{wide}\n")
    checks = {check.id: check for check in verify_bundle(paste).checks}
    assert checks["vmallocinfo.snapshot.arithmetic"].status == "skip"
    assert "hashed" in checks["vmallocinfo.snapshot.arithmetic"].detail


# --- one pasted file as a bundle -------------------------------------------------------------------

def split_bundle_of(capture: Path) -> list[Path]:
    """The bundle directories made from ``capture``: their files open with its ``# source:`` line."""
    source = capture.read_text().splitlines()[0]
    return [directory for directory in sorted(BUNDLES.iterdir())
            if any(path.read_text().splitlines()[:1] == [source] for path in directory.glob("*.*")
                   if path.suffix in (".txt", ".log"))]


def statuses(path: Path, stated: dict[str, Any] | None = None) -> dict[str, str]:
    inputs = stated_inputs(**stated) if stated else None
    return {check.id: check.status for check in verify_bundle(path, inputs).checks}


def text_files_only(directory: Path, into: Path) -> Path:
    """The bundle without target.toml and config: the facts a pasted file cannot carry."""
    into.mkdir()
    for path in directory.iterdir():
        if path.name not in ("target.toml", "config"):
            shutil.copy(path, into / path.name)
    return into


CAPTURE_FILES = sorted(path.name for path in CAPTURES.glob("*.txt") if split_bundle_of(path))


def test_every_split_capture_is_found() -> None:
    """test_vmalloc-summary-lines has no bundle (lib/test_vmalloc.c results); LICHEE is new here."""
    assert len(CAPTURE_FILES) == 10
    assert {name for name in (path.name for path in CAPTURES.glob("*.txt")) if name not in CAPTURE_FILES} == {
        "test_vmalloc-summary-lines-real-runs.txt", LICHEE}


@pytest.mark.parametrize("name", CAPTURE_FILES)
def test_capture_file_checks_like_its_split_bundle(name: str, tmp_path: Path) -> None:
    """``invoke check --bundle FILE`` == the split bundle's text files (same ids, same statuses).

    What the split bundles add or drop: granite2-3.18, florentrevest-4.x, technicolor-4.1 and rpi-4.14 carry
    a target.toml (and rpi a config) stating the version, RAM, arch or VMSPLIT_2G that their capture's
    ``#`` header gives in prose; a pasted file has only its text, so those facts are compared without them
    (with them, the layout and module checks run instead of being skipped). rpi-4.14's modules.txt dropped
    the prompt line 'root@raspberrypi:/proc# cat modules', which split_paste drops too.
    """
    capture = CAPTURES / name
    (directory,) = split_bundle_of(capture)
    expected = statuses(text_files_only(directory, tmp_path / "bundle"))
    assert statuses(capture) == expected
    if not (directory / "target.toml").exists():
        assert statuses(directory) == expected


# The facts the split bundles' target.toml/config state, as `invoke check --kernel/--ram/--config` states them.
STATED: dict[str, dict[str, Any]] = {
    "granite2-3.18": {"kernel": "3.18", "ram": "1G", "ram_base": "0"},
    "florentrevest-4.x": {"kernel": "4.9"},
    "technicolor-4.1": {"kernel": "4.1"},
    "rpi-4.14": {"kernel": "4.14", "config": ["VMSPLIT_2G=y"]},
}


@pytest.mark.parametrize("bundle", sorted(STATED))
def test_capture_file_with_the_stated_facts_checks_like_the_full_bundle(bundle: str) -> None:
    """With what target.toml says given as --kernel/--ram/--config, the file gives the full bundle's checks,
    but for what only target.toml's ``arch = "arm"`` gives (there is no --arch): facts.arch.boot_log (the
    stated arch against the log's CPU line) and, for rpi (no boot log to read the arch from), the modules
    region (skipped: "module area not modelled for arch unknown")."""
    (capture,) = [path for path in CAPTURES.glob("*.txt") if BUNDLES / bundle in split_bundle_of(path)]
    got, full = statuses(capture, STATED[bundle]), statuses(BUNDLES / bundle)
    differ = {key: (got.get(key), full.get(key)) for key in set(got) | set(full) if got.get(key) != full.get(key)}
    expected = {"modules.snapshot.region": ("skip", "pass")} if bundle == "rpi-4.14" else {
        "facts.arch.boot_log": (None, "pass")}
    assert differ == expected


@pytest.mark.parametrize("form", ["indent4", "tab", "quote", "quote2", "crlf", "escaped"])
@pytest.mark.parametrize("name", [FULLHAN, GRANITE2, ALLWINNER, RASPBIAN])
def test_pasted_capture_file_checks_like_the_clean_one(name: str, form: str, tmp_path: Path) -> None:
    """The whole capture pasted (its ``#`` header kept at the top, the rest wrapped)."""
    text = read_capture(name)
    header = "".join(line for line in text.splitlines(keepends=True) if line.startswith("# "))
    paste = tmp_path / "paste.txt"
    paste.write_bytes((header + FORMS[form](text[len(header):])).encode())
    assert statuses(paste) == statuses(CAPTURES / name)


def test_split_paste_parts_of_the_fullhan_capture() -> None:
    text = read_capture(FULLHAN)
    parts = split_paste(text)
    assert list(parts) == ["boot.log", "vmallocinfo.txt", "meminfo.txt", "cmdline.txt"]
    sections = capture_sections(text)
    assert parse_meminfo(parts["meminfo.txt"]) == parse_meminfo(sections[2])
    assert [entry[:-1] for entry in parse_vmallocinfo(parts["vmallocinfo.txt"])] == [
        entry[:-1] for entry in parse_vmallocinfo(sections[3])]
    assert boot_facts(parts["boot.log"]) == boot_facts(sections[1])
    assert parts["cmdline.txt"].startswith("mem=36M console=ttyS0,115200")
    # every part keeps the paste's line numbers
    first = next(number for number, line in enumerate(text.splitlines(), 1) if line.startswith("0xbf000000-"))
    assert parse_vmallocinfo(parts["vmallocinfo.txt"])[0].line == first
    assert all(part.count("\n") == text.count("\n") for name, part in parts.items() if name != "cmdline.txt")


def test_a_failing_line_is_named_by_its_line_in_the_paste(tmp_path: Path) -> None:
    text = read_capture(FULLHAN).replace("0xbf007000-0xbf00c000   20480", "0xbf007000-0xbf00c000   24576")
    number = next(number for number, line in enumerate(text.splitlines(), 1) if line.startswith("0xbf007000-"))
    paste = tmp_path / "fullhan.txt"
    paste.write_text(FORMS["quote"](text))
    checks = {check.id: check for check in verify_bundle(paste).checks}
    assert checks["vmallocinfo.snapshot.arithmetic"].status == "fail"
    assert f"fullhan.txt line {number}:" in checks["vmallocinfo.snapshot.arithmetic"].detail


def test_cmdline_only_from_a_cat_prompt_or_the_boot_line() -> None:
    board = ("/ # cat /proc/cmdline\nconsole=ttyS0,115200 root=/dev/mmcblk0p2 vmalloc=384M\n"
             "/ # cat /proc/meminfo\nMemTotal:        1019988 kB\nVmallocTotal:     393216 kB\n")
    parts = split_paste(board)
    assert parts["cmdline.txt"] == "console=ttyS0,115200 root=/dev/mmcblk0p2 vmalloc=384M\n"
    assert parse_meminfo(parts["meminfo.txt"]) == {"MemTotal": 1019988, "VmallocTotal": 393216}
    assert "cmdline.txt" not in split_paste("console=ttyS0,115200 root=/dev/mmcblk0p2\n" + board.split("\n", 2)[2])
    from_boot = split_paste(body(X86_38))
    assert from_boot["cmdline.txt"].strip() == parse_boot_log(body(X86_38)).cmdline


def test_a_lone_key_value_boot_line_is_not_meminfo() -> None:
    assert "meminfo.txt" not in split_paste("[    0.000000] Linux version 6.1.0 (x)\nCPU: 1\n")
    assert split_paste("VmallocTotal:     393216 kB\n") == {"meminfo.txt": "VmallocTotal:     393216 kB\n"}


def test_a_file_with_nothing_to_check_says_so(tmp_path: Path) -> None:
    paste = tmp_path / "notes.txt"
    paste.write_text("# my board\nIt hangs after loading the driver, see below.\n")
    with pytest.raises(UserError, match="nothing to check"):
        load_bundle(paste)
    with pytest.raises(UserError, match="not a directory or a file"):
        load_bundle(tmp_path / "missing")


def invoke_check(bundle: Path, report: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "invoke", "check", "--bundle", str(bundle), "--report", str(report)],
                          cwd=REPO, capture_output=True, text=True, check=False)


def test_invoke_check_on_a_pasted_file(tmp_path: Path) -> None:
    """``invoke check --bundle FILE`` checks the file: a quoted paste as the clean capture file and its split
    bundle. (tasks.py's default report path is FILE/report.html, which cannot exist for a file: --report.)"""
    paste = tmp_path / "board.txt"
    paste.write_text(FORMS["quote"](read_capture(FULLHAN)))
    done = invoke_check(paste, tmp_path / "r.html")
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr
    assert "<svg" in (tmp_path / "r.html").read_text()
    summary = done.stdout.splitlines()[-2]
    assert " 0 fail, " in summary and summary.endswith(" 0 error") and " 0 pass" not in summary
    for clean in (CAPTURES / FULLHAN, BUNDLES / "fullhan-4.9.129"):
        assert invoke_check(clean, tmp_path / "clean.html").stdout.splitlines()[-2] == summary
