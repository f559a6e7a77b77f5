"""KTAP parsing and extraction from dmesg (docs/contracts.md §2, §3)."""

from __future__ import annotations

import pytest

from analysis.parsers import extract_module_ktap, parse_ktap
from kit.errors import ParseError

KTAP = """\
KTAP version 1
1..4
# layout.PAGE_OFFSET=0xc0000000
# layout.LAST_PKMAP=512
ok 1 layout
# subpage.addr=0xf0805000
# note without equals sign
not ok 2 subpage # nr_pages=0, expected 1
ok 3 kmap_local # SKIP kmap_local_page() needs 6.1
ok 4 - todo_case # TODO not written yet
# exit.freed=6
"""


def test_results_directives_and_diagnostics() -> None:
    document = parse_ktap(KTAP, "ktap/kit.ktap")
    assert (document.version, document.plan, document.truncated, document.unknown_lines) == (1, 4, False, ())
    layout, subpage, skipped, todo = document.results
    assert (
        layout.ok
        and layout.passed
        and layout.diagnostics
        == {
            "layout.PAGE_OFFSET": "0xc0000000",
            "layout.LAST_PKMAP": "512",
        }
    )
    assert not subpage.ok and subpage.directive is None and subpage.reason == "nr_pages=0, expected 1"
    assert subpage.diagnostics == {"subpage.addr": "0xf0805000"}
    assert subpage.diag_lines == ("subpage.addr=0xf0805000", "note without equals sign")
    assert (skipped.directive, skipped.reason, skipped.ok, skipped.passed) == (
        "SKIP",
        "kmap_local_page() needs 6.1",
        True,
        False,
    )
    assert (todo.name, todo.directive, todo.reason) == ("todo_case", "TODO", "not written yet")
    assert document.trailing_diag == {"exit.freed": "6"}
    assert document.result("subpage") is subpage and document.result("absent") is None


def test_diag_int() -> None:
    document = parse_ktap(KTAP + "# weird=12abc\n# padded=010\n# negative=-4\n", "ktap/kit.ktap")
    assert document.diag_int("layout.PAGE_OFFSET") == 0xC0000000
    assert document.diag_int("layout.LAST_PKMAP") == 512
    assert document.diag_int("padded") == 10 and document.diag_int("negative") == -4
    assert document.diag_int("absent") is None
    with pytest.raises(ParseError) as caught:
        document.diag_int("weird")
    assert (caught.value.path, caught.value.line) == ("ktap/kit.ktap", 12)


def test_truncated_output_is_not_an_exception() -> None:
    document = parse_ktap("KTAP version 1\n1..5\nok 1 a\nok 2 b\nnot ok 3 c\n")
    assert document.truncated and len(document.results) == 3


def test_unknown_lines_are_kept() -> None:
    document = parse_ktap("KTAP version 1\n1..1\nloading out-of-tree module taints kernel.\nok 1 a\n")
    assert document.unknown_lines == ((3, "loading out-of-tree module taints kernel."),)
    assert not document.truncated


def test_nested_subtests() -> None:
    text = (
        "KTAP version 1\n1..2\n"
        "    KTAP version 1\n    # Subtest: kmap\n    1..2\n    # kmap.count=8\n    ok 1 highmem\n"
        "    not ok 2 again\n"
        "not ok 1 kmap\n"
        "ok 2 plain\n"
    )
    document = parse_ktap(text)
    kmap, plain = document.results
    assert kmap.subtest is not None and plain.subtest is None
    nested = [(r.number, r.name, r.ok) for r in kmap.subtest.results]
    assert nested == [(1, "highmem", True), (2, "again", False)]
    assert kmap.subtest.diag == {"kmap.count": "8"} and kmap.subtest.plan == 2
    assert "kmap.count" not in document.diag


def test_empty_and_garbage() -> None:
    assert parse_ktap("").results == [] and parse_ktap("").plan is None
    assert parse_ktap("\x00\x01 ok\n").unknown_lines


DMESG = """\
[    1.100000] random: crng init done
[    1.892577] kit: begin kit_vmalloc
[    1.899949] kit_vmalloc: KTAP version 1
[    1.905679] kit_vmalloc: 1..1
[    1.905680] kit_alloc: # other.module=1
[    1.905689] kit_vmalloc: # subpage.addr=0xf0805000
[    1.905700] kit_vmalloc:     ok 1 nested
[    1.905817] kit_vmalloc: ok 1 subpage
[    1.935549] kit: end kit_vmalloc insmod=0
[    2.203360] kit_vmalloc: # exit.freed=1
[    2.293472] kit: released kit_vmalloc rmmod=0
[    2.300000] kit_vmalloc: # after the window
"""


def test_extract_module_ktap() -> None:
    assert extract_module_ktap(DMESG, "kit_vmalloc") == (
        "KTAP version 1\n1..1\n# subpage.addr=0xf0805000\n    ok 1 nested\nok 1 subpage\n# exit.freed=1\n"
    )


def test_extract_handles_levels_without_timestamps_and_prefix_collisions() -> None:
    text = "<6>kit: begin kit_a\n<6>kit_a: ok 1 x\n<6>kit_ab: ok 9 y\n<6>kit: released kit_a rmmod=0\n"
    assert extract_module_ktap(text, "kit_a") == "ok 1 x\n"
    stamped = "<6>[    3.5] kit: begin kit_a\n<6>[    3.6] kit_a: 1..2\n"
    assert extract_module_ktap(stamped, "kit_a") == "1..2\n"


def test_extract_takes_the_last_window_and_tolerates_a_missing_release() -> None:
    text = DMESG + "[    9.0] kit: begin kit_vmalloc\n[    9.1] kit_vmalloc: KTAP version 1\n"
    assert extract_module_ktap(text, "kit_vmalloc") == "KTAP version 1\n"


def test_extract_without_begin_marker() -> None:
    with pytest.raises(ParseError, match=r"dmesg\.txt: no 'kit: begin kit_kmap' marker"):
        extract_module_ktap(DMESG, "kit_kmap", "dmesg.txt")
