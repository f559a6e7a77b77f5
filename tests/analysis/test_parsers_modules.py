"""Synthetic /proc/modules lines (kernel/module/procfs.c m_show, print_unload_info, module_flags)."""

from __future__ import annotations

import pytest

from analysis.parsers import ProcModule, parse_modules, parse_proc_modules
from kit.errors import ParseError


def one(line: str) -> ProcModule:
    (module,) = parse_proc_modules(line + "\n", "modules.txt")
    return module


def test_contract_alias() -> None:
    assert parse_modules is parse_proc_modules


def test_live_module_with_users() -> None:
    module = one("snd 69632 8 snd_usb_audio,snd_hwdep, Live 0x7f0f7000")
    assert module.users == ("snd_usb_audio", "snd_hwdep") and module.refcount == 8
    assert (module.address, module.taints, module.permanent, module.line) == (0x7F0F7000, "", False, 1)


def test_zeroed_address_is_none() -> None:
    assert one("kit_vmalloc 16384 0 - Live 0x00000000 (OE)").address is None
    assert one("kit_vmalloc 16384 0 - Live 0x0000000000000000 (OE)").address is None


def test_no_module_unload() -> None:
    module = one("kit_vmalloc 16384 - - Live 0xbf000000")
    assert module.refcount is None and module.users == ()


def test_loading_and_unloading_state_marks_are_not_taints() -> None:
    loading = one("kit_alloc 24576 1 - Loading 0xbf010000 (OE+)")
    going = one("kit_alloc 24576 0 - Unloading 0xbf010000 (-)")
    assert (loading.state, loading.taints) == ("Loading", "OE")
    assert (going.state, going.taints) == ("Unloading", "")


def test_permanent_only() -> None:
    module = one("ipv6 434176 40 [permanent], Live 0x7f000000")
    assert module.permanent and module.users == ()


def test_proprietary_taint() -> None:
    assert one("media_process 2629632 0 - Live 0xbf300000 (PO)").taints == "PO"


def test_missing_address_is_none() -> None:
    assert one("old 1234 0 - Live").address is None


@pytest.mark.parametrize(
    "line",
    ["kit_vmalloc 16384 0 - Dead 0xbf000000", "kit_vmalloc x 0 - Live 0xbf000000", "just some words"],
)
def test_malformed(line: str) -> None:
    with pytest.raises(ParseError) as caught:
        parse_proc_modules(f"# header\n{line}\n", "modules/kit.txt")
    assert (caught.value.path, caught.value.line) == ("modules/kit.txt", 2)
