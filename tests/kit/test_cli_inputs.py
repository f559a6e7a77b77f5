"""Bad input at the command line (issue 12 rows 7 and 8): exit 2 and one line on stderr, never a traceback.

Row 7 goes through `invoke model` (analysis.model.banner.model_layout). Row 8 is `invoke check --json`:
kit.verdict.check_output_path refuses a path that cannot be a file, and write_verdict_json/write_junit turn
an OSError into one UserError/InfraError line.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from analysis.verify.check import compare
from kit.errors import InfraError, UserError
from kit.verdict import Verdict, check_output_path, write_junit, write_verdict_json

REPO = Path(__file__).resolve().parent.parent.parent
RUN = REPO / "tests" / "data" / "runs" / "arm-6.1"


def invoke(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "invoke", *args], cwd=REPO, capture_output=True, text=True,
                          check=False)


def assert_one_error_line(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 2, (done.returncode, done.stdout[-2000:], done.stderr[-2000:])
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr
    return lines[0]


# --- row 7: invoke model ---------------------------------------------------------------------------------

@pytest.mark.parametrize(("args", "valid_range"), [
    (("--ram", "0"), "give a multiple of 4K (PAGE_SIZE) of at least 2M"),
    (("--ram", "1"), "give a multiple of 4K (PAGE_SIZE) of at least 2M"),
    (("--ram", "1G", "--ram-base", "0xffffffff"), "is not a multiple of 2M"),
    (("--ram", "1G", "--page-offset", "0x1"), "0x40000000 (VMSPLIT_1G), 0x80000000 (VMSPLIT_2G), "
                                              "0xb0000000 (VMSPLIT_3G_OPT), 0xc0000000 (VMSPLIT_3G)"),
    (("--ram", "4G"), "give at most 3G at this base"),
    (("--ram", "1G", "--cmdline", "vmalloc=300X"), "write e.g. vmalloc=300M"),
    (("--ram", "1G", "--cmdline", "mem=100M@0x80000000"), "give at least 2M of RAM at PHYS_OFFSET"),
    (("--ram", "1G", "--config", "HIGHMEN"), "not an option the model reads"),
])
def test_model_bad_input_exits_2_with_one_line(args: tuple[str, ...], valid_range: str) -> None:
    done = invoke("model", "--kernel", "6.1", *args)
    line = assert_one_error_line(done)
    assert valid_range in line
    assert done.stdout == ""          # no banner, nonsense or not


def test_model_old_kernel_asks_for_the_machines_vmalloc_end() -> None:
    line = assert_one_error_line(invoke("model", "--kernel", "2.6.35", "--ram", "256M"))
    assert "takes VMALLOC_END from the machine's mach/vmalloc.h: give it (e.g. --vmalloc-end" in line


def test_model_good_input_still_prints_the_banner() -> None:
    done = invoke("model", "--kernel", "6.1", "--ram", "1G", "--page-offset", "0x80000000", "--ram-base", "0")
    assert done.returncode == 0, done.stderr
    # VMSPLIT_2G, 1 GiB at 0: lowmem is all the RAM, [PAGE_OFFSET, PAGE_OFFSET + 1G)
    assert "    lowmem  : 0x80000000 - 0xc0000000   (1024 MB)" in done.stdout


# --- row 8: invoke check --json ----------------------------------------------------------------------------

def verdict() -> Verdict:
    return Verdict("arm-6.1", "arm", "6.1.0-50-armmp", "6.1.176", [compare("a", "vmalloc", 1, 1)])


def one_line(err: pytest.ExceptionInfo[BaseException]) -> str:
    message = str(err.value)
    assert message and "\n" not in message
    return message


def test_output_path_that_is_a_directory_is_refused(tmp_path: Path) -> None:
    with pytest.raises(UserError) as err:
        check_output_path(tmp_path)
    assert one_line(err) == f"{tmp_path} is a directory; give a file path, e.g. {tmp_path}/verdict.json"


def test_output_path_in_a_missing_directory_is_refused(tmp_path: Path) -> None:
    with pytest.raises(UserError) as err:
        check_output_path(tmp_path / "missing" / "v.json")
    assert f"directory {tmp_path}/missing does not exist" in one_line(err)


def test_output_path_under_a_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "plain").write_text("")
    with pytest.raises(UserError) as err:
        check_output_path(tmp_path / "plain" / "v.json")
    assert f"{tmp_path}/plain is not a directory" in one_line(err)


def test_good_output_paths_pass_and_nothing_is_created(tmp_path: Path) -> None:
    assert check_output_path(tmp_path / "v.json") == tmp_path / "v.json"
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "old.json").write_text("{}")
    assert check_output_path(tmp_path / "old.json") == tmp_path / "old.json"
    assert (tmp_path / "old.json").read_text() == "{}"


def test_write_verdict_json_turns_os_errors_into_one_line(tmp_path: Path) -> None:
    with pytest.raises(UserError) as err:
        write_verdict_json(verdict(), tmp_path)
    assert one_line(err).startswith(f"cannot write {tmp_path}: Is a directory")
    with pytest.raises(UserError) as err:
        write_verdict_json(verdict(), tmp_path / "missing" / "v.json")
    assert "No such file or directory" in one_line(err)
    with pytest.raises(UserError):
        write_junit(verdict(), tmp_path)


def test_a_full_disk_is_the_machines_fault_not_the_users() -> None:
    # /dev/full: every write fails with ENOSPC, a real device, so InfraError (exit 3), not "bad input"
    assert check_output_path(Path("/dev/full")) == Path("/dev/full")
    with pytest.raises(InfraError) as err:
        write_verdict_json(verdict(), Path("/dev/full"))
    assert "No space left on device" in one_line(err)


def test_write_verdict_json_still_writes(tmp_path: Path) -> None:
    write_verdict_json(verdict(), tmp_path / "v.json")
    assert json.loads((tmp_path / "v.json").read_text())["summary"]["pass"] == 1


# These two need tasks.py `check` to call kit.verdict.check_output_path before verify_bundle (see the
# issue 12 row 8 report): until then the verification runs first and prints its table on stdout.
@pytest.mark.parametrize("where", ["dir", "missing"])
def test_check_with_a_bad_json_path_fails_before_verifying(tmp_path: Path, where: str) -> None:
    target = tmp_path if where == "dir" else tmp_path / "missing" / "v.json"
    done = invoke("check", "--bundle", str(RUN), "--json", str(target))
    line = assert_one_error_line(done)
    assert str(target) in line
    assert done.stdout == ""          # failed at once: no check table, no summary
    assert not (tmp_path / "missing").exists()
