"""Sizes and kernel versions as people and kernels write them.

`parse_size` follows the kernel's `memparse()` (lib/cmdline.c, unchanged in 3.x .. 6.12): a
`simple_strtoull(s, &end, 0)` number (so `0x..` is hex and a leading `0` is octal) followed by an
optional binary suffix K, M, G, T, P, E (either case).
"""

from __future__ import annotations

import re

from kit.errors import UserError

Version = tuple[int, int, int]

_SUFFIX_SHIFT = {"k": 10, "m": 20, "g": 30, "t": 40, "p": 50, "e": 60}
_NUMBER = re.compile(r"(0[xX][0-9a-fA-F]+|0[0-7]*|[1-9][0-9]*)")
# Each part at most 6 digits (kernels have 1-3; int() of a 4301-digit string raises ValueError).
_VERSION = re.compile(r"^\s*(\d{1,6})\.(\d{1,6})(?:\.(\d{1,6}))?(?:[-+~._][0-9A-Za-z._+~-]*)?\s*$")


def _strtoull_base0(digits: str) -> int:
    """`simple_strtoull(s, NULL, 0)`: 0x.. hex, 0.. octal, else decimal; wraps at 64 bits like the
    kernel's (lib/kstrtox.c _parse_integer only flags the overflow, simple_strtoull ignores it)."""
    if digits[:2].lower() == "0x":
        return _wrapped(digits[2:], 16)
    if digits.startswith("0") and len(digits) > 1:
        return _wrapped(digits[1:], 8)
    return _wrapped(digits, 10)


def _wrapped(digits: str, base: int) -> int:
    value = 0
    for start in range(0, len(digits), 64):  # chunks: int() refuses 4300+ digits at once
        chunk = digits[start:start + 64]
        value = (value * base ** len(chunk) + int(chunk, base)) % (1 << 64)
    return value


def memparse_prefix(text: str) -> tuple[int, str]:
    """The kernel's `memparse(ptr, &retptr)`: the value and the unparsed rest (lib/cmdline.c memparse).

    Like the kernel, text that does not start with a number gives 0 and is returned untouched.
    """
    match = _NUMBER.match(text)
    if match is None:
        return 0, text
    value = _strtoull_base0(match.group(1))
    rest = text[match.end():]
    if rest[:1].lower() in _SUFFIX_SHIFT and rest[:1]:
        value <<= _SUFFIX_SHIFT[rest[0].lower()]
        rest = rest[1:]
    return value, rest


def parse_size(text: str) -> int:
    """A size as typed by a person: "1G", "1024M", "300M", "0x40000000", "512k" -> bytes.

    Strict: the whole string must be one memparse number (a trailing "B" or "iB" is accepted,
    e.g. "512MB", as the kernel ignores it too). Raises UserError on anything else.
    """
    stripped = text.strip()
    value, rest = memparse_prefix(stripped)
    if not stripped or not _NUMBER.match(stripped) or rest not in ("", "B", "iB", "b"):
        raise UserError(f"not a size: {text!r}; write e.g. 1G, 1024M, 512k or 0x40000000")
    return value


def format_size(value: int) -> str:
    """Bytes the way `parse_size` reads them back: the largest exact binary suffix ("2M", "4K", "1G"),
    else plain bytes ("4097")."""
    for suffix, shift in sorted(_SUFFIX_SHIFT.items(), key=lambda item: -item[1]):
        if value and value % (1 << shift) == 0:
            return f"{value >> shift}{suffix.upper()}"
    return str(value)


def parse_kernel_version(text: str) -> Version:
    """"3.18" | "6.1.0-50-armmp" | "5.10.223" | "6.12.95+deb12-armmp" -> (major, minor, patch).

    A Debian ABI name like "6.1.0-50-armmp" gives patch 0: the real stable patch level is not in it.
    """
    match = _VERSION.match(text)
    if match is None:
        raise UserError(f"not a kernel version: {text!r}; write e.g. 6.1, 5.10.223 or 6.1.0-50-armmp")
    major, minor, patch = match.group(1), match.group(2), match.group(3) or "0"
    return int(major), int(minor), int(patch)


def format_version(version: Version) -> str:
    return ".".join(str(part) for part in version)
