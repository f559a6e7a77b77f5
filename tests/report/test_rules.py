"""Rule lines: the values are the layout's, the formulas show the inputs that give them."""

from __future__ import annotations

from pathlib import Path

from analysis.report.rules import GUARD_RULE, RuleLine, guard_count, layout_rules
from analysis.report.snapshot import pick_snapshot
from analysis.verify.verify import BundleVerdict
from tests.report._data import FULLHAN, RUN_5_10, RUN_6_1, verdict


def _rules(path: Path) -> tuple[dict[str, RuleLine], BundleVerdict]:
    v = verdict(path)
    assert v.context.layout is not None
    return {rule.name: rule for rule in layout_rules(v.context.layout, v.context.cmdline)}, v


def test_qemu_6_1_rule_lines() -> None:
    rules, v = _rules(RUN_6_1)
    assert rules["VMALLOC_START"].shown == "0xf0800000"
    assert "(high_memory 0xf0000000 + 8 MiB) & ~(8 MiB - 1)" in rules["VMALLOC_START"].rule
    assert rules["MODULES_VADDR"].shown == "0xbf000000"
    assert rules["MODULES_VADDR"].rule.startswith("PAGE_OFFSET - 16 MiB")
    assert rules["PKMAP_BASE"].shown == "0xbfe00000" and "PAGE_OFFSET - PMD_SIZE (2 MiB)" in rules["PKMAP_BASE"].rule
    assert rules["pkmap end"].value == 0xC0000000
    # VmallocTotal: the model's number is the guest's own /proc/meminfo line
    assert v.bundle.meminfo is not None and rules["VmallocTotal"].value == v.bundle.meminfo["VmallocTotal"] == 245760
    assert "(VMALLOC_END - VMALLOC_START) >> 10" in rules["VmallocTotal"].rule
    # 1 GiB at 0x40000000, default 240 MiB: limit 0xff800000 - 240M - 8M - 0xc0000000 + 0x40000000
    assert rules["arm_lowmem_limit"].shown == "0x70000000"
    assert "vmalloc limit 0x70000000" in rules["arm_lowmem_limit"].rule
    assert "end of RAM 0x80000000" in rules["arm_lowmem_limit"].rule
    assert "0x70000000 - PHYS_OFFSET 0x40000000 + PAGE_OFFSET 0xc0000000" in rules["high_memory"].rule
    assert rules["FIXADDR_TOP"].shown == "0xffeff000"


def test_rule_values_are_the_layouts() -> None:
    for path in (RUN_6_1, RUN_5_10, FULLHAN):
        rules, v = _rules(path)
        layout = v.context.layout
        assert layout is not None
        for name, rule in rules.items():
            if hasattr(layout, name):
                assert rule.value == getattr(layout, name), (path.name, name)
        assert rules["lowmem"].value == layout.lowmem_bytes and rules["highmem"].value == layout.highmem_bytes


def test_5_10_limit_rule_has_no_vmalloc_offset_with_vmalloc_arg() -> None:
    """The default uses VMALLOC_END - 240M - VMALLOC_OFFSET in both eras (mmu.c 5.10 vmalloc_min)."""
    rules, _ = _rules(RUN_5_10)
    assert "VMALLOC_END - size - VMALLOC_OFFSET" in rules["arm_lowmem_limit"].rule
    assert rules["vmalloc size asked"].shown == "240 MiB"


def test_fullhan_no_highmem_and_mem_limit() -> None:
    """No HIGHMEM: MODULES_END = PAGE_OFFSET, no pkmap; mem=36M: lowmem ends at RAM's end 0x02400000."""
    rules, v = _rules(FULLHAN)
    assert "PKMAP_BASE" not in rules
    assert rules["MODULES_END"].shown == "0xc0000000" and rules["MODULES_END"].rule.startswith("PAGE_OFFSET")
    assert rules["arm_lowmem_limit"].shown == "0x02400000" and "end of RAM 0x02400000" in rules["arm_lowmem_limit"].rule
    assert rules["VMALLOC_START"].shown == "0xc2800000"
    assert v.bundle.meminfo is not None and rules["VmallocTotal"].value == v.bundle.meminfo["VmallocTotal"] == 999424


def test_guard_page_line_and_count() -> None:
    assert "__get_vm_area_node" in GUARD_RULE and "VM_NO_GUARD" in GUARD_RULE and "6.1" in GUARD_RULE
    snapshot = pick_snapshot(verdict(RUN_6_1).bundle)
    assert snapshot is not None
    guarded, with_pages = guard_count(snapshot.entries)
    # e.g. 0xf0947000-0xf0958000 69632 ... pages=16: 17 pages
    assert with_pages == 89 and guarded == 89  # grep -c "pages=" kit_alloc.during.txt
