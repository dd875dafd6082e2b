"""The layers of tests/: test modules build on tools and support, tools build on support, never the reverse.

Imports are read from the source (``ast``), including those inside functions, so a lazy import
counts as much as one at the top of a module.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parents[1]
TEST_MODULES = ("tests.unit", "tests.integration", "tests.e2e")


def imported_modules(path: Path) -> set[str]:
    """Every module ``path`` imports (``from a.b import c`` counts as ``a.b`` and ``a.b.c``)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def imports_under(path: Path, packages: tuple[str, ...]) -> list[str]:
    return sorted(m for m in imported_modules(path) if any(m == p or m.startswith(p + ".") for p in packages))


def _sources(folder: str) -> list[Path]:
    return sorted((TESTS / folder).rglob("*.py"))


def test_imported_modules_reads_top_level_lazy_and_from_imports(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text("import os\nfrom tests.e2e import conftest\n\ndef f():\n    from tests.tools.demo import main\n")
    assert imports_under(module, TEST_MODULES) == ["tests.e2e", "tests.e2e.conftest"]
    assert imports_under(module, ("tests.tools",)) == ["tests.tools.demo", "tests.tools.demo.main"]


@pytest.mark.parametrize("path", _sources("support"), ids=lambda p: p.name)
def test_test_support_imports_no_test_module_and_no_tool(path: Path) -> None:
    assert imports_under(path, (*TEST_MODULES, "tests.tools")) == []


@pytest.mark.parametrize("path", _sources("tools"), ids=lambda p: str(p.relative_to(TESTS)))
def test_tools_import_no_test_module(path: Path) -> None:
    assert imports_under(path, TEST_MODULES) == []


def test_a_test_is_grouped_by_its_own_entry_else_by_its_module() -> None:
    from tests.conftest import ISOLATED, xdist_group_of

    assert xdist_group_of("tests/e2e/test_cluster.py::test_anything") == ISOLATED
    assert xdist_group_of(
        "tests/unit/test_readahead.py::test_adaptive_read_ahead_beats_one_stream_through_latency"
    ) == (ISOLATED)
    assert xdist_group_of("tests/unit/test_readahead.py::test_adaptive_read_ahead_beats_one_stream_through_latency[x]")
    assert xdist_group_of("tests/unit/test_readahead.py::test_something_else") is None


def test_every_xdist_group_entry_names_a_test_that_exists() -> None:
    from tests.conftest import XDIST_GROUPS

    for entry in XDIST_GROUPS:
        module, _, test = entry.partition("::")
        path = TESTS.parent / module
        assert path.is_file(), entry
        if test:
            names = {n.name for n in ast.walk(ast.parse(path.read_text())) if isinstance(n, ast.FunctionDef)}
            assert test in names, entry
