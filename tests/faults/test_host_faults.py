"""Faults of the host around a run: a results directory that is read-only or fills up (a real small
tmpfs, mounted here as root), and a kernel download killed half-way (a real fetch from Debian's mirror,
into a temporary cache, SIGKILLed while its packages arrive)."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from kbuild.kernels import default_cache_dir, fetch_debian_kernel
from kbuild.targets import load_target
from tests.conftest import debian_kernel
from tests.faults.conftest import REPO, FaultRow, left_behind, record, start_invoke

pytestmark = [pytest.mark.e2e, pytest.mark.faults]

PAGE = 4096


def pages(size: int) -> int:
    return -(-size // PAGE)


@contextmanager
def tmpfs(where: Path, options: str) -> Iterator[Path]:
    """A real tmpfs mounted at ``where`` (root only), unmounted afterwards whatever happened."""
    where.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(where)], check=True)
    try:
        yield where
    finally:
        subprocess.run(["umount", str(where)], check=True)


def mid_run_size() -> int:
    """A tmpfs that takes target.toml, config and ko/ (written before the boot) with a few pages to spare,
    so that the disk fills while the guest's files are written (QEMU running)."""
    config = pages(debian_kernel("6.1").config.stat().st_size)
    shipped = sorted((REPO / "generated" / "arm-6.1" / "ship").glob("kit_*.ko"))
    modules = sum(pages(ko.stat().st_size) for ko in shipped) if len(shipped) == 5 else 5 * 4
    return (config + modules + 1 + 6) * PAGE


@pytest.mark.parametrize("case", ["read-only", "full from the start", "full during the collection"])
def test_results_directory_unwritable_or_full_exits_3_with_one_line(tmp_path: Path, case: str) -> None:
    options = {"read-only": "ro,size=64k", "full from the start": "size=64k",
               "full during the collection": f"size={mid_run_size() // 1024}k"}[case]
    with tmpfs(tmp_path / "results", options) as results:
        process = start_invoke("run", "--results", str(results))
        started = time.monotonic()
        out, err = process.communicate(timeout=300)
        elapsed = time.monotonic() - started
        left = left_behind(process.pid)
        held = sorted(str(p.relative_to(results)) for p in results.rglob("*") if p.is_file())
    errors = [line for line in err.splitlines() if line.strip()]
    record(FaultRow(f"results directory {case} (tmpfs {options})", (errors[-1] if errors else "-")[:90],
                    process.returncode, elapsed, f"{len(held)} files: {', '.join(held)[:80]}",
                    "nothing" if not left else ", ".join(left)))

    assert left == [], left
    if case == "full during the collection":
        assert "\nboot: " in "\n" + out, "the disk must fill while QEMU runs"
    assert process.returncode == 3, (out[-2000:], err[-2000:])
    assert "Traceback" not in err
    assert len(errors) == 1, errors
    assert "internal error" not in err, err  # a full or read-only disk is the machine's, not a bug of the kit
    assert ("Read-only file system" if case == "read-only" else "No space left on device") in err, err
    assert str(results) in err, err


def _session_processes(sid: int) -> list[tuple[int, str]]:
    """The processes of session ``sid`` (the killed fetch and whatever it started), by pid."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        if int(fields[3]) == sid and fields[0] != "Z":  # session id; zombies are gone, only not reaped
            found.append((int(entry.name), cmdline.strip()))
    return found


def _tree_listing(root: Path) -> dict[str, str]:
    """Every file and symlink under ``root``: its size (its sha256 too when the kernel boots or builds with
    it: the image, busybox, the headers' configuration and symbol versions), or its link target."""
    critical = re.compile(r"boot/vmlinuz-.*|bin/busybox|usr/src/linux-headers-[^/]*-armmp/(\.config|Module\.symvers)")
    listing: dict[str, str] = {}
    for path in root.rglob("*"):
        relative = str(path.relative_to(root))
        if path.is_symlink():
            listing[relative] = "-> " + os.readlink(path)
        elif path.is_file():
            listing[relative] = str(path.stat().st_size)
            if critical.fullmatch(relative):
                with path.open("rb") as file:
                    listing[relative] += " " + hashlib.file_digest(file, "sha256").hexdigest()
    return listing


FETCH = ("import sys; from pathlib import Path; from kbuild.kernels import fetch_debian_kernel; "
         "from kbuild.targets import load_target; fetch_debian_kernel(load_target('arm-6.1'), cache=Path(sys.argv[1]))")
CUT_AT_BYTES = 4 << 20  # some of the ~45 MB of packages


def test_a_kernel_download_cut_half_way_is_fetched_again_intact(tmp_path: Path) -> None:
    reference = debian_kernel("6.1")  # the same kernel in the user's cache: the tree to compare with
    cache = tmp_path / "cache"
    # the package lists of the user's cache (same mirror state, so the same kernel; no `apt-get update`)
    (cache / "apt").mkdir(parents=True)
    shutil.copy2(default_cache_dir() / "apt" / "sources.list", cache / "apt" / "sources.list")
    shutil.copytree(default_cache_dir() / "apt" / "lists", cache / "apt" / "lists")
    kernels = cache / "kernels" / "armhf"
    with (tmp_path / "fetch.log").open("wb") as output:
        process = subprocess.Popen([sys.executable, "-c", FETCH, str(cache)], cwd=REPO, start_new_session=True,
                                   stdout=output, stderr=subprocess.STDOUT)
    cut_at = 0
    leftovers: list[tuple[int, str]] = []
    give_up = time.monotonic() + 600
    try:
        while process.poll() is None and time.monotonic() < give_up:
            arrived = sum(p.stat().st_size for p in kernels.glob("*.tmp-*/**/*") if p.is_file()) \
                if kernels.is_dir() else 0
            if arrived >= CUT_AT_BYTES:
                os.kill(process.pid, signal.SIGKILL)
                cut_at = arrived
                break
            time.sleep(0.02)
        process.wait(timeout=60)
        deadline = time.monotonic() + 10  # what it started (apt-get, its methods) may take a moment to end
        while (leftovers := _session_processes(process.pid)) and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        for pid, _cmdline in _session_processes(process.pid):  # whatever is still running: ours, by pid
            os.kill(pid, signal.SIGKILL)
    assert cut_at > 0, (f"the fetch ended (status {process.returncode}) before {CUT_AT_BYTES} bytes arrived: "
                        f"{(tmp_path / 'fetch.log').read_text(errors='replace')[-1500:]}")
    assert process.returncode == -signal.SIGKILL
    half = sorted(str(p.relative_to(kernels)) for p in kernels.iterdir())
    assert all(".tmp-" in name for name in half), half  # nothing that looks complete

    started = time.monotonic()
    tree = fetch_debian_kernel(load_target("arm-6.1"), cache=cache)
    refetch_s = time.monotonic() - started

    assert (tree.release, tree.debian_version) == (reference.release, reference.debian_version)
    entries = sorted(p.name for p in kernels.iterdir())
    assert entries == [f"{tree.release}_{tree.debian_version}"], entries  # the half-written one is gone
    ours, theirs = _tree_listing(tree.kdir.parents[2]), _tree_listing(reference.kdir.parents[2])
    makefile = str(tree.kdir.relative_to(tree.kdir.parents[2]) / "Makefile")  # names its own cache: differs
    ours.pop(makefile)
    theirs.pop(makefile)
    assert ours == theirs  # every file of the tree, the same size; what boots and builds, the same bytes
    record(FaultRow(f"kernel download killed (SIGKILL) after {cut_at >> 20} MiB", "fetched again, intact", "-",
                    refetch_s, f"tree of {len(ours)} files as in the user's cache",
                    "nothing" if not leftovers else f"{len(leftovers)} processes: {leftovers[0][1][:60]}"))
    assert leftovers == [], leftovers
