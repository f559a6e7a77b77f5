"""Issue 8's figures: the default run on a board that is up (a QEMU guest acting as one, reached over SSH
and over its serial console) against the kit's own QEMU run of the same kernel and RAM, and a bare boot,
measured in the same process; plus the serial console's push throughput.

    python bench/board_run.py [--repeat 3]

The serial figures: the default run on the serial board (its console on a pty, which QEMU does not pace),
and the push of the default module set (five modules and the plan) through the console three ways: the
pty, and a console server (``socket://``) behind a proxy that paces each direction to a real 115200 8N1
line (11,520 bytes/s), so the time printed is what a USB-serial adapter at 115200 costs.

A board run has no boot in it (the board is up): it is build (up to date here), connect, push, plan,
fetch, clean-up, verify. The QEMU run boots its guest. Both verify the same checks.
"""

from __future__ import annotations

import argparse
import socket
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.run_ratio import bare_boot
from deploy.serial import BITS_PER_BYTE, SerialTarget, SerialTransport
from deploy.session import guest_files
from kbuild.targets import load_target
from kit.boards import load_board
from kit.request import RunRequest
from kit.session import RunSession
from tests.boards.guest import Board, free_port, start_board
from tests.boards.serial_guest import start_serial_board
from tests.conftest import debian_busybox, debian_kernel

TARGET = "arm-6.1"
PASSWORD = "bench-pw"
BAUD = 115200


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
        serial = start_serial_board(target.qemu, debian_kernel("6.1"), debian_busybox("6.1"), work / "serial",
                                    password=PASSWORD)
        try:
            request = RunRequest(target, results_root=results,
                                 board=load_board(str(serial_board_file(serial.device, work))))
            on_serial = median_of(args.repeat, lambda: timed_run(request))
            pushes = {"pty": push_default_set(serial.device, work / "push-pty", modules(qemu))}
        finally:
            serial.stop()
        server = start_serial_board(target.qemu, debian_kernel("6.1"), debian_busybox("6.1"), work / "server",
                                    password=PASSWORD, link="socket")
        try:
            pushes["console server"] = push_default_set(server.device, work / "push-tcp", modules(qemu))
            paced = PacedProxy(int(server.device.rsplit(":", 1)[1]), BAUD // BITS_PER_BYTE)
            pushes[f"paced {BAUD} 8N1"] = push_default_set(paced.url, work / "push-paced", modules(qemu))
        finally:
            server.stop()
    print(f"bare boot of {TARGET} in QEMU:        {bare:6.2f} s")
    print(f"default run, QEMU transport:      {in_qemu:6.2f} s  ({in_qemu / bare:.2f} x bare boot)")
    print(f"default run, SSH board (up):      {on_ssh:6.2f} s  ({on_ssh / bare:.2f} x bare boot, "
          f"{on_ssh / in_qemu:.2f} x the QEMU run); the board guest took {up:.1f} s to come up")
    print(f"default run, serial board (pty):  {on_serial:6.2f} s  ({on_serial / bare:.2f} x bare boot, "
          f"{on_serial / in_qemu:.2f} x the QEMU run)")
    for name, (files, size, wire, seconds) in pushes.items():
        print(f"push of the default set over the console, {name}: {files} files, {size} bytes ({wire} on the "
              f"line) in {seconds:.2f} s: {size / seconds / 1024:.1f} KiB/s of files, "
              f"{wire / seconds / 1024:.1f} KiB/s on the line")


def serial_board_file(device: str, work: Path) -> Path:
    path = work / "bench-serial.toml"
    path.write_text(f'target = "{TARGET}"\n[serial]\ndevice = "{device}"\npassword = "{PASSWORD}"\n')
    return path


def modules(request: RunRequest) -> list[Path]:
    session = RunSession(request, lambda _line: None)
    return session.shipped_modules()


def push_default_set(device: str, work: Path, shipped: list[Path]) -> tuple[int, int, int, float]:
    """Log in, push the default module set and the plan (each checked by md5 on the board), leave:
    (files, bytes, bytes on the line, seconds of the pushes alone)."""
    files = guest_files(shipped)
    with SerialTransport(SerialTarget(device, BAUD, password=PASSWORD, command_timeout_s=120), work) as console:
        console.boot()
        started = time.monotonic()
        console.push(files)
        seconds = time.monotonic() - started
        stats = console.push_stats
    return len(stats), sum(s[0] for s in stats), sum(s[1] for s in stats), seconds


class PacedProxy:
    """127.0.0.1:<port> -> 127.0.0.1:``target_port``, each direction paced to ``rate`` bytes/s (a UART)."""

    def __init__(self, target_port: int, rate: int) -> None:
        self.target_port, self.rate = target_port, rate
        self.listener = socket.create_server(("127.0.0.1", free_port()))
        self.url = f"socket://127.0.0.1:{self.listener.getsockname()[1]}"
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            client, _ = self.listener.accept()
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        due = time.monotonic()
        try:
            while chunk := source.recv(16):
                due = max(due, time.monotonic()) + len(chunk) / self.rate
                time.sleep(max(0.0, due - time.monotonic()))
                sink.sendall(chunk)
        except OSError:
            pass
        finally:
            for end in (source, sink):
                end.close()


def _timed(action: Callable[[], object]) -> float:
    started = time.monotonic()
    action()
    return time.monotonic() - started


if __name__ == "__main__":
    main()
