"""What one run is asked to do: the target and the user's overrides (frozen; tasks.py builds it)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from analysis.model.units import parse_size
from kbuild.render import TEMPLATES_DIR
from kbuild.targets import Target
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
