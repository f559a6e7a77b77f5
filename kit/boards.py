"""Board files: ``boards/<name>.toml``, a real board (or anything that is up already) the kit attaches to.

A board file says how to reach the board (``[ssh]`` or ``[serial]``, exactly one), which kernel tree
builds its modules (one of the kit's targets, whose Debian kernel and cross compiler are fetched, or the
board's own BSP build tree ``kdir`` with its Module.symvers and .config), the facts the model needs when
the board cannot tell (``[facts]``) and timeouts. Relative paths are
relative to the board file; ``~`` is the user's home. Every key is checked: a typo fails with the file
and the key named (exit 2).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from deploy.ssh import SshTarget
from kbuild.targets import target_names
from kbuild.toml_fields import get, read_toml, reject_unknown_keys
from kit.errors import ParseError, UserError

if TYPE_CHECKING:
    from deploy.serial import SerialTarget

REPO = Path(__file__).resolve().parent.parent
BOARDS_DIR = REPO / "boards"
DEFAULT_WORK_DIR = "/tmp/kmodkit"
TOP_KEYS = {"description", "target", "kdir", "work_dir", "ssh", "serial", "facts", "power", "timeouts"}
SSH_KEYS = {"host", "port", "user", "identity_file", "known_hosts", "accept_new"}
SERIAL_KEYS = {"device", "baud", "user", "password", "password_env"}
FACTS_KEYS = {"ram_base", "mem_mib", "config"}
POWER_KEYS = {"reset_command", "up_after_s"}
TIMEOUT_KEYS = {"connect_s", "command_s", "plan_s", "login_s"}


@dataclass(frozen=True)
class BoardFacts:
    """What the model needs and the board may not tell: its RAM (when /proc/iomem is not readable) and
    its kernel's .config (when it is not the tree's own)."""

    ram_base: int | None = None
    mem_mib: int | None = None
    config: Path | None = None


@dataclass(frozen=True)
class PowerControl:
    """How the lab power-cycles the board: a shell command run on the host (a PDU's or a relay's CLI, a
    USB hub's port power), and how long the board may take to answer again afterwards."""

    reset_command: str
    up_after_s: float = 120.0


@dataclass(frozen=True)
class Board:
    name: str
    path: Path
    description: str
    target: str  # the kit target whose kernel headers and cross compiler build the modules
    kdir: Path | None  # the board's own kernel build tree instead of the target's Debian kernel
    link: SshTarget | SerialTarget
    facts: BoardFacts
    work_dir: str = DEFAULT_WORK_DIR  # everything the kit puts on the board, removed at the end
    plan_timeout_s: float = 300.0
    password_env: str | None = None  # the environment variable holding the serial login's password
    power: PowerControl | None = None  # when given, a board that goes down is power-cycled and the run goes on

    @property
    def transport(self) -> str:
        return "ssh" if isinstance(self.link, SshTarget) else "serial"

    @property
    def where(self) -> str:
        if isinstance(self.link, SshTarget):
            return f"ssh {self.link.user}@{self.link.host}:{self.link.port}"
        return f"serial {self.link.device} at {self.link.baud} baud"


def board_files(boards_dir: Path = BOARDS_DIR) -> list[Path]:
    return sorted(boards_dir.glob("*.toml"))


def resolve_board(given: str, boards_dir: Path = BOARDS_DIR) -> Path:
    """``--board``: a board file's path, or the name of one in boards/."""
    path = Path(given).expanduser()
    if path.is_file():
        return path
    named = boards_dir / f"{given}.toml"
    if named.is_file():
        return named
    known = ", ".join(p.stem for p in board_files(boards_dir)) or "(none)"
    raise UserError(f"--board {given}: no such board file; give a path to a .toml, or one of: {known}")


def load_board(given: str, boards_dir: Path = BOARDS_DIR) -> Board:
    path = resolve_board(given, boards_dir)
    table = read_toml(path)
    reject_unknown_keys(table, TOP_KEYS, path, "")
    links = [key for key in ("ssh", "serial") if key in table]
    if len(links) != 1:
        raise ParseError(str(path), None, "give exactly one of the tables [ssh] or [serial] (how to reach the board)")
    timeouts = _table(table, "timeouts", TIMEOUT_KEYS, path)
    link = (_ssh(table["ssh"], timeouts, path) if links[0] == "ssh" else _serial(table["serial"], timeouts, path))
    target = get(table, "target", str, path, "")
    if target not in target_names():
        raise ParseError(str(path), None, f"target {target!r} is not a kit target; valid: {', '.join(target_names())}")
    return Board(
        name=path.stem,
        path=path.resolve(),
        description=str(table.get("description", "")),
        target=target,
        kdir=_path(table, "kdir", path, ""),
        link=link,
        facts=_facts(_table(table, "facts", FACTS_KEYS, path), path),
        work_dir=_work_dir(table, path),
        plan_timeout_s=_seconds(timeouts, "plan_s", 300.0, path),
        password_env=_password_env(table.get("serial"), path),
        power=_power(_table(table, "power", POWER_KEYS, path), path),
    )


def _table(table: Mapping[str, Any], key: str, known: set[str], path: Path) -> Mapping[str, Any]:
    value = table.get(key, {})
    if not isinstance(value, dict):
        raise ParseError(str(path), None, f"{key} must be a table [{key}]")
    reject_unknown_keys(value, known, path, f"{key}.")
    return value


def _path(table: Mapping[str, Any], key: str, path: Path, prefix: str) -> Path | None:
    if key not in table:
        return None
    value = Path(get(table, key, str, path, prefix)).expanduser()
    return value if value.is_absolute() else (path.parent / value).resolve()


def _seconds(table: Mapping[str, Any], key: str, default: float, path: Path) -> float:
    value = table.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise ParseError(str(path), None, f"timeouts.{key} must be a positive number of seconds, got {value!r}")
    return float(value)


def _ssh(table: Any, timeouts: Mapping[str, Any], path: Path) -> SshTarget:
    if not isinstance(table, dict):
        raise ParseError(str(path), None, "ssh must be a table [ssh]")
    reject_unknown_keys(table, SSH_KEYS, path, "ssh.")
    port = table.get("port", 22)
    if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
        raise ParseError(str(path), None, f"ssh.port must be a TCP port (1-65535), got {port!r}")
    accept_new = table.get("accept_new", False)
    if not isinstance(accept_new, bool):
        raise ParseError(str(path), None, f"ssh.accept_new must be true or false, got {accept_new!r}")
    known_hosts = _path(table, "known_hosts", path, "ssh.") or Path.home() / ".ssh" / "known_hosts"
    return SshTarget(
        host=get(table, "host", str, path, "ssh."),
        port=port,
        user=str(table.get("user", "root")),
        identity_file=_path(table, "identity_file", path, "ssh."),
        known_hosts=known_hosts,
        accept_new=accept_new,
        connect_timeout_s=_seconds(timeouts, "connect_s", 10.0, path),
        command_timeout_s=_seconds(timeouts, "command_s", 60.0, path),
    )


def _serial(table: Any, timeouts: Mapping[str, Any], path: Path) -> SerialTarget:
    from deploy.serial import SerialTarget

    if not isinstance(table, dict):
        raise ParseError(str(path), None, "serial must be a table [serial]")
    reject_unknown_keys(table, SERIAL_KEYS, path, "serial.")
    baud = table.get("baud", 115200)
    if isinstance(baud, bool) or not isinstance(baud, int) or baud <= 0:
        raise ParseError(str(path), None, f"serial.baud must be a positive integer, got {baud!r}")
    return SerialTarget(
        device=get(table, "device", str, path, "serial."),
        baud=baud,
        user=str(table.get("user", "root")),
        password=_password(table, path),
        login_timeout_s=_seconds(timeouts, "login_s", 30.0, path),
        command_timeout_s=_seconds(timeouts, "command_s", 60.0, path),
    )


def _password(table: Mapping[str, Any], path: Path) -> str | None:
    """``password`` (None: the board logs in without one, or ``password_env`` gives it at run time)."""
    if "password" in table and "password_env" in table:
        raise ParseError(str(path), None, "give serial.password or serial.password_env, not both")
    return get(table, "password", str, path, "serial.") if "password" in table else None


def board_link(board: Board) -> SshTarget | SerialTarget:
    """The link with its secret filled in: ``serial.password_env`` is read when the run attaches (so that
    ``invoke boards`` lists a board whose password is not exported)."""
    name = board.password_env
    if name is None or isinstance(board.link, SshTarget):
        return board.link
    if name not in os.environ:
        raise UserError(f"{board.path}: serial.password_env names ${name}, which is not set: export {name}=...")
    return dataclasses.replace(board.link, password=os.environ[name])


def _password_env(table: Any, path: Path) -> str | None:
    if not isinstance(table, dict) or "password_env" not in table:
        return None
    return get(table, "password_env", str, path, "serial.")


def _facts(table: Mapping[str, Any], path: Path) -> BoardFacts:
    ram_base = table.get("ram_base")
    mem_mib = table.get("mem_mib")
    for key, value in (("ram_base", ram_base), ("mem_mib", mem_mib)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
            raise ParseError(str(path), None, f"facts.{key} must be a non-negative integer, got {value!r}")
    if (ram_base is None) != (mem_mib is None):
        raise ParseError(str(path), None, "give facts.ram_base and facts.mem_mib together (one RAM bank), or "
                         "neither (the board's /proc/iomem is read)")
    config = _path(table, "config", path, "facts.")
    if config is not None and not config.is_file():
        raise UserError(f"{path}: facts.config {config} does not exist: give the board kernel's .config")
    return BoardFacts(ram_base, mem_mib, config)


def _power(table: Mapping[str, Any], path: Path) -> PowerControl | None:
    if not table:
        return None
    command = get(table, "reset_command", str, path, "power.")
    if not command.strip():
        raise ParseError(str(path), None, "power.reset_command is empty: give the shell command that power-cycles "
                         "the board, or remove [power]")
    up_after = table.get("up_after_s", 120.0)
    if isinstance(up_after, bool) or not isinstance(up_after, int | float) or up_after <= 0:
        raise ParseError(str(path), None, f"power.up_after_s must be a positive number of seconds, got {up_after!r}")
    return PowerControl(command, float(up_after))


def _work_dir(table: Mapping[str, Any], path: Path) -> str:
    work = str(table.get("work_dir", DEFAULT_WORK_DIR))
    parts = [p for p in work.split("/") if p]
    if not work.startswith("/") or len(parts) < 2 or any(p in (".", "..") for p in parts):
        raise ParseError(str(path), None, f"work_dir {work!r} is removed at the end of a run: give an absolute "
                         "path two levels down at least (default /tmp/kmodkit)")
    return work
