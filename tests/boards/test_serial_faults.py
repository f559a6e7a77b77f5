"""Serial-console board faults (issue 8 item 7), each through `invoke run --board`: the exit class, one
line saying what to do, the partial bundle kept, the board left as found (its console back at the
login prompt), and an end within a stated bound."""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

import pytest
import serial

from kbuild.make import build_module_dir
from tests.boards.conftest import SERIAL_PASSWORD
from tests.boards.guest import free_port
from tests.boards.serial_guest import SerialBoard, start_serial_board
from tests.boards.test_board_faults import DATA, PowerSwitch, error_lines, oops_then_crc7, power_cycled_once, with_power
from tests.boards.test_board_run import verdict
from tests.boards.test_serial_board import at_login_prompt, invoke_serial, serial_board_file, serial_state
from tests.conftest import debian_busybox, debian_kernel, debian_target, target_toolchain

pytestmark = [pytest.mark.board, pytest.mark.faults]


def test_wrong_password_is_bad_input_and_the_console_stays_at_login(serial_board: SerialBoard,
                                                                    tmp_path: Path) -> None:
    board_file = serial_board_file(serial_board.device, tmp_path / "b.toml")
    start = time.monotonic()
    run = invoke_serial("run", "--board", str(board_file), "--results", str(tmp_path / "r"), password="wrong")
    assert run.returncode == 2, run.stdout[-2000:] + run.stderr[-2000:]
    (line,) = error_lines(run.stderr)
    assert "refused the login of 'root'" in line and "password" in line
    assert time.monotonic() - start < 60
    assert at_login_prompt(serial_board.device)


def test_absent_device_is_bad_input(tmp_path: Path) -> None:
    board_file = serial_board_file("/dev/ttyKIT404", tmp_path / "b.toml")
    run = invoke_serial("run", "--board", str(board_file), "--results", str(tmp_path / "r"))
    assert run.returncode == 2, run.stderr
    (line,) = error_lines(run.stderr)
    assert "no serial device /dev/ttyKIT404" in line and "plugged in" in line


def test_busy_device_is_bad_input_and_the_holder_keeps_it(serial_board: SerialBoard, tmp_path: Path) -> None:
    """Another program holds the port (pyserial's exclusive lock, as a second kit run takes it)."""
    board_file = serial_board_file(serial_board.device, tmp_path / "b.toml")
    holder: Any = serial.Serial(serial_board.device, 115200, timeout=0.1, exclusive=True)
    try:
        run = invoke_serial("run", "--board", str(board_file), "--results", str(tmp_path / "r"))
        assert holder.is_open
    finally:
        holder.close()
    assert run.returncode == 2, run.stderr
    (line,) = error_lines(run.stderr)
    assert f"serial device {serial_board.device} is in use by another program" in line


def test_module_stuck_in_init_times_out_and_the_board_is_cleaned(serial_board: SerialBoard, tmp_path: Path) -> None:
    """plan_s 12 on the console: slow_init's init sleeps 25 s. The plan's deadline passes (exit 3); the
    kit interrupts the console's command (Ctrl-C), gets a shell again, waits for the init to return,
    unloads the module, removes its files and logs out."""
    shutil.copytree(DATA / "slow_init", tmp_path / "slow_init")
    (slow,) = build_module_dir(debian_kernel("6.1"), target_toolchain("6.1"), tmp_path / "slow_init")
    board_file = serial_board_file(serial_board.device, tmp_path / "slow.toml", plan_s="12")
    before = serial_state(serial_board.device, tmp_path / "before")
    start = time.monotonic()
    run = invoke_serial("run", "--board", str(board_file), "--results", str(tmp_path / "r"), "--module", str(slow.ko))
    elapsed = time.monotonic() - start
    assert run.returncode == 3, run.stdout[-2000:] + run.stderr[-2000:]
    assert "within 12 s" in run.stderr
    assert elapsed < 150, elapsed  # 12 s of plan + at most INIT_WAIT_S for the init, not a hung harness
    bundle = (tmp_path / "r" / "latest").resolve()
    assert (bundle / "verdict.json").is_file() and (bundle / "ktap" / "kit_vmalloc.ktap").is_file()
    assert "Ctrl-C" in (bundle / "boot.log").read_text(errors="replace")
    assert at_login_prompt(serial_board.device)
    assert serial_state(serial_board.device, tmp_path / "after") == before  # unloaded, no files


def test_a_board_that_panics_is_power_cycled_over_its_console(tmp_path: Path) -> None:
    """fault_oops panics the board (oops=panic; QEMU's -no-reboot: the board is gone, its console server
    closes). The console shows the oops: the kit reports it, runs [power] reset_command, waits for the
    login prompt of the new boot, logs in again and runs the next module (crc7)."""
    oops, crc7 = oops_then_crc7(tmp_path)
    port = free_port()
    switch = PowerSwitch(lambda: start_serial_board(debian_target("6.1").qemu, debian_kernel("6.1"),
                                                    debian_busybox("6.1"), tmp_path / "g", password=SERIAL_PASSWORD,
                                                    link="socket", port=port),
                         tmp_path / "power-request")
    switch.start()
    try:
        board_file = serial_board_file(f"socket://127.0.0.1:{port}", tmp_path / "cycled.toml")
        with_power(board_file, switch)
        run = invoke_serial("run", "--board", str(board_file), "--results", str(tmp_path / "r"),
                            "--module", str(oops), "--module", str(crc7))
        statuses = power_cycled_once(run, switch, tmp_path / "r")
        assert "panicked" in next(c["detail"] for c in verdict(tmp_path / "r")["checks"]  # type: ignore[union-attr]
                                  if c["id"] == "fault_oops.board_down")
        assert statuses["kit_alloc.no_leak"] == "pass"
        bundle = (tmp_path / "r" / "latest").resolve()
        assert "Internal error: " in (bundle / "boot.log").read_text(errors="replace")  # the console's tail
        assert at_login_prompt(f"socket://127.0.0.1:{port}")
    finally:
        switch.stop()
