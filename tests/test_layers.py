"""The layers read one way: kbuild and deploy import no analysis code; analysis imports no transport."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
FORBIDDEN = {"kbuild": ("analysis", "deploy", "kit.pipeline", "kit.session"),
             "deploy": ("analysis", "kit.pipeline", "kit.session"),
             "analysis": ("deploy", "kbuild", "kit.pipeline", "kit.session")}


def _imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), str(path))
    names = [alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names]
    names += [node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module]
    return names


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_a_layer_imports_nothing_above_it(package: str) -> None:
    wrong = [f"{path.relative_to(REPO)}: {name}" for path in sorted((REPO / package).rglob("*.py"))
             for name in _imports(path) if name.startswith(FORBIDDEN[package])]
    assert wrong == []
