"""The stated facts against the evidence: target.toml's ``arch`` vs the kernel's own words and the modules.

target.toml is written by the host (or by whoever copied the files off a board) and every model check
is built on it; the boot log (arch/arm/kernel/setup.c setup_processor prints "CPU: ... (ARMv7)") and
the loaded ``.ko`` files (their ELF e_machine) are evidence. When they contradict the facts, the facts
are wrong: the check fails loudly instead of letting the model check another architecture.
"""

from __future__ import annotations

from analysis.elf.header import ARCH_ELF, read_elf_header
from analysis.verify.bundle import Bundle
from analysis.verify.check import Check, compare
from analysis.verify.infer import arch_from_boot, boot_text

FAMILY = "facts"


def facts_checks(bundle: Bundle) -> list[Check]:
    """``facts.arch.boot_log`` and ``facts.arch.ko.M`` where target.toml states an arch."""
    stated = bundle.facts.get("arch")
    if not isinstance(stated, str):
        return []
    checks = []
    evidence = "\n".join(text for text in (boot_text(bundle), bundle.dmesg or "") if text)
    seen = arch_from_boot(bundle.boot, evidence)
    if seen is not None:
        checks.append(compare("facts.arch.boot_log", FAMILY, stated, seen,
                              "target.toml's arch vs the architecture the kernel's log names"))
    expected = ARCH_ELF.get(stated)
    for run in bundle.runs:
        header = read_elf_header(run.ko.read_bytes()) if run.ko is not None else None
        if header is None or expected is None:
            continue
        checks.append(compare(f"facts.arch.ko.{run.name}", FAMILY, expected.describe(), header.kind.describe(),
                              f"the ELF machine of ko/{run.name}.ko vs target.toml's arch {stated!r}"))
    return checks
