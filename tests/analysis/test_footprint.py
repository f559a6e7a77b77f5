"""Unit tests of analysis.elf: PLT sizing, the kernel's heapsort, init classification, decompression."""

from __future__ import annotations

import lzma
import random
from pathlib import Path

import pytest

from analysis.elf.footprint import is_init_section, layout_rules_for, predict_footprint
from analysis.elf.loader import read_module_bytes
from analysis.elf.plts import cmp_rel, count_plts, kernel_sort, plt_section_size
from kit.errors import UserError
from tests.analysis import _live

BL_ZERO = (0xEBFFFFFE).to_bytes(4, "little")  # bl with the -8 PC bias: a zero addend
BL_PLUS = (0xEB000010).to_bytes(4, "little")


def test_init_classification_arm_and_generic() -> None:
    """module_init_layout_section; ARM module_init_section adds .ARM.extab/.ARM.exidx.init*."""
    assert is_init_section(".init.text", "EM_ARM", True)
    assert is_init_section(".ARM.exidx.init.text", "EM_ARM", True)
    assert not is_init_section(".ARM.exidx.init.text", "EM_X86_64", True)
    assert not is_init_section(".exit.text", "EM_ARM", True)
    assert is_init_section(".ARM.extab.exit.text", "EM_ARM", False)  # no MODULE_UNLOAD: exit is init
    assert not is_init_section(".text", "EM_ARM", False)


def test_plt_section_size_rounds_to_plt_entries() -> None:
    """round_up(n * PLT_ENT_SIZE, sizeof(struct plt_entries)) = multiples of 128 with 64-byte lines."""
    assert [plt_section_size(n, 64) for n in (0, 1, 16, 17, 33)] == [0, 128, 128, 256, 384]
    assert plt_section_size(9, 32) == 128


@pytest.mark.parametrize("variant", ["heapsort", "heapsort_two_at_a_time"])
def test_kernel_sort_sorts_by_type_then_symbol(variant: str) -> None:
    rng = random.Random(7)
    for n in range(40):
        rels = [(rng.randrange(64), rng.randrange(4) << 8 | rng.choice([28, 29, 2])) for _ in range(n)]
        out = list(rels)
        kernel_sort(out, cmp_rel, variant)  # type: ignore[arg-type]
        keys = [(r[1] & 0xFF, r[1] >> 8) for r in out]
        assert keys == sorted(keys) and sorted(out) == sorted(rels)


def test_count_plts_dedups_zero_addend_duplicates_only() -> None:
    """count_plts: skip targets in the same section; a zero-addend duplicate of the previous entry is free."""
    code = BL_ZERO * 3 + BL_PLUS
    call_sym1 = 1 << 8 | 28
    rels = [(0, call_sym1), (4, call_sym1), (8, 2 << 8 | 28), (12, call_sym1)]
    shndx = [0, 0, 5]  # symbol 1 undefined, symbol 2 defined in the target section 5
    kernel_sort(rels, cmp_rel, "heapsort")
    # symbol 1: two zero-addend calls share one entry; the non-zero addend one needs its own
    assert count_plts(rels, code, shndx, 5) == 2


def test_xz_module_reads_like_the_raw_one(tmp_path: Path) -> None:
    raw = _live.ko_path("6.1", "kh5foot").read_bytes()
    packed = tmp_path / "kh5foot.ko.xz"
    packed.write_bytes(lzma.compress(raw, format=lzma.FORMAT_XZ))
    assert read_module_bytes(packed) == raw


def test_zstd_without_the_tool_is_a_user_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("shutil.which", lambda name: None)
    path = tmp_path / "m.ko.zst"
    path.write_bytes(b"\x28\xb5\x2f\xfd")
    with pytest.raises(UserError, match="zstd"):
        read_module_bytes(path)


def test_unknown_version_and_missing_file() -> None:
    with pytest.raises(UserError):
        layout_rules_for((4, 19, 0))
    with pytest.raises(UserError):
        read_module_bytes(Path("/nonexistent/m.ko"))


def test_strict_module_rwx_off_on_61_gives_an_unaligned_core() -> None:
    """6.1 strict_align is PAGE_ALIGN only with CONFIG_STRICT_MODULE_RWX; 5.10 debug_align follows
    CONFIG_ARCH_HAS_STRICT_MODULE_RWX whatever STRICT_MODULE_RWX says."""
    ko = _live.ko_path("6.1", "kh5foot")
    config = dict(_live.config("6.1"), CONFIG_STRICT_MODULE_RWX="n")
    aligned = predict_footprint(ko, (6, 1, 176), _live.config("6.1")).live_size
    loose = predict_footprint(ko, (6, 1, 176), config).live_size
    assert aligned % 4096 == 0 and loose % 4096 != 0 and loose < aligned
    ko510 = _live.ko_path("5.10", "kh5foot")
    config510 = dict(_live.config("5.10"), CONFIG_STRICT_MODULE_RWX="n")
    assert predict_footprint(ko510, (5, 10, 223), config510).live_size % 4096 == 0


def test_612_has_one_region_per_memory_type() -> None:
    fp = predict_footprint(_live.ko_path("6.12", "kh5foot"), (6, 12, 95), _live.config("6.12"))
    assert [r.name for r in fp.regions if r.size and not r.is_init] == ["text", "data", "rodata",
                                                                         "ro_after_init"]
    placed = {s.name: s.region for s in fp.sections}
    assert placed["__jump_table"] == placed[".data..ro_after_init"] == "ro_after_init"
    assert placed[".symtab"] == placed[".strtab"] == "init_data"
    assert fp.this_module_size > 0 and placed[".gnu.linkonce.this_module"] == "data"
