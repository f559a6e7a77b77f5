"""Fuzz the offline checker (`invoke check`: verify_bundle, then the table, the summaries and
verdict.json) with 10,000 damaged real bundles.

The bundles: every board capture of tests/data/bundles, the three live captures of tests/data/live,
and each module of the three QEMU runs of tests/data/runs as a bundle of its own (its files as the run
wrote them; the kernel config cut to the options the kit reads: parsing 140 KB of .config per example
would be most of the time). Each is copied once into a temporary directory; an example damages one to
three of its files (or removes one), runs the checker on the directory, and puts the files back.

Clean outcomes only: the checks, or the kit's own error (a KitError: a ParseError naming the file,
a UserError) with one line; never another exception, never more than a second for an example.
"""

from __future__ import annotations

import json
import re
import shutil
import traceback
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import given, note

from analysis.verify.report import family_summary, format_table, summary_line, worst_first
from analysis.verify.verify import BundleVerdict, verify_bundle
from kit.errors import KitError
from kit.verdict import Verdict
from tests.fuzz._mutate import DATA, EXAMPLES, FUZZ, PROGRAMS, Choices, clean, damage

pytestmark = pytest.mark.fuzz

MODULES = ("kit_vmalloc", "kit_vmalloc_exec", "kit_ioremap", "kit_kmap", "kit_alloc")
RUNS: Counter[str] = Counter()


@dataclass
class SeedBundle:
    root: Path
    files: dict[Path, bytes]  # every file under root, as copied


# The options the kit reads (analysis/, kit/: grep CONFIG_): a config cut to these lines checks the same.
KIT_OPTIONS = frozenset({
    "CONFIG_ARCH_HAS_STRICT_MODULE_RWX", "CONFIG_ARM_L1_CACHE_SHIFT", "CONFIG_ARM_LPAE", "CONFIG_ARM_MODULE_PLTS",
    "CONFIG_ARM_PATCH_PHYS_VIRT", "CONFIG_DEBUG_KMAP_LOCAL", "CONFIG_DEBUG_SET_MODULE_RONX", "CONFIG_DYNAMIC_FTRACE",
    "CONFIG_HIGHMEM", "CONFIG_KALLSYMS_ALL", "CONFIG_MODULE_UNLOAD", "CONFIG_PAGE_OFFSET", "CONFIG_PHYS_ADDR_T_64BIT",
    "CONFIG_RANDOMIZE_MEMORY", "CONFIG_SMP", "CONFIG_STACKTRACE_BUILD_ID", "CONFIG_STRICT_MODULE_RWX",
    "CONFIG_VMAP_STACK",
})
_OPTION = re.compile(r"(?:# )?(CONFIG_[A-Z0-9_]+)[= ]")


def kit_config_lines(config: str) -> str:
    """The lines of a .config that set (or unset) an option the kit reads, verbatim."""
    return "".join(line + "\n" for line in config.splitlines()
                   if (found := _OPTION.match(line)) is not None and found.group(1) in KIT_OPTIONS)


def module_bundle(run: Path, module: str, into: Path, logs: bool, ko: bool) -> None:
    """One module of a real run as a bundle: the run-wide files, then only that module's."""
    into.mkdir(parents=True)
    logs_files = ("boot.log", "dmesg.txt") if logs else ()
    for name in ("target.toml", "cmdline.txt", "meminfo.txt", "iomem.txt", *logs_files):
        shutil.copy(run / name, into / name)
    (into / "config").write_text(kit_config_lines((run / "config").read_text()))
    status = [line for line in (run / "status.txt").read_text().splitlines() if line.split()[:1] == [module]]
    (into / "status.txt").write_text("".join(line + "\n" for line in status))
    for folder in ("ktap", "vmallocinfo", "modules", "sections", *(("ko",) if ko else ())):
        (into / folder).mkdir()
        for file in (run / folder).glob(f"{module}.*"):
            shutil.copy(file, into / folder / file.name)


def seed_bundles(tmp: Path) -> list[SeedBundle]:
    """Every seed bundle, as often as its weight: a board capture checks in ~1 ms, a run's module in ~5 ms,
    one with its .ko (the footprint from the ELF), its logs or several modules (live/) in ~10-20 ms."""
    weighted: list[tuple[Path, int]] = []
    for source in sorted((DATA / "bundles").iterdir()):
        shutil.copytree(source, tmp / f"bundles-{source.name}")
        weighted.append((tmp / f"bundles-{source.name}", 4))
    for source in sorted(path for path in (DATA / "live").iterdir() if path.name != "src"):
        shutil.copytree(source, tmp / f"live-{source.name}")
        weighted.append((tmp / f"live-{source.name}", 1))
    for run in sorted((DATA / "runs").iterdir()):
        for index, module in enumerate(MODULES):
            root = tmp / f"{run.name}-{module}"
            logs, ko = index == 0, index == 3
            module_bundle(run, module, root, logs=logs, ko=ko)
            weighted.append((root, 1 if logs or ko or module in ("kit_kmap", "kit_alloc") else 2))
    seeds = [SeedBundle(root, {path: path.read_bytes() for path in sorted(root.rglob("*")) if path.is_file()})
             for root, _ in weighted]
    return [seed for seed, (_, weight) in zip(seeds, weighted, strict=True) for _ in range(weight)]


# Crashes this fuzzer found in files outside this change (analysis/verify, analysis/model: not the
# parsers), reported with their minimal inputs in test_verify_regressions.py, where a strict xfail turns
# into a failure once the owner fixes one: then its entry here goes. Each is recognised by its exception
# type and the function that raised it; any other exception still fails the fuzzer.
KNOWN_ELSEWHERE: dict[tuple[type[BaseException], str, str], str] = {
}


def _known(err: BaseException) -> str | None:
    """The KNOWN_ELSEWHERE name of ``err``: its type, and the kit's own function deepest in its traceback."""
    repo = DATA.parents[1]
    for frame in reversed(traceback.extract_tb(err.__traceback__)):
        where = Path(frame.filename).resolve()
        if where.is_relative_to(repo):
            relative = str(where.relative_to(repo))
            return next((name for (kind, path, function), name in KNOWN_ELSEWHERE.items()
                         if isinstance(err, kind) and relative == path and frame.name == function), None)
    return None


def run_check(root: Path) -> BundleVerdict | KitError | None:
    """What `invoke check --bundle root --json ...` does after its arguments: verify, then report.
    ``None`` for a crash of KNOWN_ELSEWHERE."""
    try:
        outcome = clean(lambda: verify_bundle(root))
    except Exception as err:
        known = _known(err)
        if known is None:
            raise
        RUNS[f"known crash: {known}"] += 1
        return None
    if isinstance(outcome, BundleVerdict):
        ctx = outcome.context
        verdict = Verdict(target=str(outcome.bundle.facts.get("name", root.name)), arch=ctx.arch or "unknown",
                          release=ctx.release, version=".".join(map(str, ctx.version)) if ctx.version else None,
                          checks=outcome.checks)
        format_table(worst_first(outcome.checks))
        family_summary(outcome.checks)
        summary_line(outcome.checks)
        json.dumps(verdict.as_json())
    return outcome


SEEDS: list[SeedBundle] = []


@FUZZ
@given(PROGRAMS)
def _fuzz_verify(choices: Choices) -> None:
    bundle = choices.pick(SEEDS)
    paths = list(bundle.files)
    touched = {choices.pick(paths) for _ in range(1 + choices.below(3))}
    changes: dict[Path, bytes | None] = {}
    try:
        for path in sorted(touched):
            if choices.below(12) == 0:
                path.unlink()
                changes[path] = None
            else:
                data = changes[path] = damage(bundle.files[path], choices)
                path.write_bytes(data)
        run_check(bundle.root)
        RUNS["verify_bundle"] += 1
    except BaseException:
        for path, change in changes.items():  # formatted only for a failing example: repr() costs
            note(f"{path.relative_to(bundle.root)}: {'removed' if change is None else repr(change)}")
        raise
    finally:
        for path in touched:
            path.write_bytes(bundle.files[path])


def test_fuzz_verify_bundle(tmp_path_factory: pytest.TempPathFactory) -> None:
    SEEDS[:] = seed_bundles(tmp_path_factory.mktemp("bundles"))
    for seed in {id(seed): seed for seed in SEEDS}.values():  # the undamaged seeds are checked bundles, not noise
        assert isinstance(run_check(seed.root), BundleVerdict), seed.root
    RUNS.clear()
    _fuzz_verify()
    assert RUNS["verify_bundle"] >= EXAMPLES, RUNS
