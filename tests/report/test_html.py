"""The page: self-contained, escaped, every area with its line, checks worst first, partial captures."""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

import pytest

from analysis.report import write_report
from analysis.verify.check import Check
from analysis.verify.verify import BundleVerdict, verify_bundle
from kit.errors import UserError
from tests.report._data import RPI, RUN_6_1, X86, fullhan_snapshot_only, verdict


def _render(v: BundleVerdict, tmp_path: Path) -> str:
    out = tmp_path / "report.html"
    write_report(v, out)
    return out.read_text(encoding="utf-8")


def test_qemu_run_page_is_self_contained(tmp_path: Path) -> None:
    page = _render(verdict(RUN_6_1), tmp_path)
    assert "<svg" in page and "<style>" in page
    assert re.search(r"<script|<link|@import|src=|href=", page) is None
    assert re.findall(r"https?://[^\s\"']+", page) == ["http://www.w3.org/2000/svg"]  # the namespace only


def test_every_area_has_its_vmallocinfo_line_as_title(tmp_path: Path) -> None:
    page = _render(verdict(RUN_6_1), tmp_path)
    assert page.count('<g class="area"') == 98            # wc -l vmallocinfo/kit_alloc.during.txt
    assert "<title>0xfee00000-0xff000000 2097152 pci_reserve_io+0x0/0x38 ioremap</title>" in page
    assert "<title>0xf0bab000-0xf0bbc000   69632 0xbf0052a8 pages=16 vmalloc</title>" in page
    assert "kit_alloc.during.txt" in page


def test_page_sections_for_a_qemu_run(tmp_path: Path) -> None:
    page = _render(verdict(RUN_6_1), tmp_path)
    assert "481 checks: 479 pass, 0 fail, 2 skip, 0 error" in page
    assert "226.3 MiB at 0xf0bbc000-0xfee00000" in page   # 0xfee00000 - 0xf0bbc000 = 0xe244000
    assert re.search(r"<td class=\"mono\">256M</td><td class=\"mono\">0xef800000</td><td>256 MiB</td>"
                     r"<td>752 MiB</td>", page)
    assert "VMALLOC_START</td><td class=\"mono\">0xf0800000</td>" in page
    assert 'id="cannot-show"' not in page


def test_checks_worst_first_and_escaped(tmp_path: Path) -> None:
    v = verdict(RUN_6_1)
    extra = [Check("x.error", "x", "error", None, None, "guest <script>alert(1)</script> hung"),
             Check("x.fail", "x", "fail", "0xf0800000", "0xf1000000", "moved & wrong")]
    page = _render(replace(v, checks=[*v.checks, *extra]), tmp_path)
    statuses = re.findall(r'<td class="status (\w+)">', page)
    assert statuses[:2] == ["fail", "error"] and statuses[2:4] == ["skip", "skip"] and set(statuses[4:]) == {"pass"}
    assert "483 checks: 479 pass, 1 fail, 2 skip, 1 error" in page.split("<table", 1)[0]   # at the top
    assert "<script>alert" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "moved &amp; wrong" in page


def test_partial_capture_still_renders_and_says_why(tmp_path: Path) -> None:
    v = verify_bundle(fullhan_snapshot_only(tmp_path))
    page = _render(v, tmp_path)
    assert 'id="cannot-show"' in page and "no layout model" in page
    assert page.count('<g class="area"') == 97 and 'data-name="span 1"' in page
    assert "No layout model for this bundle" in page


def test_boot_block_only_and_modules_only_captures(tmp_path: Path) -> None:
    page = _render(verdict(X86), tmp_path)
    assert re.findall(r'data-name="(\w+)"', page) == ["lowmem", "vmalloc", "pkmap", "fixmap"]
    assert "not modelled: arch x86" in page
    page = _render(verdict(RPI), tmp_path)
    assert 'id="no-map"' in page and "RAM size unknown" in page and "/proc/modules" in page


def test_unwritable_path_is_a_user_error(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="cannot write the report"):
        write_report(verdict(RUN_6_1), tmp_path / "missing-dir" / "report.html")
