"""Property tests: any text gives a result or a ParseError; generated lines round-trip."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from analysis.parsers import (
    KNOWN_VMALLOC_FLAGS,
    extract_module_ktap,
    parse_boot_log,
    parse_ktap,
    parse_meminfo,
    parse_proc_modules,
    parse_sections,
    parse_vmallocinfo,
)
from analysis.parsers.vmallocinfo import _parse_lines
from kit.errors import ParseError

# Text that looks a bit like the real thing, so the generator reaches deep into each parser.
FRAGMENTS = st.sampled_from(
    [
        "0x",
        "f0800000",
        "-",
        " ",
        "  ",
        "\n",
        "\t",
        "\r",
        "8192",
        "pages=",
        "phys=",
        "vmalloc",
        "ioremap",
        "vpages",
        "N0=",
        "[mod]",
        "vm_map_ram",
        "unpurged vm_area",
        "#",
        "# ",
        "ok ",
        "not ok ",
        "1..",
        "3",
        "KTAP version 1",
        "SKIP",
        "key=",
        "Live",
        "(OE)",
        "kB",
        ":",
        "Memory: ",
        "K/",
        "K available (",
        "Virtual kernel memory layout:",
        " : ",
        " - ",
        "(ptrval)",
        "(   4 kB)",
        "\\x0a",
        "> ",
        "<6>",
        "[    0.000000] ",
        "Linux version ",
        "Kernel command line: ",
        "kit: begin m",
        "kit: released m",
        "m: ",
        "/sys/module/m/sections/.text:",
        ".",
        "..",
        "\x00",
        "é",
        "\u2028",
    ]
)
TEXT = st.one_of(st.text(), st.lists(FRAGMENTS, max_size=60).map("".join))

PARSERS: dict[str, Callable[[str], object]] = {
    "vmallocinfo": parse_vmallocinfo,
    "modules": parse_proc_modules,
    "meminfo": parse_meminfo,
    "sections": parse_sections,
    "ktap": parse_ktap,
    "bootlog": parse_boot_log,
    "extract": lambda text: extract_module_ktap(text, "m"),
}


@pytest.mark.parametrize("name", sorted(PARSERS))
@settings(max_examples=300, deadline=None)
@given(text=TEXT)
def test_any_text_gives_a_result_or_a_parse_error(name: str, text: str) -> None:
    try:
        PARSERS[name](text)
    except ParseError as error:
        assert error.path and str(error).startswith(error.path)


@given(text=TEXT)
@settings(max_examples=200, deadline=None)
def test_ktap_and_bootlog_never_raise(text: str) -> None:
    parse_ktap(text)
    parse_boot_log(text)


HEX32 = st.integers(min_value=0, max_value=2**32 - 1)
SYMBOL = st.from_regex(r"[a-z_][a-z0-9_.]{0,20}\+0x[0-9a-f]{1,4}/0x[0-9a-f]{1,4}", fullmatch=True)
MODULE = st.from_regex(r"[a-z_][a-z0-9_]{0,15}", fullmatch=True)


@st.composite
def vmalloc_lines(draw: st.DrawFn) -> tuple[str, dict[str, object]]:
    """A line as s_show prints it, and the values it was printed from."""
    start, size = draw(HEX32), draw(st.integers(min_value=0, max_value=2**31))
    kind = draw(st.sampled_from(["area", "area", "area", "vm_map_ram", "unpurged"]))
    head = f"0x{start:08x}-0x{(start + size) % 2**32:08x} {size:7d}"
    if kind == "vm_map_ram":
        return head + " vm_map_ram", {"start": start, "size": size, "kind": kind, "caller": None}
    if kind == "unpurged":
        return head + " unpurged vm_area", {"start": start, "size": size, "kind": kind, "caller": None}
    caller = draw(st.none() | SYMBOL)
    module = draw(st.none() | MODULE) if caller else None
    pages = draw(st.none() | st.integers(min_value=1, max_value=2**20))
    phys = draw(st.none() | st.integers(min_value=1, max_value=2**40))
    phys_text = draw(st.sampled_from(["0x%08x", "%x", "0x%016x"])) % phys if phys else ""
    flags = draw(st.lists(st.sampled_from(KNOWN_VMALLOC_FLAGS), unique=True))
    flags.sort(key=KNOWN_VMALLOC_FLAGS.index)  # s_show's fixed order
    numa = draw(st.dictionaries(st.integers(0, 7), st.integers(0, 10**6), max_size=3))
    parts = [head]
    if caller:
        parts.append(caller + (f" [{module}]" if module else ""))
    if pages is not None:
        parts.append(f"pages={pages}")
    if phys:
        parts.append(f"phys={phys_text}")
    parts += flags
    parts += [f"N{node}={count}" for node, count in sorted(numa.items())]
    expected = {
        "start": start,
        "size": size,
        "kind": kind,
        "caller": caller,
        "caller_module": module,
        "pages": pages,
        "phys": phys,
        "flags": frozenset(flags),
        "numa": numa,
    }
    return " ".join(parts), expected


@given(lines=st.lists(vmalloc_lines(), min_size=1, max_size=20))
@settings(max_examples=300, deadline=None)
def test_generated_vmallocinfo_lines_round_trip(lines: list[tuple[str, dict[str, object]]]) -> None:
    entries = parse_vmallocinfo("".join(text + "\n" for text, _ in lines))
    assert len(entries) == len(lines)
    for number, (entry, (_, expected)) in enumerate(zip(entries, lines, strict=True), start=1):
        assert entry.line == number
        for key, value in expected.items():
            assert getattr(entry, key) == value, key


@given(
    name=MODULE,
    size=st.integers(0, 2**31),
    refcount=st.integers(0, 1000),
    users=st.lists(MODULE, max_size=4),
    address=HEX32,
    taints=st.sampled_from(["", "O", "OE", "PO", "C"]),
)
def test_generated_proc_modules_lines_round_trip(
    name: str, size: int, refcount: int, users: list[str], address: int, taints: str
) -> None:
    users_text = "".join(f"{user}," for user in users) or "-"
    line = f"{name} {size} {refcount} {users_text} Live 0x{address:08x}" + (f" ({taints})" if taints else "")
    (module,) = parse_proc_modules(line + "\n")
    assert (module.name, module.size, module.refcount, module.users) == (name, size, refcount, tuple(users))
    assert (module.address, module.taints) == (address or None, taints)


_REAL_LINES = [line for path in sorted((Path(__file__).parent.parent / "data" / "runs").rglob("*.during.txt"))[:6]
               for line in path.read_text().splitlines() if line.startswith("0x")]


@given(st.lists(st.sampled_from(_REAL_LINES), min_size=1, max_size=40),
       st.sampled_from(["", "\n", "\n\n", "\r\n"]), st.booleans())
@settings(max_examples=300, deadline=None)
def test_the_whole_text_path_parses_as_the_line_loop(lines: list[str], end: str, comment: bool) -> None:
    """parse_vmallocinfo's fast path (one regex over the text) gives the line loop's entries, field for
    field and line number for line number; texts it does not take (CRLF, comments) go to the loop."""
    text = ("# provenance\n" if comment else "") + "\n".join(lines) + end
    assert parse_vmallocinfo(text) == _parse_lines(text, "p")
