"""The package's shape: imports flow one way between subpackages, no module imports itself back through
others, no module grows past 400 lines, and every subpackage says what it holds and what it may import.

The imports are read from the source with `ast`, every `import` statement counted: at module level, inside
functions (lazy imports) and under `if TYPE_CHECKING:` (for the directions; a type-only import runs nothing,
so it is left out of the cycle check). Importing a submodule is not counted as importing its package.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "imagerank"
MAX_LINES = 400

# What each part of imagerank may import, besides itself. The data flows one way:
# files -> images -> embeddings -> store -> rankings -> index -> metrics / figures / HTTP / commands.
# "imagerank" is the package's own __init__ (the public API, which imports everything lazily, and
# `__version__`); every part may import it.
ALLOWED: dict[str, set[str]] = {
    "imagerank": {"errors", "embedding", "store", "index"},
    "__main__": {"cli"},
    "errors": set(),
    "embedding": {"errors"},
    "store": {"errors"},
    "ranking": {"errors"},
    "text": {"errors", "embedding", "ranking"},
    "index": {"errors", "embedding", "store", "ranking", "text"},
    "evaluation": {"errors", "embedding", "store", "ranking", "text", "index"},
    "report": {"errors", "embedding", "ranking", "evaluation"},
    "server": {"errors", "embedding", "store", "ranking", "text", "index"},
    "cli": {"errors", "embedding", "store", "ranking", "text", "index", "evaluation", "report", "server"},
}
# Entry points may start the command line.
ENTRY_POINTS = {"imagerank.__main__": {"cli"}, "imagerank.server.__main__": {"cli"}}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def part_of(module: str) -> str:
    """The subpackage (or top-level module) of imagerank that `module` belongs to."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "imagerank"


def is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def imports_of(path: Path, modules: set[str]) -> list[tuple[str, bool]]:
    """(imported imagerank module, whether only under TYPE_CHECKING) for each import in the file at `path`."""
    this = module_name(path)
    found: list[tuple[str, bool]] = []

    def target(name: str) -> str:
        return name if name in modules else name.rpartition(".")[0] or name

    def visit(node: ast.AST, typing_only: bool) -> None:
        if isinstance(node, ast.If) and is_type_checking(node.test):
            for child in node.body:
                visit(child, True)
            for child in node.orelse:
                visit(child, typing_only)
            return
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names if alias.name.split(".")[0] == "imagerank"]
            found.extend((name, typing_only) for name in names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = this.split(".") if path.name == "__init__.py" else this.split(".")[:-1]
                anchor = anchor[: len(anchor) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            if base.split(".")[0] == "imagerank":
                for alias in node.names:
                    submodule = f"{base}.{alias.name}"
                    found.append((submodule if submodule in modules else target(base), typing_only))
        for child in ast.iter_child_nodes(node):
            visit(child, typing_only)

    visit(ast.parse(path.read_text(encoding="utf-8")), False)
    return found


def import_graph() -> dict[str, list[tuple[str, bool]]]:
    files = {module_name(path): path for path in PACKAGE.rglob("*.py")}
    modules = set(files)
    return {name: imports_of(path, modules) for name, path in files.items()}


def forbidden_imports(graph: dict[str, list[tuple[str, bool]]]) -> list[str]:
    """'importer -> imported' for each import that goes against `ALLOWED`."""
    bad = []
    for importer, imports in graph.items():
        source = part_of(importer)
        allowed = ALLOWED[source] | ENTRY_POINTS.get(importer, set()) | {source, "imagerank"}
        bad.extend(f"{importer} -> {imported}" for imported, _ in imports if part_of(imported) not in allowed)
    return sorted(set(bad))


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """One import cycle (its modules, the first repeated at the end), or None when the graph has none."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for successor in sorted(edges.get(node, ())):
            if state.get(successor) == 1:
                return [*path[path.index(successor) :], successor]
            if successor not in state and (cycle := visit(successor)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(edges):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def runtime_edges(graph: dict[str, list[tuple[str, bool]]]) -> dict[str, set[str]]:
    return {
        importer: {imported for imported, typing_only in imports if not typing_only and imported != importer}
        for importer, imports in graph.items()
    }


def test_every_part_of_the_package_has_a_rule() -> None:
    graph = import_graph()
    assert {part_of(module) for module in graph} <= set(ALLOWED), set(map(part_of, graph)) - set(ALLOWED)
    assert sum(len(imports) for imports in graph.values()) > 100  # the reader found the imports


def test_imports_flow_one_way_between_subpackages() -> None:
    assert forbidden_imports(import_graph()) == []


def test_no_module_imports_itself_back() -> None:
    assert find_cycle(runtime_edges(import_graph())) is None


def test_the_checks_catch_a_wrong_import() -> None:
    graph = import_graph()
    graph["imagerank.store.base"].append(("imagerank.index.core", False))
    assert forbidden_imports(graph) == ["imagerank.store.base -> imagerank.index.core"]
    cycle = find_cycle(runtime_edges(graph))
    assert cycle is not None and cycle[0] == cycle[-1] and "imagerank.store.base" in cycle


def test_a_lazy_import_back_is_a_cycle() -> None:
    edges = {"a.base": {"a.os"}, "a.factory": {"a.backend"}, "a.backend": {"a.factory"}}
    assert find_cycle(edges) == ["a.backend", "a.factory", "a.backend"]
    # `open_store` imports the Milvus backend inside the function; the reader sees it.
    factory = PACKAGE / "store" / "factory.py"
    assert ("imagerank.store.milvus", False) in imports_of(factory, set(import_graph()))


@pytest.mark.parametrize("path", sorted(PACKAGE.rglob("*.py")), ids=lambda path: module_name(path))
def test_no_module_is_over_400_lines(path: Path) -> None:
    lines = len(path.read_text(encoding="utf-8").splitlines())
    assert lines <= MAX_LINES, f"{path.name} has {lines} lines"


PACKAGES = sorted(path.parent for path in PACKAGE.rglob("__init__.py"))


@pytest.mark.parametrize("package", PACKAGES, ids=module_name)
def test_every_subpackage_says_what_it_holds(package: Path) -> None:
    docstring = ast.get_docstring(ast.parse((package / "__init__.py").read_text(encoding="utf-8")))
    assert docstring and len(docstring.split()) >= 8, f"{package} has no docstring saying what it holds"
