"""What one run is asked to do: the target and the user's overrides (frozen; tasks.py builds it)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from analysis.model.units import parse_size
from kbuild.render import TEMPLATES_DIR
from kbuild.targets import Target
from kit.boards import Board
from kit.errors import UserError

REPO = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class RunRequest:
    target: Target
    mem_mib: int | None = None
    append: str = ""
    user_modules: tuple[Path, ...] = ()
    kdir: Path | None = None
    image: Path | None = None
    dtb: Path | None = None
    results_root: Path = REPO / "results"
    generated_root: Path = REPO / "generated"
    templates_dir: Path = TEMPLATES_DIR
    boot_timeout_s: float = 60.0
    plan_timeout_s: float = 300.0
    board: Board | None = None  # a board that is up already (boards/*.toml) instead of the QEMU guest

    def __post_init__(self) -> None:
        check_append(self.append, self.target)
        if self.board is not None:
            given = [flag for flag, value in (("--mem", self.mem_mib), ("--append", self.append),
                                              ("--image", self.image), ("--dtb", self.dtb)) if value]
            if given:
                raise UserError(f"{', '.join(given)}: QEMU settings, but --board {self.board.name} boots its own "
                                "kernel with its own RAM and command line; drop them (or run without --board)")

    @property
    def run_name(self) -> str:
        """What the results and the verdict are named after: the board, or the QEMU target."""
        return self.board.name if self.board is not None else self.target.name

    @property
    def memory_mib(self) -> int:
        return self.mem_mib if self.mem_mib is not None else self.target.qemu.mem_mib


MEM_RANGE_MIB = (64, 3072)  # armmp-lpae guests crash at /init with -m 4096 (debian-kernels.md)


def parse_mem_mib(text: str | int) -> int:
    """--mem as people type it: 768, 768M, 1G (MiB when no unit)."""
    value = str(text).strip()
    mib = int(value) if value.isdigit() else parse_size(value) >> 20 if value else 0
    if not MEM_RANGE_MIB[0] <= mib <= MEM_RANGE_MIB[1]:
        raise UserError(f"--mem {text}: give the guest RAM in MiB between {MEM_RANGE_MIB[0]} and "
                        f"{MEM_RANGE_MIB[1]} (e.g. --mem 768 or --mem 1G)")
    return mib


# COMMAND_LINE_SIZE, the kernel's buffer for its command line (the NUL included): arch/arm/include/uapi/
# asm/setup.h 1024; arch/arm64/include/uapi/asm/setup.h and arch/x86/include/asm/setup.h 2048.
COMMAND_LINE_SIZE = {"arm": 1024, "arm64": 2048, "x86_64": 2048, "x86": 2048}


def check_append(append: str, target: Target) -> None:
    """--append: one line of printable ASCII that fits the kernel's command line with the target's own."""
    bad = next((ch for ch in append if not (" " <= ch <= "~")), None)
    if bad is not None:
        raise UserError(f"--append: character {bad!r} is not allowed; give kernel parameters as one line of "
                        "printable ASCII, e.g. --append 'vmalloc=300M'")
    size = COMMAND_LINE_SIZE.get(target.arch, 1024)
    total = len(f"{target.qemu.append} {append}".strip())
    if total >= size:
        raise UserError(f"--append: the kernel command line would be {total} characters, {target.arch} kernels "
                        f"keep at most {size - 1} (COMMAND_LINE_SIZE); shorten it")
