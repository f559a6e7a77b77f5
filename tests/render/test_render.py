"""Rendering of the test modules: golden files, parameter validation, StrictUndefined, writes."""

from __future__ import annotations

import os
import re
from pathlib import Path

import jinja2
import pytest

from kbuild.render import (
    FAMILY_SCHEMAS,
    ModuleSpec,
    default_specs,
    make_spec,
    render_module,
    render_sources,
    template_environment,
)
from kit.errors import UserError

GOLDEN = Path(__file__).parent / "golden"

# Load order and diagnostic keys, typed in from docs/contracts.md sections 2 and 3.
CONTRACT_ORDER = ["kit_vmalloc", "kit_vmalloc_exec", "kit_ioremap", "kit_kmap", "kit_alloc"]
LAYOUT_KEYS = [
    "PAGE_OFFSET", "high_memory", "VMALLOC_START", "VMALLOC_END", "MODULES_VADDR", "MODULES_END",
    "PKMAP_BASE", "LAST_PKMAP", "FIXADDR_START", "FIXADDR_TOP", "PAGE_SIZE", "totalram_pages",
    "totalhigh_pages", "num_online_cpus", "THREAD_SIZE",
]  # fmt: skip
CONTRACT_CASES = {
    "vmalloc": ["layout", "subpage", "one_page", "several_pages", "big", "vzalloc", "aligned"],
    "vmalloc_exec": ["layout", "vmalloc_exec", "symbols", "regions"],
    "ioremap": ["layout", "uart", "rtc", "unaligned", "large"],
    "kmap": ["layout", "kmap_highmem", "kmap_again", "kmap_lowmem", "kmap_local", "kmap_atomic"],
    "alloc": ["layout", "vmalloc_loop", "vmap_fill"],
}
# Key names (the part after "<case>.") each family's C source must spell out as a string literal.
CONTRACT_KEY_LITERALS = {
    "vmalloc": ["addr", "size", "align", "nr_pages", "highmem_pages", "zeroed"],
    "vmalloc_exec": [
        "text_fn", "rodata_var", "data_var", "bss_var", "this_module", "init_fn",
        "core.base", "core.size", "core.text_size", "core.ro_size", "core.ro_after_init_size",
        "init.base", "init.size",
        "text", "data", "rodata", "ro_after_init", "init_text", "init_data", "init_rodata",
    ],
    "ioremap": ["phys", "size", "cookie", "periph_id", "cell_id"],
    "kmap": ["count", "addr", "pfn", "linear", "nested_addr", "cpu"],
    "alloc": ["count", "size", "addr", "big_pages", "big", "small"],
}  # fmt: skip


def _golden_path(name: str, file_name: str) -> Path:
    return GOLDEN / name / file_name


@pytest.mark.parametrize("spec", default_specs(), ids=lambda s: s.name)
def test_rendered_sources_match_golden_files(spec: ModuleSpec) -> None:
    """REGEN=1 rewrites the goldens; review the diff before committing them."""
    for file_name, content in render_sources(spec).items():
        golden = _golden_path(spec.name, file_name)
        if os.environ.get("REGEN") == "1":
            golden.parent.mkdir(parents=True, exist_ok=True)
            golden.write_text(content, encoding="utf-8")
        assert golden.is_file(), f"missing golden {golden}; run REGEN=1 pytest {__file__}"
        assert content == golden.read_text(encoding="utf-8"), f"{golden} differs (REGEN=1 to accept)"


def test_default_specs_follow_contract_load_order() -> None:
    assert [s.name for s in default_specs()] == CONTRACT_ORDER
    assert all(s.name == f"kit_{s.family}" for s in default_specs())


@pytest.mark.parametrize("family", CONTRACT_CASES)
def test_cases_appear_in_contract_order(family: str) -> None:
    source = render_sources(make_spec(family))[f"kit_{family}.c"]
    table = source[source.index("kit_cases[] __initconst") :]
    names = re.findall(r'\{ "(\w+)", kit_case_\w+ \}', table)
    assert names == CONTRACT_CASES[family]


@pytest.mark.parametrize("family", CONTRACT_CASES)
def test_every_contract_key_is_printed(family: str) -> None:
    source = render_sources(make_spec(family))[f"kit_{family}.c"]
    for key in LAYOUT_KEYS + CONTRACT_KEY_LITERALS[family]:
        assert f'"{key}' in source, f"{family}: key {key!r} not printed"
    assert '#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt' in source
    assert 'MODULE_LICENSE("GPL");' in source
    assert "vm_unmap_aliases();" in source


def test_parameters_reach_the_c_source() -> None:
    source = render_sources(make_spec("vmalloc", subpage_size=777, aligned_size=5 << 12))["kit_vmalloc.c"]
    assert "KIT_SUBPAGE, 777UL" in source
    assert "size = 20480UL;" in source
    ioremap = render_sources(make_spec("ioremap", large_phys=0x0C000000))["kit_ioremap.c"]
    assert "KIT_LARGE, 0x0c000000," in ioremap


def test_kbuild_names_the_object() -> None:
    lines = render_sources(make_spec("kmap"))["Kbuild"].splitlines()
    assert "obj-m += kit_kmap.o" in lines and lines[-1] == "ccflags-y += -g0"  # no debug info: stripped anyway


@pytest.mark.parametrize(
    ("family", "override", "needle"),
    [
        ("vmalloc", {"subpage_size": 0}, "vmalloc.subpage_size=0"),
        ("vmalloc", {"big_size": 64 << 20}, "vmalloc.big_size=67108864"),
        ("vmalloc", {"aligned_size": 0}, "vmalloc.aligned_size=0"),
        ("kmap", {"highmem_count": 65}, "kmap.highmem_count=65"),
        ("kmap", {"highmem_count": 0}, "kmap.highmem_count=0"),
        ("alloc", {"max_iterations": (1 << 20) + 1}, "alloc.max_iterations"),
        ("ioremap", {"uart_size": 0x800}, "ioremap.uart_size=2048"),
        ("ioremap", {"large_phys": 0xFFFF0000}, "must not exceed"),
        ("ioremap", {"large_phys": 1 << 32}, "ioremap.large_phys"),
    ],
)
def test_bad_parameter_names_itself_and_range(family: str, override: dict[str, int], needle: str) -> None:
    with pytest.raises(UserError, match=re.escape(needle)) as err:
        make_spec(family, **override)
    name = next(iter(override))
    assert name in str(err.value)
    if "must not exceed" not in needle:
        assert re.search(r"in \[0x[0-9a-f]+, 0x[0-9a-f]+\]", str(err.value))


def test_wrong_types_and_names_are_rejected() -> None:
    with pytest.raises(UserError, match=r"kmap\.highmem_count: got True"):
        make_spec("kmap", highmem_count=True)
    with pytest.raises(UserError, match=r"unknown parameter.*colour"):
        make_spec("kmap", colour=3)
    with pytest.raises(UserError, match="unknown module family 'nope'"):
        make_spec("nope")


def test_validation_runs_before_rendering(tmp_path: Path) -> None:
    spec = ModuleSpec(family="alloc", name="kit_alloc", params={"loop_count": 32})
    with pytest.raises(UserError, match=r"alloc\.loop_size: missing"):
        render_module(spec, tmp_path)
    assert not (tmp_path / "kit_alloc").exists()


def test_spec_params_are_read_only() -> None:
    spec = make_spec("kmap")
    with pytest.raises(TypeError):
        spec.params["highmem_count"] = 9  # type: ignore[index]


def test_strict_undefined_catches_a_missing_variable(tmp_path: Path) -> None:
    (tmp_path / "modules").mkdir()
    (tmp_path / "modules" / "kmap.c.j2").write_text("#define N {{ p.highmem_count }} {{ p.not_there }}\n")
    env = template_environment(tmp_path)
    with pytest.raises(UserError, match="not_there"):
        render_sources(make_spec("kmap"), env)


def test_real_templates_have_no_unused_schema_parameters() -> None:
    """Each schema parameter is used by its template (a renamed variable would otherwise go unnoticed)."""
    env = template_environment()
    for family, schema in FAMILY_SCHEMAS.items():
        text = _template_text(env, f"modules/{family}.c.j2")
        for param in schema:
            assert f"p.{param.name}" in text, f"{family}: {param.name} unused"


def _template_text(env: jinja2.Environment, name: str) -> str:
    assert env.loader is not None
    source, _, _ = env.loader.get_source(env, name)
    return source


def test_render_module_rewrites_only_changed_files(tmp_path: Path) -> None:
    module_dir = render_module(make_spec("kmap"), tmp_path)
    assert module_dir == tmp_path / "kit_kmap"
    c_file, kbuild = module_dir / "kit_kmap.c", module_dir / "Kbuild"
    os.utime(c_file, ns=(1_000_000_000, 1_000_000_000))
    os.utime(kbuild, ns=(1_000_000_000, 1_000_000_000))
    render_module(make_spec("kmap"), tmp_path)
    assert c_file.stat().st_mtime_ns == 1_000_000_000
    render_module(make_spec("kmap", highmem_count=9), tmp_path)
    assert c_file.stat().st_mtime_ns != 1_000_000_000
    assert "#define KIT_HIGHMEM_COUNT 9" in c_file.read_text()
    assert kbuild.stat().st_mtime_ns == 1_000_000_000
