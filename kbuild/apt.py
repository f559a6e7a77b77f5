"""A private apt configuration for Debian's packages: its own sources.list (the suites the targets
name), lists and archives under the kit's cache; the system's apt setup is never touched."""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

from kbuild.toolchain import Log, no_log, run
from kit.errors import InfraError

MIRROR = "http://deb.debian.org/debian"
SECURITY_MIRROR = "http://deb.debian.org/debian-security"
KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"
# (mirror, suite) pairs of the private sources.list; a target's suite must be one of them.
SUITES: tuple[tuple[str, str], ...] = (
    (MIRROR, "bookworm"),
    (MIRROR, "bookworm-updates"),
    (SECURITY_MIRROR, "bookworm-security"),
    (MIRROR, "bookworm-backports"),
    (MIRROR, "bullseye"),
)
# Archives whose packages count as "from suite S": S itself, plus its security and point updates
# (a backports suite has neither).
SUITE_COMPANIONS = ("", "-security", "-updates")
LISTS_MAX_AGE_S = 24 * 3600


def host_arch(log: Log = no_log) -> str:
    """The host's Debian architecture (the ``linux-kbuild`` tools run here)."""
    if not _HOST_ARCH:
        _HOST_ARCH.append(run(["dpkg", "--print-architecture"], log).stdout.strip())
    return _HOST_ARCH[0]


_HOST_ARCH: list[str] = []  # memo of host_arch()


class PrivateApt:
    """apt-get/apt-cache with a private configuration rooted at ``root`` (no locks, no system state)."""

    def __init__(self, root: Path, archs: tuple[str, ...], log: Log = no_log) -> None:
        self.root = root
        self.log = log
        self.archs = tuple(sorted(set(archs)))
        self.sources = root / "sources.list"
        self.lists = root / "lists"
        self.cache = root / "cache"
        self.stamp = self.lists / ".kmodkit-updated"

    def options(self) -> list[str]:
        opts = {
            "Dir::Etc::sourcelist": str(self.sources),
            "Dir::Etc::sourceparts": "-",
            "Dir::Etc::preferences": "-",
            "Dir::Etc::preferencesparts": "-",
            "Dir::State::Lists": str(self.lists),
            "Dir::Cache": str(self.cache),
            # Docker images' apt.conf.d disables the binary caches: 1.4 s per apt-cache call without them.
            "Dir::Cache::pkgcache": "pkgcache.bin",
            "Dir::Cache::srcpkgcache": "srcpkgcache.bin",
            "Debug::NoLocking": "1",
            "Acquire::Languages": "none",
        }
        if os.geteuid() == 0:  # root: apt's _apt sandbox user cannot write our private dirs
            opts["APT::Sandbox::User"] = "root"
        return [arg for key, value in opts.items() for arg in ("-o", f"{key}={value}")]

    def sources_text(self) -> str:
        archs = ",".join(self.archs)
        options = f"[arch={archs} signed-by={KEYRING}]"
        return "".join(f"deb {options} {mirror} {suite} main\n" for mirror, suite in SUITES)

    def ensure_lists(self, required_suite: str) -> None:
        """Write sources.list; ``apt-get update`` when the lists are missing, stale or for other sources.

        A failed fetch of another suite (e.g. a security mirror mid-sync) is logged, not fatal; stale
        lists of ``required_suite`` are used when the update fails (offline), missing ones are fatal.
        """
        for d in (self.lists / "partial", self.cache / "archives" / "partial"):
            d.mkdir(parents=True, exist_ok=True)
        text = self.sources_text()
        if not self.sources.is_file() or self.sources.read_text() != text:
            self.sources.write_text(text)
            self.stamp.unlink(missing_ok=True)
        if self._lists_fresh():
            return
        result = run(["apt-get", *self.options(), "update"], self.log, check=False)
        failures = _apt_failures(result.stdout + result.stderr)
        if result.returncode == 0 and not failures:
            self.stamp.touch()
            return
        required_failed = [f for f in failures if f"/dists/{required_suite}/" in f] or (
            failures if result.returncode != 0 and not failures else []
        )
        for failure in failures:
            self.log(f"# warning: apt-get update: {failure}")
        if not self.has_lists(required_suite):
            error = (required_failed or failures or [f"exit status {result.returncode}"])[0]
            raise InfraError(f"apt-get update failed: {error}; check the network/proxy and retry")
        if not required_failed:
            self.stamp.touch()

    def has_lists(self, suite: str) -> bool:
        return any(self.lists.glob(f"*_dists_{suite}_*Packages*"))

    def madison(self, package: str) -> list[tuple[str, str]]:
        """``(version, suite)`` pairs of ``package`` (``name:arch``) known to the private lists."""
        out = run(["apt-cache", *self.options(), "madison", package], self.log).stdout
        pairs = []
        for line in out.splitlines():
            parts = [p.strip() for p in line.split("|")]
            if len(parts) == 3 and " " in parts[2]:
                suite = parts[2].split()[1].split("/")[0]
                pairs.append((parts[1], suite))
        return pairs

    def show(self, package: str, version: str) -> dict[str, str]:
        """The first stanza of ``apt-cache show package=version`` as a dict."""
        result = run(["apt-cache", *self.options(), "show", f"{package}={version}"], self.log, check=False)
        if result.returncode != 0:
            raise InfraError(f"apt-cache show {package}={version} failed: {_apt_error_line(result.stderr)}")
        stanza = result.stdout.split("\n\n")[0]
        return dict(re.findall(r"^([A-Za-z-]+):\s*(.*)$", stanza, re.M))

    def download(self, args: list[str], dest: Path) -> list[Path]:
        """``apt-get download`` into ``dest``; returns the .deb files.

        apt checks what it downloads against the hashes of the signed lists, but keeps a ``.deb`` of the
        same name and size already in ``dest`` unchecked (tried: a flipped byte went through): those are
        removed first, so every returned file is one apt has just verified."""
        dest.mkdir(parents=True, exist_ok=True)
        for stale in dest.glob("*.deb"):
            stale.unlink()
        result = run(["apt-get", *self.options(), "download", *args], self.log, cwd=dest, check=False)
        if result.returncode != 0:
            error = _apt_error_line(result.stdout + result.stderr) or f"exit status {result.returncode}"
            raise InfraError(
                f"apt-get download failed: {error}; check the network, or delete {self.stamp} to refresh"
                " the package lists, then retry"
            )
        return sorted(dest.glob("*.deb"))

    def _lists_fresh(self) -> bool:
        return self.stamp.is_file() and time.time() - self._stamp_mtime() < LISTS_MAX_AGE_S

    def _stamp_mtime(self) -> float:
        return self.stamp.stat().st_mtime


def _apt_error_line(output: str) -> str:
    """The first ``E:`` line of apt's output, without the prefix (or the first failed fetch)."""
    for line in output.splitlines():
        if line.startswith("E: "):
            return line.removeprefix("E: ").strip()
    return next(iter(_apt_failures(output)), "")


def _apt_failures(output: str) -> list[str]:
    """apt's ``Err:`` / ``E:`` / ``W: Failed to fetch`` lines (not the generic summary warnings)."""
    prefixes = ("Err:", "E: ", "W: Failed to fetch")
    return [line.strip() for line in output.splitlines() if line.startswith(prefixes)]
