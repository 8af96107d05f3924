"""No import circles in qa/, embeddings/ or ui/: errors and shared types live below the modules
that raise or use them (embeddings.errors, embeddings.stores.records, embeddings.encoders.variants,
embeddings.stores.base, ...).

Every import counts -- at module level, inside a function (a "lazy" import is still a
dependency), or under ``TYPE_CHECKING`` -- between modules of the three packages. A package's
``__init__`` counts as the module named by the package; the implicit import of a parent
package when a submodule is imported does not.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("qa", "embeddings", "ui")


def _modules() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join(parts)] = path
    return found


def _resolve(name: str, modules: dict[str, Path]) -> str | None:
    """The project module ``name`` is, or lies in (``qa.config.X`` -> ``qa.config``)."""
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


def import_graph() -> dict[str, dict[str, int]]:
    """``module -> {imported module: line}`` over the project's packages."""
    modules = _modules()
    graph: dict[str, dict[str, int]] = {}
    for module, path in modules.items():
        is_package = path.name == "__init__.py"
        edges: dict[str, int] = {}
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = module.split(".") if is_package else module.split(".")[:-1]
                    base = base[: len(base) - (node.level - 1)]
                    source = ".".join(base + ([node.module] if node.module else []))
                else:
                    source = node.module or ""
                # ``from pkg import sub`` imports the submodule; ``from mod import name`` the module.
                targets = [f"{source}.{a.name}" for a in node.names]
            for target in targets:
                resolved = _resolve(target, modules)
                if resolved is not None and resolved != module:
                    edges.setdefault(resolved, node.lineno)
        graph[module] = edges
    return graph


def import_circles(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    circles: list[list[str]] = []
    counter = 0

    def visit(v: str) -> None:
        nonlocal counter
        index[v] = low[v] = counter
        counter += 1
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, {}):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                circles.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(circles)


def _describe(circle: list[str], graph: dict[str, dict[str, int]]) -> str:
    members = set(circle)
    edges = [
        f"  {a} -> {b} ({_modules()[a].relative_to(ROOT)}:{line})"
        for a in circle
        for b, line in sorted(graph[a].items())
        if b in members
    ]
    return " <-> ".join(circle) + "\n" + "\n".join(edges)


#: The reader's modules, checked on their own as well (their circle went in the metrics move).
_READER = "qa.reader"


def _in_reader(circle: list[str]) -> bool:
    return all(m == _READER or m.startswith(_READER + ".") for m in circle)


def test_the_graph_sees_lazy_and_relative_imports() -> None:
    graph = import_graph()
    assert "embeddings.stores.index" in graph["qa.ingest.indexing"]
    assert "qa.config" in graph["embeddings.stores.index"]  # imported inside functions
    assert graph["embeddings.stores.postgres"].keys() >= {"embeddings.stores.base", "embeddings.errors"}
    fake = {"a": {"b": 1}, "b": {"c": 1}, "c": {"a": 1}, "d": {"a": 1}}
    assert import_circles(fake) == [["a", "b", "c"]]


def test_no_import_circle() -> None:
    graph = import_graph()
    circles = [c for c in import_circles(graph) if not _in_reader(c)]
    assert not circles, "import circles:\n" + "\n".join(_describe(c, graph) for c in circles)


def test_no_import_circle_in_the_reader() -> None:
    graph = import_graph()
    circles = [c for c in import_circles(graph) if _in_reader(c)]
    assert not circles, "import circles:\n" + "\n".join(_describe(c, graph) for c in circles)


#: The data flow's order, lowest first: a module may import from its own layer or a lower one,
#: never from a higher one (README, "How it works"). A module belongs to the longest prefix listed.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("qa.config",),  # every default
    ("qa.answer", "embeddings.errors"),  # the types and errors that travel through every stage
    ("qa.ingest.extraction", "qa.ingest.documents", "qa.ingest.chunking", "qa.retrieval.bm25"),  # text, chunks, tokens
    ("embeddings.encoders",),  # text -> vectors
    ("embeddings.stores", "embeddings"),  # chunks + vectors -> a searchable store
    ("qa.ingest.indexing", "qa.ingest", "qa.retrieval", "qa.reader"),  # plan + apply; retrieve; read
    ("qa.pipeline",),  # ask()
    ("qa.tools", "ui", "qa"),  # the command line, evaluation, benchmarks, the chat and the API; `qa` re-exports ask
)


def layer_of(module: str) -> int:
    best, rank = "", -1
    for i, prefixes in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > len(best):
                best, rank = prefix, i
    return rank


def test_every_module_has_a_layer() -> None:
    assert [m for m in import_graph() if layer_of(m) < 0] == []
    assert layer_of("qa.retrieval.bm25") < layer_of("embeddings.stores.postgres") < layer_of("qa.retrieval.retrievers")
    assert layer_of("qa") > layer_of("qa.pipeline") > layer_of("qa.reader.decoding")


def test_imports_go_down_the_layers_only() -> None:
    graph = import_graph()
    upward = [
        f"{a} (layer {layer_of(a)}) -> {b} (layer {layer_of(b)}) ({_modules()[a].relative_to(ROOT)}:{line})"
        for a, edges in sorted(graph.items())
        for b, line in sorted(edges.items())
        if layer_of(b) > layer_of(a)
    ]
    assert not upward, "imports from a higher layer:\n" + "\n".join(upward)
