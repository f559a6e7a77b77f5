"""Host-side bundle writing (docs/contracts.md section 2): the guest's files, ko/M.ko, boot.log.
(ktap/M.ktap is cut from dmesg.txt by the pipeline, kit/pipeline.py: deploy reads no test output.)

What the guest sends is untrusted: only the exact files its plan writes (guest/kitrun.sh) are written,
each at its own path; the host's files (target.toml, config, boot.log, ko/, the verdict) never come
from the guest.
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path

from kit.errors import InfraError


def module_name(ko: Path) -> str:
    """The name the guest plan uses for a module file: its stem (``kit_vmalloc.ko`` -> ``kit_vmalloc``)."""
    return ko.name.removesuffix(".ko")


# guest/kitrun.sh: the files it writes once, and per module M.
GUEST_GLOBAL_FILES = ("status.txt", "meminfo.txt", "cmdline.txt", "iomem.txt", "zoneinfo.txt", "dmesg.txt")
GUEST_MODULE_FILES = ("vmallocinfo/{m}.before.txt", "vmallocinfo/{m}.during.txt", "vmallocinfo/{m}.after.txt",
                      "modules/{m}.txt", "sections/{m}.txt", "insmod/{m}.txt")


def guest_output_names(modules: Sequence[str]) -> frozenset[str]:
    """Every relative path the guest plan may send back for ``modules``."""
    per_module = (pattern.format(m=m) for m in modules for pattern in GUEST_MODULE_FILES)
    return frozenset((*GUEST_GLOBAL_FILES, *per_module))


def write_guest_files(bundle_dir: Path, files: Mapping[str, bytes], expected: frozenset[str]) -> tuple[list[Path],
                                                                                                      list[str]]:
    """Write the files of ``files`` whose name is in ``expected`` under ``bundle_dir``; return them and the
    names refused (anything else the guest sent: a host file's name, a directory, a path that escapes)."""
    kept = [name for name in FIRST_BATCH_FILES if (bundle_dir / name).is_file()]
    written = [_write(bundle_dir / name, _merged(bundle_dir / name, data) if name in APPENDED_FILES else data)
               for name, data in sorted(files.items()) if name in expected and name not in kept]
    refused = sorted(name for name in files if name not in expected)
    return written, refused


# Files every plan run appends to: after a power-cycle the board's copy starts again, so the lines the
# bundle already holds (from before) are kept and the new ones added after them.
APPENDED_FILES = ("status.txt",)
# Files the plan writes once, before the first module (guest/kitrun.sh "Globals"): after a power-cycle
# the new boot writes them again, but the bundle keeps the ones read with the first module's snapshots
# (meminfo.txt's VmallocUsed is checked against vmallocinfo/<first module>.before.txt).
FIRST_BATCH_FILES = ("meminfo.txt", "cmdline.txt", "iomem.txt", "zoneinfo.txt")


def _merged(path: Path, data: bytes) -> bytes:
    try:
        old = path.read_bytes()
    except FileNotFoundError:
        return data
    except OSError as err:
        raise InfraError(f"cannot read {path}: {err.strerror}") from err
    kept = old.splitlines(keepends=True)
    return old + b"".join(line for line in data.splitlines(keepends=True) if line not in kept)


def copy_modules(bundle_dir: Path, modules: Sequence[Path]) -> list[Path]:
    """``ko/M.ko``: the exact binaries pushed to the guest."""
    return [_copy(ko, bundle_dir / "ko" / ko.name) for ko in modules]


def copy_console_log(console_log: Path, bundle_dir: Path) -> Path:
    """``boot.log``: the console as received (skipped when the transport already logs there)."""
    target = bundle_dir / "boot.log"
    if target.exists() and console_log.exists() and target.samefile(console_log):
        return target
    if not console_log.exists():
        return _write(target, b"")
    return _copy(console_log, target)


def _write(path: Path, data: bytes) -> Path:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    except OSError as err:
        raise InfraError(f"cannot write {path}: {err.strerror}") from err
    return path


def _copy(source: Path, target: Path) -> Path:
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)
    except OSError as err:
        raise InfraError(f"cannot copy {source} to {target}: {err.strerror}") from err
    return target
