"""The invoke entry points as a user runs them: exit codes and one-line errors (no QEMU here)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent.parent
RUN = REPO / "tests" / "data" / "runs" / "arm-6.1"


def invoke(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "invoke", *args], cwd=REPO, capture_output=True, text=True,
                          check=False)


def test_check_a_good_bundle_exits_0_and_writes_json_and_the_report(tmp_path: Path) -> None:
    done = invoke("check", "--bundle", str(RUN), "--json", str(tmp_path / "v.json"), "--report",
                  str(tmp_path / "r.html"))
    assert done.returncode == 0, done.stdout[-2000:]
    doc = json.loads((tmp_path / "v.json").read_text())
    assert doc["status"] == "pass" and doc["kernel"]["version"] == "6.1.176"
    assert "<svg" in (tmp_path / "r.html").read_text() and f"report: {tmp_path / 'r.html'}" in done.stdout
    # the headroom in a few lines (the largest free block of the last run's snapshot, read off its file)
    assert "  largest free block 226.3 MiB at 0xf0bbc000;" in done.stdout


def test_check_writes_the_report_into_the_bundle_or_fails_at_once_on_a_bad_path(tmp_path: Path) -> None:
    capture = shutil.copytree(RUN.parent.parent / "bundles" / "fullhan-4.9.129", tmp_path / "capture")
    done = invoke("check", "--bundle", str(capture))
    assert "<svg" in (capture / "report.html").read_text(), done.stdout[-2000:]
    done = invoke("check", "--bundle", str(capture), "--report", str(tmp_path / "no" / "r.html"))
    assert done.returncode == 2 and done.stdout == ""  # before any verification
    assert done.stderr.strip() == (f"error: cannot write {tmp_path}/no/r.html: directory {tmp_path}/no does not "
                                   "exist; create it or give a file in an existing directory")


def test_check_a_changed_bundle_exits_1(tmp_path: Path) -> None:
    copy = tmp_path / "b"
    shutil.copytree(RUN, copy)
    modules = copy / "modules" / "kit_kmap.txt"
    modules.write_text(modules.read_text().replace("kit_kmap 16384", "kit_kmap 20480"))
    done = invoke("check", "--bundle", str(copy))
    assert done.returncode == 1
    assert "FAIL    kit_kmap.proc_modules.size" in done.stdout


def test_garbage_exits_2_with_one_line(tmp_path: Path) -> None:
    (tmp_path / "vmallocinfo.txt").write_text("this is not a vmallocinfo line\n")
    done = invoke("check", "--bundle", str(tmp_path))
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        f"error: {tmp_path}/vmallocinfo.txt:1: not a vmallocinfo line: 'this is not a vmallocinfo line'"]


def test_unknown_target_lists_the_valid_ones() -> None:
    done = invoke("run", "--target", "arm-9.9")
    assert done.returncode == 2
    assert done.stderr.strip() == ("error: unknown target 'arm-9.9'; valid targets: arm-5.10, arm-6.1, arm-6.12, "
                                   "arm-lpae-5.10, arm-lpae-6.1, arm-lpae-6.12")


def test_bad_mem_is_one_line() -> None:
    done = invoke("build", "deploy", "run", "--mem", "99999")
    assert done.returncode == 2
    assert "--mem 99999: give the guest RAM in MiB between 64 and 3072" in done.stderr
    assert "Traceback" not in done.stderr


def test_model_json_has_the_documented_keys() -> None:
    done = invoke("model", "--arch", "arm", "--kernel", "6.1.0-50-armmp", "--ram", "1G", "--cmdline",
                  "vmalloc=300M", "--json")
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    # kernel-model.md §1.5: 6.1, 1 GiB, vmalloc=300M -> vmalloc 0xec800000-0xff800000 (304 MB)
    assert doc["VMALLOC_START"] == "0xec800000" and doc["VMALLOC_END"] == "0xff800000"
    assert doc["VmallocTotal_kB"] == 311296 and doc["high_memory"] == "0xec400000"
    assert set(doc) >= {"PAGE_OFFSET", "MODULES_VADDR", "MODULES_END", "PKMAP_BASE", "FIXADDR_START",
                        "lowmem_bytes", "highmem_bytes"}


def test_model_banner_for_the_318_board() -> None:
    """The granite2 board's boot log (shared/data/captures): 3.18, 1 GiB at physical 0."""
    done = invoke("model", "--kernel", "3.18", "--ram", "1G", "--ram-base", "0")
    assert done.returncode == 0, done.stderr
    assert "    vmalloc : 0xf0000000 - 0xff000000   ( 240 MB)" in done.stdout
    assert "    lowmem  : 0xc0000000 - 0xef800000   ( 760 MB)" in done.stdout
    assert "    modules : 0xbf000000 - 0xbfe00000   (  14 MB)" in done.stdout


def test_a_bad_append_is_one_line_before_anything_runs() -> None:
    done = invoke("run", "--append", "vmalloc=300M\ninit=/bin/sh")
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "error: --append: character '\\n' is not allowed; give kernel parameters as one line of printable ASCII, "
        "e.g. --append 'vmalloc=300M'"]
    done = invoke("run", "--append", "x" * 1100)
    assert done.returncode == 2
    assert "keep at most 1023 (COMMAND_LINE_SIZE)" in done.stderr


def test_check_a_capture_where_nothing_can_be_checked_exits_3(tmp_path: Path) -> None:
    """Issue 9: 'could not tell' is never exit 0. A boot log with no layout block, banner or Memory: line."""
    (tmp_path / "boot.log").write_text("[    0.000000] Kernel command line: console=ttyS0,115200\n")
    done = invoke("check", "--bundle", str(tmp_path))
    assert done.returncode == 3, done.stdout[-2000:]
    line = done.stderr.strip()
    assert line.startswith(f"error: could not tell: nothing in {tmp_path} could be checked (the boot log has no")
    assert line.endswith("give what the capture lacks: --kernel, --ram, --ram-base, --page-offset, --config, --cmdline")


def test_check_takes_what_the_engineer_knows(tmp_path: Path) -> None:
    capture = shutil.copytree(RUN.parent.parent / "bundles" / "allwinner-3.4.39", tmp_path / "capture")
    log = capture / "boot.log"
    log.write_text("".join(line for line in log.read_text().splitlines(True) if "Linux version" not in line))
    done = invoke("check", "--bundle", str(capture))
    assert done.returncode == 0 and "SKIP    layout.block.vmalloc" in done.stdout
    done = invoke("check", "--bundle", str(capture), "--kernel", "3.4", "--ram", "256M", "--ram-base", "0x40000000")
    assert done.returncode == 0 and "PASS    layout.block.vmalloc" in done.stdout, done.stdout[-3000:]
    done = invoke("check", "--bundle", str(capture), "--kernel", "2.4.37")
    assert done.returncode == 2 and done.stderr.startswith("error: not modelled: ARM kernel 2.4.37")


def test_check_a_pasted_capture_file(tmp_path: Path) -> None:
    """One file as pasted into a mail (quoted, CRLF): checked like its bundle; the report lands beside it."""
    source = REPO / "tests" / "data" / "captures" / "arm-allwinner-sun8i-256mb-3.4.39.txt"
    pasted = tmp_path / "mail.txt"
    pasted.write_text("".join(f"> {line}\r\n" for line in source.read_text().splitlines()))
    done = invoke("check", "--bundle", str(pasted))
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr
    assert "PASS    layout.block.vmalloc" in done.stdout and "PASS    layout.invariant.vmalloc_start" in done.stdout
    assert (tmp_path / "mail.report.html").is_file()
