"""The package's shape, enforced by reading its imports.

Arrows point one way (DEVELOPERS.md, Layout): ``cli/`` uses the API and
``fast/``; ``fast/`` uses the core; the core uses neither. rich and typer are
the CLI's alone, and no module imports another that imports it back, whatever
the statement order: an import sorter must never be able to break the package.
Imports inside functions count too (they are cycles that merely wait for a
caller); only ``if TYPE_CHECKING:`` blocks are left out.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Mapping
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "texsynth"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> dict[str, Path]:
    return {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def _type_checking_only(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)


def _walk(node: ast.AST) -> Iterable[ast.AST]:
    for child in ast.iter_child_nodes(node):
        if _type_checking_only(child):
            continue
        yield child
        yield from _walk(child)


def imports_of(name: str, path: Path, known: Iterable[str]) -> set[str]:
    """Every module ``name`` imports: external ones by their top-level name, ours in full."""
    known = set(known)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in _walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            for alias in node.names:
                found.add(alias.name if alias.name in known else alias.name.split(".")[0])
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            for alias in node.names:
                submodule = f"{target}.{alias.name}"
                # ``from . import share`` imports the submodule; ``from .api import render`` the module.
                found.add(submodule if submodule in known else target if target in known else target.split(".")[0])
    return found


def import_graph() -> dict[str, set[str]]:
    found = modules()
    return {name: imports_of(name, path, found) for name, path in found.items()}


def cycles(graph: Mapping[str, Iterable[str]]) -> list[list[str]]:
    """Strongly connected groups of more than one module, or a module importing itself (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for other in graph.get(node, ()):
            if other not in graph:
                continue
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in on_stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1 or node in graph.get(node, ()):
                groups.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return groups


def is_cli(name: str) -> bool:
    return name == "texsynth.cli" or name.startswith("texsynth.cli.")


def is_fast(name: str) -> bool:
    return name == "texsynth.fast" or name.startswith("texsynth.fast.")


def test_the_checker_finds_a_cycle_and_reads_relative_imports(tmp_path):
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"a"}}) == [["a"]] and cycles({"a": {"b"}, "b": set()}) == []
    init = tmp_path / "__init__.py"
    init.write_text("from . import share\nfrom .common import app\nimport rich.console\n")
    known = {"texsynth.cli", "texsynth.cli.share", "texsynth.cli.common"}
    assert imports_of("texsynth.cli", init, known) == {"texsynth.cli.share", "texsynth.cli.common", "rich"}
    module = tmp_path / "common.py"
    module.write_text("from ..api import render\nfrom .. import __version__\n")
    assert imports_of("texsynth.cli.common", module, known | {"texsynth.api", "texsynth"}) == {
        "texsynth.api",
        "texsynth",
    }


def test_no_module_imports_itself_back():
    assert cycles(import_graph()) == []


def test_only_the_cli_imports_typer_or_rich():
    offenders = {
        name: sorted(used & {"typer", "rich", "click"})
        for name, used in import_graph().items()
        if not is_cli(name) and used & {"typer", "rich", "click"}
    }
    assert offenders == {}


def test_nothing_outside_the_cli_imports_it():
    offenders = {
        name: sorted(filter(is_cli, used))
        for name, used in import_graph().items()
        if not is_cli(name) and name != "texsynth.__main__" and any(map(is_cli, used))
    }
    assert offenders == {}


def test_the_core_never_imports_the_feed_forward_path():
    offenders = {
        name: sorted(filter(is_fast, used))
        for name, used in import_graph().items()
        if not is_cli(name) and not is_fast(name) and name != "texsynth.__main__" and any(map(is_fast, used))
    }
    assert offenders == {}


def test_library_modules_do_not_import_the_package_root():
    # ``from . import __version__`` made six modules depend on __init__'s statement order.
    offenders = [name for name, used in import_graph().items() if name != "texsynth" and "texsynth" in used]
    assert offenders == []
