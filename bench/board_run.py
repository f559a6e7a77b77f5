"""Issue 8's figures: the default run on a board that is up (a QEMU guest acting as one, reached over SSH
and over its serial console) against the kit's own QEMU run of the same kernel and RAM, and a bare boot,
measured in the same process; plus the serial console's push throughput.

    python bench/board_run.py [--repeat 3] [--transports ssh,serial]

A board run has no boot in it (the board is up): it is build (up to date here), connect, push, plan,
fetch, clean-up, verify. The QEMU run boots its guest. Both verify the same checks.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.run_ratio import bare_boot
from kbuild.targets import load_target
from kit.boards import load_board
from kit.request import RunRequest
from kit.session import RunSession
from tests.boards.guest import Board, start_board
from tests.conftest import debian_busybox, debian_kernel

TARGET = "arm-6.1"


def timed_run(request: RunRequest) -> float:
    started = time.monotonic()
    outcome = RunSession(request, lambda _line: None).run()
    elapsed = time.monotonic() - started
    assert outcome.verdict is not None and outcome.verdict.status == "pass", outcome.verdict.run_error
    return elapsed


def ssh_board_file(board: Board, work: Path) -> Path:
    known = work / "known_hosts"
    known.write_text(board.known_hosts_line())
    path = work / "bench-ssh.toml"
    path.write_text(f'target = "{TARGET}"\n[ssh]\nhost = "{board.host}"\nport = {board.port}\n'
                    f'identity_file = "{board.client_key}"\nknown_hosts = "{known}"\n')
    return path


def median_of(repeat: int, action: Callable[[], float]) -> float:
    return statistics.median(action() for _ in range(repeat))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    target = load_target(TARGET)
    with tempfile.TemporaryDirectory(prefix="kit-bench-board-") as tmp:
        work = Path(tmp)
        results = work / "results"
        qemu = RunRequest(target, results_root=results)
        timed_run(qemu)  # build once: both runs below find the modules up to date
        bare = median_of(args.repeat, lambda: _timed(lambda: bare_boot(qemu, work)))
        in_qemu = median_of(args.repeat, lambda: timed_run(qemu))
        started = time.monotonic()
        board = start_board(target.qemu, debian_kernel("6.1"), debian_busybox("6.1"), work / "ssh-board")
        up = time.monotonic() - started
        try:
            request = RunRequest(target, results_root=results, board=load_board(str(ssh_board_file(board, work))))
            on_ssh = median_of(args.repeat, lambda: timed_run(request))
        finally:
            board.stop()
    print(f"bare boot of {TARGET} in QEMU:        {bare:6.2f} s")
    print(f"default run, QEMU transport:      {in_qemu:6.2f} s  ({in_qemu / bare:.2f} x bare boot)")
    print(f"default run, SSH board (up):      {on_ssh:6.2f} s  ({on_ssh / bare:.2f} x bare boot, "
          f"{on_ssh / in_qemu:.2f} x the QEMU run); the board guest took {up:.1f} s to come up")


def _timed(action: Callable[[], object]) -> float:
    started = time.monotonic()
    action()
    return time.monotonic() - started


if __name__ == "__main__":
    main()
