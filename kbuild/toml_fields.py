"""Reading small declarative TOML files (targets, boards): every field's type checked, unknown keys
rejected, each error a ParseError naming the file and the key."""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

from kit.errors import ParseError

T = TypeVar("T")


def read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as f:
            return tomllib.load(f)
    except FileNotFoundError as e:
        raise ParseError(str(path), None, "file not found") from e
    except tomllib.TOMLDecodeError as e:
        raise ParseError(str(path), None, f"not valid TOML: {e}") from e


def reject_unknown_keys(table: Mapping[str, Any], known: set[str], path: Path, prefix: str) -> None:
    unknown = sorted(set(table) - known)
    if unknown:
        names = ", ".join(prefix + k for k in unknown)
        raise ParseError(str(path), None, f"unknown key(s) {names}; known: {', '.join(sorted(known))}")


def section(table: Mapping[str, Any], key: str, path: Path) -> Mapping[str, Any]:
    value = table.get(key)
    if not isinstance(value, dict):
        raise ParseError(str(path), None, f"missing table [{key}]")
    return value


def get(table: Mapping[str, Any], key: str, kind: type[T], path: Path, prefix: str) -> T:
    if key not in table:
        raise ParseError(str(path), None, f"missing key {prefix}{key} ({kind.__name__})")
    value = table[key]
    # bool is an int in Python; a TOML `true` is never a valid int field here.
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ParseError(
            str(path), None, f"{prefix}{key} must be {kind.__name__}, got {type(value).__name__} {value!r}"
        )
    return value


def positive_int(table: Mapping[str, Any], key: str, path: Path, prefix: str) -> int:
    value = get(table, key, int, path, prefix)
    if value <= 0:
        raise ParseError(str(path), None, f"{prefix}{key} must be positive, got {value}")
    return value


def string_tuple(table: Mapping[str, Any], key: str, path: Path, prefix: str) -> tuple[str, ...]:
    values = get(table, key, list, path, prefix)
    if not all(isinstance(v, str) for v in values):
        raise ParseError(str(path), None, f"{prefix}{key} must be a list of strings, got {values!r}")
    return tuple(values)
