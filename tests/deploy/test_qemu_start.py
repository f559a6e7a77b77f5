"""QEMU's own start: the kit's command needs no firmware file, and a QEMU that dies says why.

Real qemu-system-arm and the real Debian 6.1 kernel. ``-L EMPTY`` points QEMU's data directory at an
empty folder: a machine without ipxe-qemu (a fresh Debian 12 with --no-install-recommends) as seen
on any host, whatever it has installed.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

from deploy.errors import TransportLost
from deploy.qemu import qemu_command, qemu_exit_reason, start_qemu
from tests.deploy.conftest import kernel

pytestmark = pytest.mark.e2e


def _first_output(command: list[str], stderr_path: Path, wait_s: float = 30.0) -> tuple[bytes, int | None]:
    """What QEMU printed on the console until the kernel's first line (or its exit), and its exit status."""
    with stderr_path.open("wb") as stderr:
        process = start_qemu(command, stderr)
    assert process.stdout is not None
    seen = b""
    deadline = time.monotonic() + wait_s
    try:
        while b"Booting Linux" not in seen and time.monotonic() < deadline and process.poll() is None:
            chunk = process.stdout.read1(4096)
            if not chunk:
                break
            seen += chunk
    finally:
        process.kill()
        process.wait()
    return seen, (None if b"Booting Linux" in seen else process.returncode)


def test_the_kits_qemu_command_needs_no_firmware_file(tmp_path: Path) -> None:
    kern = kernel("6.1")
    (tmp_path / "empty").mkdir()
    initrd = tmp_path / "initrd"
    initrd.write_bytes(b"")
    command = [*qemu_command(kern.target.qemu, kern.image, initrd, kern.tree.dtb, kern.target.qemu.append),
               "-L", str(tmp_path / "empty")]
    seen, status = _first_output(command, tmp_path / "stderr")
    assert b"Booting Linux" in seen, (status, (tmp_path / "stderr").read_text())


def test_qemu_missing_a_romfile_says_so_in_one_line(tmp_path: Path) -> None:
    """The fresh-machine failure of issue 7: virt's default virtio NIC and no efi-virtio.rom."""
    kern = kernel("6.1")
    (tmp_path / "empty").mkdir()
    spec = kern.target.qemu
    # virt's default NIC asks for efi-virtio.rom; -L alone does not hide it where ipxe-qemu is installed (QEMU
    # also searches its own data directory), so the ROM's name is one that no package ships
    command = [spec.binary, "-M", spec.machine, "-m", "256", "-nographic", "-serial", "stdio", "-monitor", "none",
               "-kernel", str(kern.image), "-L", str(tmp_path / "empty"),
               "-global", "virtio-net-pci.romfile=efi-virtio-kit-missing.rom"]
    with (tmp_path / "stderr").open("wb") as stderr:
        process = start_qemu(command, stderr)
    try:
        reason = qemu_exit_reason(process, tmp_path / "stderr", guest_spoke=False)
    finally:
        process.kill()
        process.wait()
    assert reason is not None
    assert reason.startswith("QEMU exited with status 1 before the guest printed anything: ")
    assert 'failed to find romfile "efi-virtio-kit-missing.rom"' in reason
    assert "ipxe-qemu" in reason
    assert "\n" not in reason


def test_transport_names_qemus_reason_and_keeps_it_in_boot_log(tmp_path: Path) -> None:
    kern = kernel("6.1")
    missing = tmp_path / "no-such-zImage"
    transport = kern.transport(tmp_path / "work")
    transport.kernel_image = missing
    with pytest.raises(TransportLost) as raised:
        transport.boot()
    message = str(raised.value)
    assert message.startswith("QEMU exited with status 1 before the guest printed anything: ")
    assert f"could not load kernel '{missing}'" in message
    assert "the kernel image cannot be read" in message
    assert "could not load kernel" in transport.console_log.read_text()
    assert not transport.booted


def test_a_quiet_qemu_exit_is_not_explained(tmp_path: Path) -> None:
    """Exit 0 with nothing on stderr (the guest powered off): the console's own error stands."""
    process = subprocess.Popen(["true"], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    (tmp_path / "stderr").write_bytes(b"")
    assert qemu_exit_reason(process, tmp_path / "stderr", guest_spoke=True) is None
