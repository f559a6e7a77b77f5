"""Footprint predictions from the .ko files against real /proc and /sys captures (QEMU, Debian armmp).

Everything on the expected side comes from the model: the region sizes and section offsets from
analysis.elf.footprint, the region bases from analysis.model.allocator (first fit in
[MODULES_VADDR, MODULES_END) over the vmallocinfo snapshot taken just before insmod). The live
side is /proc/modules, /sys/module/M/sections/* and /proc/vmallocinfo as the guest printed them.
"""

from __future__ import annotations

import pytest

from analysis.elf.footprint import Footprint, predict_footprint
from analysis.model.allocator import VmallocModel, VmallocRequest, rules_for
from tests.analysis import _live

CASES = [(v, m) for v in _live.VERSIONS for m in _live.MODULES]


def predicted_bases(version: str, module: str, footprint: Footprint) -> dict[str, int]:
    """move_module (5.10/6.1) / module_memory_alloc (6.12): one first-fit vmalloc per non-empty region."""
    before = _live.vmallocinfo(version, module, "before")
    model = VmallocModel.from_snapshot(before, _live.MODULES_VADDR, _live.MODULES_END,
                                       rules_for(_live.VERSIONS[version]))
    bases = {}
    for region in footprint.regions:
        if region.size:
            placement = model.alloc(VmallocRequest(region.size))
            assert placement is not None, f"{module}: no room for {region}"
            bases[region.name] = placement.start
    return bases


@pytest.mark.parametrize(("version", "module"), CASES)
def test_live_size_and_address(version: str, module: str) -> None:
    footprint = predict_footprint(_live.ko_path(version, module), _live.VERSIONS[version], _live.config(version))
    size, address = _live.proc_modules_line(version, module)
    bases = predicted_bases(version, module, footprint)
    assert footprint.live_size == size
    assert bases["core" if "core" in bases else "text"] == address


@pytest.mark.parametrize(("version", "module"), CASES)
def test_every_section_address(version: str, module: str) -> None:
    footprint = predict_footprint(_live.ko_path(version, module), _live.VERSIONS[version], _live.config(version))
    predicted = footprint.section_addresses(predicted_bases(version, module, footprint))
    assert predicted == _live.sections(version, module)


@pytest.mark.parametrize(("version", "module"), CASES)
def test_module_vmallocinfo_lines(version: str, module: str) -> None:
    """The core regions' lines while Live: start, size (guard included), pages= and ' vmalloc'."""
    footprint = predict_footprint(_live.ko_path(version, module), _live.VERSIONS[version], _live.config(version))
    bases = predicted_bases(version, module, footprint)
    during = {e.start: e for e in _live.vmallocinfo(version, module, "during")}
    expected = footprint.vmalloc_lines()
    assert len(expected) == (1 if version != "6.12" else len([r for r in footprint.regions
                                                               if r.size and not r.is_init]))
    for line in expected:
        entry = during[bases[line.region]]
        assert (entry.size, entry.pages, "vmalloc" in entry.flags) == (line.size, line.pages, True)
    # init memory is freed after module_init by a deferred do_free_init (6.1+: call_rcu/workqueue),
    # so a snapshot may or may not still hold it; when it does, it matches the prediction
    for line in footprint.vmalloc_lines(include_init=True)[len(expected):]:
        if bases[line.region] in during:
            assert during[bases[line.region]].size == line.size


def test_plt_counts_differ_between_core_and_init() -> None:
    """kh5alloc calls many kernel functions from init only: .init.plt must outgrow .plt."""
    footprint = predict_footprint(_live.ko_path("6.1", "kh5alloc"), _live.VERSIONS["6.1"], _live.config("6.1"))
    assert footprint.plts is not None
    assert footprint.plts.init > footprint.plts.core > 2
    plt = {s.name: s.size for s in footprint.sections}
    assert plt[".init.plt"] == 256 and plt[".plt"] == 128  # round_up(n*8, 128) with 64-byte L1 lines
