"""The package's import graph, read from the source with ast (lazy imports inside functions
included): no import circles, and no upward imports across the layers below.

Layers, bottom to top (a module may import its own layer and the layers below):
1. core: ``splitinfer`` (the package itself), ``splitinfer.codec``, ``splitinfer.metrics``,
   ``splitinfer.registry``, ``splitinfer.process``, ``splitinfer.data``, ``splitinfer.proto``,
   ``splitinfer.onnx``, ``splitinfer.errors``
2. runtime (torch-free, what the edge, the cloud and the sidecar run, and the non-learned
   codecs their evaluations compare against): ``splitinfer.repository``, ``splitinfer.pointcloud``,
   ``splitinfer.image``, ``splitinfer.baselines``, ``splitinfer.sidecar``,
   ``cloud_server``, ``edge_client``
3. experiments and tools: ``splitinfer.nn``, ``splitinfer.training``, ``splitinfer.bench``,
   ``splitinfer.plots``, ``splitinfer.motion``
4. entry points: ``splitinfer.cli``, ``splitinfer.demo``, ``splitinfer.__main__``
"""
import ast
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("splitinfer", "cloud_server", "edge_client")
LAYERS = [
    ("splitinfer", "splitinfer.codec", "splitinfer.metrics", "splitinfer.registry",
     "splitinfer.process", "splitinfer.data", "splitinfer.proto", "splitinfer.onnx",
     "splitinfer.tokens", "splitinfer.errors"),
    ("splitinfer.repository", "splitinfer.pointcloud", "splitinfer.image", "splitinfer.baselines",
     "splitinfer.sidecar", "cloud_server", "edge_client"),
    ("splitinfer.nn", "splitinfer.training", "splitinfer.bench", "splitinfer.plots",
     "splitinfer.motion"),
    ("splitinfer.cli", "splitinfer.demo", "splitinfer.__main__"),
]
# Known exceptions (importer, imported), each with its reason and removed by the change that fixes it.
KNOWN: set[tuple[str, str]] = set()


def _module(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    out = {}
    for pkg in PACKAGES:
        for p in (ROOT / pkg).rglob("*.py"):
            if p.parent.name != "proto" and "static" not in p.parts:
                out[_module(p)] = p
    return out


def import_graph() -> dict[str, set[str]]:
    """module -> the package modules it imports (anywhere in the file), ancestors left out."""
    mods = _modules()
    graph = {}
    for name, path in mods.items():
        base = name if path.name == "__init__.py" else name.rpartition(".")[0]
        targets = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets |= {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom):
                m = node.module or ""
                if node.level:
                    b = base
                    for _ in range(node.level - 1):
                        b = b.rpartition(".")[0]
                    m = f"{b}.{m}" if m else b
                targets |= {f"{m}.{a.name}" for a in node.names} | {m}
        deps = set()
        for t in targets:
            while t and t not in mods:
                t = t.rpartition(".")[0]
            if t and t != name and not name.startswith(t + "."):
                deps.add(t)
        graph[name] = deps
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def layer(module: str) -> int:
    best, depth = None, -1
    for i, prefixes in enumerate(LAYERS):
        for p in prefixes:
            inside = module == p or (p != "splitinfer" and module.startswith(p + "."))
            if inside and len(p) > depth:
                best, depth = i, len(p)
    assert best is not None, f"{module} is in no layer: add it to LAYERS"
    return best


def test_no_import_circles():
    graph = {m: {d for d in deps if (m, d) not in KNOWN} for m, deps in import_graph().items()}
    assert cycles(graph) == []


def test_no_upward_imports():
    upward = sorted((m, d) for m, deps in import_graph().items() for d in deps
                    if layer(d) > layer(m) and (m, d) not in KNOWN)
    assert upward == []


def test_known_exceptions_still_exist():
    """An exception that no longer exists is removed from KNOWN (so it cannot come back)."""
    graph = import_graph()
    assert [e for e in KNOWN if e[1] not in graph.get(e[0], ())] == []


def test_the_checks_find_a_circle_and_an_upward_import():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert layer("splitinfer.training.loop") > layer("splitinfer.pointcloud.runtime")
