"""Read a bundle directory (docs/contracts.md §2) into parsed objects. Missing files stay ``None``.

Every text file a parser reads is first passed through :func:`analysis.parsers.paste.normalize_paste`
(quoting, syslog prefixes, indentation, escaped newlines... of a pasted capture undone; a clean file is
unchanged). A single file instead of a directory is one pasted capture: it is cut into the bundle's files
by :func:`analysis.parsers.paste.split_paste`.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from analysis.parsers import (
    BootLog,
    KtapDocument,
    ProcModule,
    VmallocEntry,
    extract_load_messages,
    extract_module_ktap,
    parse_boot_log,
    parse_ktap,
    parse_meminfo,
    parse_proc_modules,
    parse_sections,
    parse_vmallocinfo,
)
from analysis.parsers.paste import normalize_paste, split_paste, unknown_pointers_as_zero
from kit.errors import ParseError, UserError

SNAPSHOTS = ("before", "during", "after")


@dataclass(frozen=True)
class ModuleRun:
    """What the guest recorded around one module's insmod/rmmod."""

    name: str
    insmod_rc: int | None
    rmmod_rc: int | None
    ktap: KtapDocument | None
    vmallocinfo: dict[str, list[VmallocEntry]]  # "before" / "during" / "after" -> entries
    modules: list[ProcModule] | None
    sections: dict[str, int] | None
    ko: Path | None
    load_messages: tuple[str, ...] = ()  # the kernel's lines during insmod, then insmod's own stderr

    @property
    def loaded(self) -> bool:
        """insmod succeeded (or its status is unknown, e.g. a board capture) and /proc/modules lists it."""
        if self.insmod_rc not in (None, 0):
            return False
        return self.modules is None or any(m.name == self.name.replace("-", "_") for m in self.modules)


@dataclass(frozen=True)
class Bundle:
    path: Path  # the bundle directory, or the one pasted file it was split from (load_bundle of a file)
    facts: dict[str, object]
    config: dict[str, str] | None
    boot: BootLog | None
    dmesg: str | None
    meminfo: dict[str, int] | None
    cmdline: str | None
    vmallocinfo: list[VmallocEntry] | None  # a single snapshot (board captures)
    modules: list[ProcModule] | None        # a single /proc/modules (board captures)
    runs: list[ModuleRun] = field(default_factory=list)

    @property
    def kernel_facts(self) -> dict[str, object]:
        kernel = self.facts.get("kernel")
        return kernel if isinstance(kernel, dict) else {}


def _read(path: Path) -> str | None:
    try:
        if not path.is_file():
            return None
        return path.read_text(errors="replace")
    except OSError as err:  # a name from status.txt too long for a file name, an unreadable file
        raise ParseError(str(path)[:200], None, f"cannot read it: {err.strerror or err}") from err


def _read_text(path: Path) -> str | None:
    """A text file a parser reads, its paste wrapping undone (normalize_paste)."""
    text = _read(path)
    return normalize_paste(text) if text is not None else None


def _parse_vmallocinfo(text: str, path: str) -> list[VmallocEntry]:
    """parse_vmallocinfo, a ``0x(ptrval)`` address read as not shown (zero)."""
    return parse_vmallocinfo(unknown_pointers_as_zero(text), path)


def _strip_provenance(text: str) -> str:
    """Captures start with ``#`` lines naming their source (shared/README.md)."""
    if not text.startswith("#"):
        return text  # the usual case (a run's own files): nothing to cut, no copy of a 100k-line file
    lines = text.splitlines(keepends=True)
    while lines and lines[0].startswith("#"):
        lines.pop(0)
    return "".join(lines)


def parse_kconfig(text: str) -> dict[str, str]:
    """``CONFIG_X=y`` lines of a .config; ``# CONFIG_X is not set`` becomes ``n``."""
    config: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("CONFIG_") and "=" in line:
            key, value = line.split("=", 1)
            config[key] = value.strip('"')
        elif line.startswith("# CONFIG_") and line.endswith(" is not set"):
            config[line[2:-len(" is not set")]] = "n"
    return config


def _read_facts(path: Path) -> dict[str, object]:
    text = _read(path)
    if text is None:
        return {}
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise ParseError(str(path), getattr(err, "lineno", None), f"not valid TOML: {err}") from err
    except ValueError as err:  # an integer of more digits than int() converts
        raise ParseError(str(path), None, f"not usable TOML: {err}") from err


def _read_status(path: Path) -> dict[str, tuple[int | None, int | None]]:
    """``M insmod=RC rmmod=RC`` lines."""
    text = _read(path)
    status: dict[str, tuple[int | None, int | None]] = {}
    if text is None:
        return status
    for number, line in enumerate(text.splitlines(), 1):
        words = line.split()
        if not words or words[0].startswith("#"):
            continue
        values: dict[str, int | None] = {"insmod": None, "rmmod": None}
        for word in words[1:]:
            key, _, value = word.partition("=")
            if key not in values or not re.fullmatch(r"-?[0-9]{1,10}", value):
                raise ParseError(str(path), number, f"expected 'MODULE insmod=RC rmmod=RC', got {line!r}")
            values[key] = int(value)
        status[words[0]] = (values["insmod"], values["rmmod"])
    return status


def _module_names(root: Path, status: dict[str, tuple[int | None, int | None]]) -> list[str]:
    names = list(status)
    for sub, suffix in (("ktap", ".ktap"), ("modules", ".txt"), ("sections", ".txt")):
        for file in sorted((root / sub).glob(f"*{suffix}")):
            name = file.name[: -len(suffix)]
            if name not in names:
                names.append(name)
    for file in sorted((root / "vmallocinfo").glob("*.before.txt")):
        name = file.name[: -len(".before.txt")]
        if name not in names:
            names.append(name)
    return names


def _module_ktap(root: Path, name: str, dmesg: str | None) -> KtapDocument | None:
    path = root / "ktap" / f"{name}.ktap"
    text = _read(path)
    if text is None and dmesg is not None:
        try:
            text = extract_module_ktap(dmesg, name, str(root / "dmesg.txt")) or None
        except ParseError:
            text = None  # the module was never loaded in this boot: its run checks say so
    return parse_ktap(text, str(path)) if text is not None else None


def _module_run(root: Path, name: str, status: tuple[int | None, int | None] | None,
                dmesg: str | None) -> ModuleRun:
    snapshots: dict[str, list[VmallocEntry]] = {}
    for when in SNAPSHOTS:
        path = root / "vmallocinfo" / f"{name}.{when}.txt"
        text = _read_text(path)
        if text is not None:
            snapshots[when] = _parse_vmallocinfo(text, str(path))
    modules_path = root / "modules" / f"{name}.txt"
    modules_text = _read_text(modules_path)
    sections_path = root / "sections" / f"{name}.txt"
    sections_text = _read_text(sections_path)
    ko = root / "ko" / f"{name}.ko"
    return ModuleRun(
        name=name,
        insmod_rc=status[0] if status else None,
        rmmod_rc=status[1] if status else None,
        ktap=_module_ktap(root, name, dmesg),
        vmallocinfo=snapshots,
        modules=parse_proc_modules(modules_text, str(modules_path)) if modules_text is not None else None,
        sections=parse_sections(sections_text, str(sections_path)) if sections_text is not None else None,
        ko=ko if ko.is_file() else None,
        load_messages=_load_messages(root, name, dmesg),
    )


def _load_messages(root: Path, name: str, dmesg: str | None) -> tuple[str, ...]:
    kernel = extract_load_messages(dmesg, name) if dmesg is not None else []
    insmod = (_read(root / "insmod" / f"{name}.txt") or "").splitlines()
    return tuple(line.strip() for line in (*kernel, *insmod) if line.strip())


def _first_text(root: Path, *names: str) -> tuple[str, Path] | None:
    for name in names:
        text = _read_text(root / name)
        if text is not None:
            return _strip_provenance(text), root / name
    return None


def load_bundle(root: Path) -> Bundle:
    """Parse every bundle file present, or the parts of one pasted file (split_paste). Raises UserError
    when there is nothing to check."""
    if root.is_file():
        return _checked(_load_paste(root), f"{root} holds no boot log, /proc/meminfo, /proc/vmallocinfo or "
                                           "/proc/modules lines")
    if not root.is_dir():
        raise UserError(f"bundle {root} is not a directory or a file: pass the run directory "
                        "(results/<target>/<run-id>) or a file of pasted captures")
    facts = _read_facts(root / "target.toml")
    config_text = _read(root / "config")
    boot = _first_text(root, "boot.log", "dmesg.txt")
    dmesg = _read_text(root / "dmesg.txt")
    meminfo = _first_text(root, "meminfo.txt")
    cmdline = _first_text(root, "cmdline.txt")
    vmalloc = _first_text(root, "vmallocinfo.txt")
    modules = _first_text(root, "modules.txt")
    status = _read_status(root / "status.txt")
    runs = [_module_run(root, name, status.get(name), dmesg) for name in _module_names(root, status)]
    bundle = Bundle(
        path=root,
        facts=facts,
        config=parse_kconfig(config_text) if config_text is not None else None,
        boot=parse_boot_log(boot[0], str(boot[1])) if boot else None,
        dmesg=dmesg,
        meminfo=parse_meminfo(meminfo[0], str(meminfo[1])) if meminfo else None,
        cmdline=cmdline[0].strip() if cmdline else None,
        vmallocinfo=_parse_vmallocinfo(vmalloc[0], str(vmalloc[1])) if vmalloc else None,
        modules=parse_proc_modules(modules[0], str(modules[1])) if modules else None,
        runs=runs,
    )
    return _checked(bundle, f"bundle {root} has none of boot.log, dmesg.txt, meminfo.txt, vmallocinfo.txt, "
                            "modules.txt or per-module snapshots")


def _load_paste(path: Path) -> Bundle:
    """One pasted capture: its parts are parsed as the bundle's files would be, each labelled with the
    file's path (their line numbers are the paste's: split_paste keeps every line in place)."""
    text = _read(path)
    assert text is not None
    parts = split_paste(text)
    label = str(path)
    boot, meminfo, cmdline = parts.get("boot.log"), parts.get("meminfo.txt"), parts.get("cmdline.txt")
    vmalloc, modules = parts.get("vmallocinfo.txt"), parts.get("modules.txt")
    return Bundle(
        path=path,
        facts={},
        config=None,
        boot=parse_boot_log(boot, label) if boot is not None else None,
        dmesg=None,
        meminfo=parse_meminfo(meminfo, label) if meminfo is not None else None,
        cmdline=cmdline.strip() if cmdline is not None else None,
        vmallocinfo=_parse_vmallocinfo(vmalloc, label) if vmalloc is not None else None,
        modules=parse_proc_modules(modules, label) if modules is not None else None,
    )


def _checked(bundle: Bundle, what: str) -> Bundle:
    if not (bundle.boot or bundle.meminfo or bundle.vmallocinfo or bundle.modules or bundle.runs):
        raise UserError(f"{what}: nothing to check")
    return bundle
