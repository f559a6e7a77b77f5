"""`invoke run --board` end to end (issue 8 items 1, 4, 6): the kit's default five families on a QEMU
guest acting as a board that is up already, reached over SSH, from a board file made the way README's
"Run on your board" says (boards/example-ssh.toml copied, its [ssh] values edited). The verdict must
be the QEMU transport's on the same kernel and RAM, check for check; the board is left as found."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from deploy.ssh import SshTarget, SshTransport
from tests.boards.guest import Board

pytestmark = [pytest.mark.board]

REPO = Path(__file__).resolve().parents[2]
# The check ids that name no guest state: facts about how the bundle was collected (the QEMU run's
# target.toml has its command line and RAM; a board's come from the board's own files).
TRANSPORT_FACTS = re.compile(r"^facts\.")


def edited_example(example: str, values: dict[str, str], out: Path) -> Path:
    """boards/<example>.toml with the given keys' values replaced, as a user edits a copy of it."""
    text = (REPO / "boards" / f"{example}.toml").read_text()
    for key, value in values.items():
        text, count = re.subn(rf"(?m)^{key} = .*?(\s+#.*)?$", lambda m, k=key, v=value: f"{k} = {v}", text)
        assert count == 1, f"{key} not in boards/{example}.toml"
    out.write_text(text)
    return out


def ssh_board_file(board: Board, known_hosts: Path, out: Path) -> Path:
    return edited_example("example-ssh", {"host": '"127.0.0.1"', "port": str(board.port),
                                          "identity_file": f'"{board.client_key}"',
                                          "known_hosts": f'"{known_hosts}"'}, out)


def invoke(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "invoke", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=900)


def verdict(results: Path) -> dict[str, object]:
    doc: dict[str, object] = json.loads((results / "latest" / "verdict.json").read_text())
    return doc


def checks_by_id(doc: dict[str, object]) -> dict[str, str]:
    checks = doc["checks"]
    assert isinstance(checks, list)
    return {c["id"]: c["status"] for c in checks if not TRANSPORT_FACTS.match(c["id"])}


def board_state(target: SshTarget, tmp_path: Path) -> str:
    """What a run must leave as it found: the kit's work dir, kit modules loaded, kptr_restrict."""
    with SshTransport(target, tmp_path / "state") as ssh:
        ssh.boot()
        return ssh.run("ls -d /tmp/kmodkit 2>&1; grep -c '^kit_' /proc/modules; "
                       "cat /proc/sys/kernel/kptr_restrict", 30).output


def test_run_on_ssh_board_matches_the_qemu_run(board: Board, known_hosts: Path, target: SshTarget,
                                               qemu_reference: dict[str, str], tmp_path: Path) -> None:
    board_file = ssh_board_file(board, known_hosts, tmp_path / "myboard.toml")
    before = board_state(target, tmp_path)
    assert "No such file" in before, before

    on_board = invoke("run", "--board", str(board_file), "--results", str(tmp_path / "board-results"))
    assert on_board.returncode == 0, on_board.stdout[-3000:] + on_board.stderr[-3000:]
    board_doc = verdict(tmp_path / "board-results")
    assert board_doc["status"] == "pass"
    assert board_doc["target"] == "myboard"
    assert board_state(target, tmp_path) == before  # nothing left: files, modules, kptr_restrict

    qemu_checks, board_checks = qemu_reference, checks_by_id(board_doc)
    assert len(board_checks) > 400
    # the same checks with the same statuses; the board's extra ones are about the modules it had loaded
    # itself (its NIC drivers), checked the same way as the kit's
    assert {k: board_checks.get(k) for k in qemu_checks} == qemu_checks
    extra = set(board_checks) - set(qemu_checks)
    assert {part for k in extra for part in k.split(".")} & set(board.preloaded_modules), sorted(extra)
    assert all(any(f".{m}." in k for m in board.preloaded_modules) for k in extra), sorted(extra)
    assert all(board_checks[k] == "pass" for k in extra), sorted(extra)

    bundle = (tmp_path / "board-results" / "latest").resolve()
    facts = (bundle / "target.toml").read_text()
    assert 'transport = "ssh"' in facts and "mem_mib" not in facts  # the RAM is the board's (iomem.txt)
    for module in ("kit_vmalloc", "kit_vmalloc_exec", "kit_ioremap", "kit_kmap", "kit_alloc"):
        assert (bundle / "ktap" / f"{module}.ktap").read_text().startswith("KTAP version 1")


def test_boards_lists_the_example_files() -> None:
    listed = invoke("boards")
    assert listed.returncode == 0, listed.stderr
    assert "example-ssh" in listed.stdout and "ssh root@192.168.1.50:22" in listed.stdout
    assert "example-serial" in listed.stdout and "serial /dev/ttyUSB0 at 115200 baud" in listed.stdout


def test_driver_stacks_on_the_ssh_board(board: Board, known_hosts: Path, target: SshTarget,
                                        tmp_path: Path) -> None:
    """Item 5 on a board: two stacks given top first (the kit's own base+user and Debian's static-key
    pair), loaded base first and checked; then a module whose base the board has loaded itself: it loads
    against the board's, and the board's base stays loaded (the board is left as found)."""
    from tests.conftest import build_own_stack, debian_lib_module

    board_file = ssh_board_file(board, known_hosts, tmp_path / "stackboard.toml")
    own = build_own_stack(tmp_path / "stack")
    modules = [own["stack_user"], debian_lib_module("test_static_keys"), own["stack_base"],
               debian_lib_module("test_static_key_base")]
    args = [a for ko in modules for a in ("--module", str(ko))]
    stacks = invoke("run", "--board", str(board_file), "--results", str(tmp_path / "r1"), *args)
    assert stacks.returncode == 0, stacks.stdout[-3000:] + stacks.stderr[-3000:]
    status = ((tmp_path / "r1" / "latest" / "status.txt").read_text().splitlines())
    assert status[-4:] == ["stack_base insmod=0 rmmod=0", "stack_user insmod=0 rmmod=0",
                           "test_static_key_base insmod=0 rmmod=0", "test_static_keys insmod=0 rmmod=0"]
    checks = checks_by_id(verdict(tmp_path / "r1"))
    for module in ("stack_base", "stack_user", "test_static_key_base", "test_static_keys"):
        assert checks[f"{module}.proc_modules.size"] == "pass"
        assert checks[f"{module}.no_leak"] == "pass"

    with SshTransport(target, tmp_path / "own") as ssh:  # the board's own base module, loaded by "the lab"
        ssh.boot()
        ssh.push({"/root/test_static_key_base.ko": debian_lib_module("test_static_key_base")})
        assert ssh.run("insmod /root/test_static_key_base.ko && rm /root/test_static_key_base.ko", 30).ok
    try:
        alone = invoke("run", "--board", str(board_file), "--results", str(tmp_path / "r2"),
                       "--module", str(debian_lib_module("test_static_keys")))
        assert alone.returncode == 0, alone.stdout[-3000:] + alone.stderr[-3000:]
        assert checks_by_id(verdict(tmp_path / "r2"))["test_static_keys.insmod"] == "pass"
        with SshTransport(target, tmp_path / "after") as ssh:
            ssh.boot()
            assert ssh.run("grep -c '^test_static_key' /proc/modules", 30).output == "1\n"  # the board's base only
    finally:
        with SshTransport(target, tmp_path / "undo") as ssh:
            ssh.boot()
            ssh.run("rmmod test_static_key_base", 30)


def watch_three_times(board_file: Path, results: Path) -> None:
    """`invoke watch --board` three runs: one attach, the same checks and verdicts each time (facts.* left
    out: a board up for long loses its boot lines from the ring buffer between runs, watched or not)."""
    from kbuild.targets import load_target
    from kit.boards import load_board
    from kit.request import RunRequest
    from kit.watch import WatchLoop

    the_board = load_board(str(board_file))
    request = RunRequest(load_target(the_board.target), results_root=results, board=the_board,
                         plan_timeout_s=the_board.plan_timeout_s)
    loop = WatchLoop(request, lambda _line: None)
    try:
        runs = [loop.iterate(everything=True) for _ in range(3)]
    finally:
        loop.close()
    first = runs[0].outcome
    assert first is not None and first.verdict is not None and first.verdict.status == "pass", first
    guest = [{k: v for k, v in run.checks.items() if not TRANSPORT_FACTS.match(k)} for run in runs]
    assert guest[1] == guest[0] and guest[2] == guest[0]
    assert not runs[1].fresh_boot and not runs[2].fresh_boot and loop.warm.boots == 1


def test_watch_on_the_ssh_board(board: Board, known_hosts: Path, target: SshTarget, tmp_path: Path) -> None:
    """`invoke watch --board` over SSH, the board left as found when the loop ends."""
    board_file = ssh_board_file(board, known_hosts, tmp_path / "watched.toml")
    before = board_state(target, tmp_path)
    watch_three_times(board_file, tmp_path / "r")
    assert board_state(target, tmp_path) == before
