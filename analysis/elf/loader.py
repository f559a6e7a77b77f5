"""Read a module file, compressed or not (MODULE_COMPRESS_{GZIP,XZ,ZSTD} install .ko.gz/.xz/.zst)."""

from __future__ import annotations

import gzip
import lzma
import shutil
import subprocess
from pathlib import Path

from kit.errors import InfraError, UserError


def read_module_bytes(path: Path) -> bytes:
    """The uncompressed ELF bytes of ``path`` (.ko, .ko.xz, .ko.gz or .ko.zst)."""
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise UserError(f"cannot read module {path}: {err.strerror}; check the path") from err
    name = path.name
    try:
        if name.endswith(".xz"):
            return lzma.decompress(raw)
        if name.endswith(".gz"):
            return gzip.decompress(raw)
    except (lzma.LZMAError, OSError, EOFError) as err:
        raise UserError(f"{path}: corrupt compressed module ({err}); re-copy it from the target") from err
    if name.endswith(".zst"):
        return _zstd_decompress(path)
    return raw


def _zstd_decompress(path: Path) -> bytes:
    tool = shutil.which("zstd")
    if tool is None:
        raise UserError(f"{path} is zstd-compressed and no `zstd` program is installed; "
                        "install zstd or pass the uncompressed .ko")
    done = subprocess.run([tool, "-dc", str(path)], capture_output=True, check=False)
    if done.returncode != 0:
        raise InfraError(f"zstd -dc {path} failed: {done.stderr.decode(errors='replace').strip()}")
    return done.stdout
