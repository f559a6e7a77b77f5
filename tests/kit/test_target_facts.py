"""target.toml describes the kernel that ran (issue 12 row 10): on the user's own tree (--kdir + --image)
its release, version, source tree, image and .config, and no Debian flavour. The local tree is a real
prepared build tree: the Debian headers of arm-6.1 in the kit's cache (KernelTree.kdir, .image)."""

from __future__ import annotations

import shutil
import tomllib
from pathlib import Path

import pytest

from analysis.model.units import parse_kernel_version
from analysis.verify.bundle import load_bundle
from analysis.verify.context import build_context
from kbuild.kernels import KernelTree, local_kernel_tree
from kbuild.targets import load_target
from kit.pipeline import guest_cmdline, kernel_series, local_version, toml_string, write_target_facts
from kit.request import RunRequest
from tests.conftest import debian_kernel

REPO = Path(__file__).resolve().parent.parent.parent
CAPTURED_RUN = REPO / "tests" / "data" / "runs" / "arm-6.1"


def local_request(kdir: Path, image: Path, tmp: Path, dtb: Path | None = None) -> RunRequest:
    return RunRequest(target=load_target("arm-6.1"), kdir=kdir, image=image, dtb=dtb,
                      results_root=tmp / "results", generated_root=tmp / "generated")


def local_tree(request: RunRequest, busybox: Path | None) -> KernelTree:
    """What pipeline.get_kernel returns for --kdir/--image (its busybox: the cached Debian one)."""
    assert request.kdir is not None and request.image is not None
    return local_kernel_tree(request.kdir, request.image, request.dtb, busybox=busybox)


def facts_of(request: RunRequest, tree: KernelTree, bundle: Path) -> dict[str, object]:
    bundle.mkdir(parents=True, exist_ok=True)
    write_target_facts(request, tree, guest_cmdline(request), bundle)
    return tomllib.loads((bundle / "target.toml").read_text(encoding="utf-8"))


def test_a_local_tree_is_described_as_itself(tmp_path: Path) -> None:
    debian = debian_kernel("6.1")
    request = local_request(debian.kdir, debian.image, tmp_path)
    tree = local_tree(request, debian.busybox)
    bundle = tmp_path / "bundle"
    facts = facts_of(request, tree, bundle)
    assert debian.release.startswith("6.1.0-") and debian.release.endswith("-armmp")
    assert facts["kernel"] == {
        "release": debian.release,
        "version": debian.version,
        "series": "6.1",
        "source": str(debian.kdir.resolve()),
        "image": str(debian.image.resolve()),
        "config": str(debian.kdir.resolve() / ".config"),
        "localversion": debian.release.removeprefix("6.1.0"),  # e.g. -57-armmp: the release's, not a flavour
    }
    text = (bundle / "target.toml").read_text()
    assert "flavour" not in text and "bookworm" not in text and "Debian" not in text
    assert (facts["name"], facts["arch"], facts["mem_mib"]) == ("arm-6.1", "arm", 1024)
    assert (bundle / "config").read_bytes() == (debian.kdir / ".config").read_bytes()


def test_the_checker_reads_a_local_trees_facts(tmp_path: Path) -> None:
    debian = debian_kernel("6.1")
    request = local_request(debian.kdir, debian.image, tmp_path)
    bundle = tmp_path / "bundle"
    facts_of(request, local_tree(request, debian.busybox), bundle)
    shutil.copyfile(CAPTURED_RUN / "meminfo.txt", bundle / "meminfo.txt")  # something to check
    ctx = build_context(load_bundle(bundle))
    assert ctx.arch == "arm" and ctx.release == debian.release
    assert ctx.version == parse_kernel_version(debian.version)
    assert ctx.banks == ((0x40000000, 1024 << 20),)
    assert ctx.config["CONFIG_HIGHMEM"] == "y"  # the tree's .config, copied
    assert ctx.layout is not None, ctx.why_no_layout


def test_a_debian_kernel_keeps_its_series_and_flavour(tmp_path: Path) -> None:
    debian = debian_kernel("6.1")
    request = RunRequest(target=load_target("arm-6.1"), results_root=tmp_path, generated_root=tmp_path)
    facts = facts_of(request, debian, tmp_path / "bundle")
    assert facts["kernel"] == {"release": debian.release, "version": debian.version, "series": "6.1",
                               "flavour": "armmp"}
    assert (tmp_path / "bundle" / "config").read_bytes() == debian.config.read_bytes()


def own_tree(root: Path, release: str, config: Path) -> Path:
    """A prepared tree as `make modules_prepare` leaves it, as far as the kit reads it."""
    (root / "include" / "generated").mkdir(parents=True)
    (root / "Makefile").write_text("VERSION = 6\nPATCHLEVEL = 6\nSUBLEVEL = 12\nEXTRAVERSION =\nNAME = x\n")
    (root / "include" / "generated" / "utsrelease.h").write_text(f'#define UTS_RELEASE "{release}"\n')
    shutil.copyfile(config, root / ".config")
    return root


@pytest.mark.parametrize(("release", "localversion"), [("6.6.12", None), ("6.6.12-myboard+", "-myboard+")])
def test_an_own_tree_with_or_without_local_version(tmp_path: Path, release: str, localversion: str | None) -> None:
    debian = debian_kernel("6.1")
    kdir = own_tree(tmp_path / 'bsp "v2" Linux ü', release, debian.config)  # a quote and a non-ASCII letter
    dtb = tmp_path / "board.dtb"
    dtb.write_bytes(b"\xd0\x0d\xfe\xed")
    request = local_request(kdir, debian.image, tmp_path, dtb=dtb)
    facts = facts_of(request, local_tree(request, debian.busybox), tmp_path / "bundle")
    kernel = facts["kernel"]
    assert isinstance(kernel, dict)
    assert (kernel["release"], kernel["version"], kernel["series"]) == (release, "6.6.12", "6.6")
    assert (kernel["source"], kernel["dtb"]) == (str(kdir.resolve()), str(dtb.resolve()))
    assert kernel.get("localversion") == localversion
    assert "flavour" not in kernel


def test_local_version_and_series() -> None:
    assert local_version("6.1.0-57-armmp", "6.1.192") == "-57-armmp"
    assert local_version("6.12.95+deb12-armmp", "6.12.95") == "+deb12-armmp"
    assert local_version("6.6.0-rc1-foo", "6.6.0-rc1") == "-foo"
    assert local_version("6.1.12", "6.1.1") == ""  # 6.1.1 is no prefix of 6.1.12
    assert local_version("6.1.12", "6.1.12") == ""
    assert (kernel_series("6.1.192"), kernel_series("6.12"), kernel_series("7")) == ("6.1", "6.12", "7")


@pytest.mark.parametrize("text", ['a "quoted" \\ path', "tab\there", "del\x7f", "ünï", "bad\udcff byte", "\x01"])
def test_toml_string_round_trips(text: str) -> None:
    value = tomllib.loads(f"x = {toml_string(text)}\n")["x"]
    assert value == text.replace("\udcff", "\ufffd")
