"""Render the kit's test modules (C sources and Kbuild files) from Jinja templates.

Each module family has a parameter schema; parameters are validated before rendering and a
bad one raises UserError naming the parameter and its allowed range. Kernel-version differences
live in the C templates (LINUX_VERSION_CODE), so one rendered source builds on 5.10, 6.1 and 6.12.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING

import jinja2

from kit.errors import InfraError, UserError

if TYPE_CHECKING:
    from kbuild.kernels import KernelTree
    from kbuild.targets import Target

TEMPLATES_DIR = Path(__file__).resolve().parent.parent / "templates"

KIB = 1024
MIB = 1024 * KIB
PAGE_SIZE = 4096  # ARM 32-bit (arch/arm/include/asm/page.h PAGE_SHIFT 12)
PHYS_LIMIT = 1 << 32  # phys_addr_t is 32 bits on non-LPAE armmp kernels


@dataclass(frozen=True)
class IntParam:
    """One integer module parameter: its default and inclusive range."""

    name: str
    default: int
    minimum: int
    maximum: int

    def allowed(self) -> str:
        return f"an integer in [{self.minimum:#x}, {self.maximum:#x}] ({self.minimum}..{self.maximum})"

    def check(self, family: str, value: object) -> None:
        if isinstance(value, bool) or not isinstance(value, int):
            raise UserError(f"{family}.{self.name}: got {value!r}; use {self.allowed()}")
        in_range = self.minimum <= value <= self.maximum
        if not in_range:
            raise UserError(f"{family}.{self.name}={value}: out of range; use {self.allowed()}")


def _size(name: str, default: int) -> IntParam:
    """A vmalloc'ed byte count: > 0 and < 64 MiB."""
    return IntParam(name, default, 1, 64 * MIB - 1)


def _phys(name: str, default: int) -> IntParam:
    return IntParam(name, default, 0, PHYS_LIMIT - PAGE_SIZE)


def _io_size(name: str, default: int, minimum: int = 1) -> IntParam:
    return IntParam(name, default, minimum, 16 * MIB)


def _id32(name: str, default: int) -> IntParam:
    return IntParam(name, default, 0, 0xFFFFFFFF)


# Families in the contract's load order (docs/contracts.md section 2), defaults from section 3.
FAMILY_SCHEMAS: Mapping[str, tuple[IntParam, ...]] = MappingProxyType(
    {
        "vmalloc": (
            _size("subpage_size", 100),
            _size("one_page_size", PAGE_SIZE),
            _size("several_pages_size", 5 * PAGE_SIZE + 1),
            _size("big_size", 1025 * PAGE_SIZE),
            _size("vzalloc_size", 3 * PAGE_SIZE),
            _size("aligned_size", 3 * PAGE_SIZE),
        ),
        "vmalloc_exec": (),
        "ioremap": (
            _phys("uart_phys", 0x09000000),
            _io_size("uart_size", 0x1000, minimum=0x1000),  # ID registers at 0xfe0..0xffc
            _id32("uart_periph_id", 0x00041011),  # PL011 (drivers/tty/serial/amba-pl011.c)
            _phys("rtc_phys", 0x09010000),
            _io_size("rtc_size", 0x1000, minimum=0x1000),
            _id32("rtc_periph_id", 0x00041031),  # PL031 (drivers/rtc/rtc-pl031.c)
            _id32("cell_id", 0xB105F00D),  # PrimeCell id (include/linux/amba/bus.h AMBA_CID)
            _phys("unaligned_phys", 0x09000FF0),
            _io_size("unaligned_size", 0x20),
            _phys("large_phys", 0x0A000000),
            _io_size("large_size", 0x30000),
        ),
        "kmap": (IntParam("highmem_count", 8, 1, 64),),
        "alloc": (
            IntParam("loop_count", 32, 1, 256),
            _size("loop_size", 64 * KIB),
            IntParam("big_pages", 256, 1, 1024),
            IntParam("max_iterations", 1 << 20, 1, 1 << 20),
        ),
    }
)

# Pairs (phys, size) whose mapped range must stay below 4 GiB.
_PHYS_RANGES: Mapping[str, tuple[tuple[str, str], ...]] = MappingProxyType(
    {
        "ioremap": (
            ("uart_phys", "uart_size"),
            ("rtc_phys", "rtc_size"),
            ("unaligned_phys", "unaligned_size"),
            ("large_phys", "large_size"),
        )
    }
)


def _schema(family: str) -> tuple[IntParam, ...]:
    try:
        return FAMILY_SCHEMAS[family]
    except KeyError:
        raise UserError(f"unknown module family {family!r}; use one of {', '.join(FAMILY_SCHEMAS)}") from None


def validate_params(family: str, params: Mapping[str, object]) -> None:
    """Raise UserError unless ``params`` has exactly the family's parameters, each in range."""
    schema = _schema(family)
    names = [p.name for p in schema]
    unknown = sorted(set(params) - set(names))
    if unknown:
        known = ", ".join(names) or "none"
        raise UserError(f"{family}: unknown parameter(s) {', '.join(unknown)}; known: {known}")
    for param in schema:
        if param.name not in params:
            raise UserError(f"{family}.{param.name}: missing; use {param.allowed()}")
        param.check(family, params[param.name])
    for phys_name, size_name in _PHYS_RANGES.get(family, ()):
        phys, size = params[phys_name], params[size_name]
        if isinstance(phys, int) and isinstance(size, int) and phys + size > PHYS_LIMIT:
            end = phys + size
            raise UserError(f"{family}.{phys_name}+{size_name}={end:#x}: must not exceed {PHYS_LIMIT:#x}")


@dataclass(frozen=True)
class ModuleSpec:
    """What to render: a family, the module name (kit_<family>) and the family's parameters."""

    family: str
    name: str
    params: Mapping[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "params", MappingProxyType(dict(self.params)))


def make_spec(family: str, **overrides: int) -> ModuleSpec:
    """The family's spec with default parameters, some replaced by ``overrides``; validated."""
    params = {p.name: p.default for p in _schema(family)}
    params.update(overrides)
    validate_params(family, params)
    return ModuleSpec(family=family, name=f"kit_{family}", params=params)


def default_specs(target: Target | None = None, tree: KernelTree | None = None) -> list[ModuleSpec]:
    """The five kit modules with the contract's parameters, in load order.

    ``target`` and ``tree`` (contract signature) are accepted for future per-target parameters;
    today's defaults are the QEMU virt values and do not depend on them.
    """
    del target, tree
    return [make_spec(family) for family in FAMILY_SCHEMAS]


def template_environment(templates_dir: Path = TEMPLATES_DIR) -> jinja2.Environment:
    """Jinja environment for C: undefined variables are errors, files keep their final newline."""
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(templates_dir)),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,
    )


def render_sources(spec: ModuleSpec, env: jinja2.Environment | None = None) -> dict[str, str]:
    """File name -> content for one module: ``<name>.c`` and ``Kbuild``."""
    validate_params(spec.family, spec.params)
    if spec.name != f"kit_{spec.family}":
        raise UserError(f"module name {spec.name!r}: must be kit_{spec.family}")
    env = env or template_environment()
    context = {"name": spec.name, "family": spec.family, "p": dict(spec.params)}
    try:
        source = env.get_template(f"modules/{spec.family}.c.j2").render(context)
        kbuild = env.get_template("Kbuild.j2").render(context)
    except jinja2.UndefinedError as err:
        raise UserError(f"template for {spec.family}: {err}; pass the missing variable") from err
    except jinja2.TemplateError as err:
        raise InfraError(f"template for {spec.family} is broken: {err}") from err
    return {f"{spec.name}.c": source, "Kbuild": kbuild}


def _write_if_changed(path: Path, content: str) -> None:
    """Rewrite only on change, so make's timestamps rebuild only what changed."""
    if path.is_file() and path.read_text(encoding="utf-8") == content:
        return
    path.write_text(content, encoding="utf-8")


def render_module(spec: ModuleSpec, out_root: Path, env: jinja2.Environment | None = None) -> Path:
    """Write ``out_root/<name>/<name>.c`` and ``Kbuild``; return the module directory."""
    files = render_sources(spec, env)
    module_dir = out_root / spec.name
    try:
        module_dir.mkdir(parents=True, exist_ok=True)
        for file_name, content in files.items():
            _write_if_changed(module_dir / file_name, content)
    except OSError as err:
        raise InfraError(f"cannot write {module_dir}: {err}; check the output directory") from err
    return module_dir
