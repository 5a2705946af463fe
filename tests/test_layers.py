"""The code's shape: which layer imports which, and how large the edge's classes grow."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parent.parent / "src" / "burrow"
MAX_CLASS_LINES = 500


def _imported(path: Path, root: Path = SRC) -> set[str]:
    """The modules ``path`` (under the package ``root``) imports, absolute (relative imports
    resolved), at any depth."""
    package = ".".join(path.relative_to(root.parent).with_suffix("").parts[:-1])
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                module = f"{base}.{node.module}" if node.module else base
            else:
                module = node.module or ""
            found.add(module)
            found.update(f"{module}.{alias.name}" for alias in node.names)
    return found


def test_api_imports_nothing_of_the_dashboard() -> None:
    """The CLI mounts the dashboard onto the API: the API does not know of it."""
    wrong = {
        f"{path.relative_to(SRC)}: {name}"
        for path in (SRC / "api").rglob("*.py")
        for name in _imported(path)
        if name == "burrow.dashboard" or name.startswith("burrow.dashboard.")
    }
    assert not wrong, sorted(wrong)


def test_the_checker_sees_a_dashboard_import(tmp_path: Path) -> None:
    """The walk above finds imports nested in functions, relative ones too."""
    probe = tmp_path / "burrow" / "api" / "probe.py"
    probe.parent.mkdir(parents=True)
    probe.write_text("def f():\n    from ..dashboard import create_dashboard\n")
    assert "burrow.dashboard.create_dashboard" in _imported(probe, tmp_path / "burrow")


def test_no_class_in_the_edge_exceeds_500_lines() -> None:
    """One concept per class: the edge's parts stay small enough to read."""
    too_long = {}
    for path in (SRC / "edge").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef) and node.end_lineno is not None:
                lines = node.end_lineno - node.lineno + 1
                name = f"{path.name}:{node.name}"
                if lines > MAX_CLASS_LINES:
                    too_long[name] = lines
    assert not too_long, too_long
