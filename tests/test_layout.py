"""The package's floor plan holds: imports point one way, no circles, no private names across modules."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "lia_upscale"

#: Each top-level room and what it may import from the package (besides itself, errors, files).
ALLOWED = {
    "nn": set(),
    "images": set(),
    "models": {"nn"},
    "engine": {"nn", "models"},
    # one image: spec -> plan -> decode, network, finish, write
    "pipeline": {"engine", "images"},
    "api": {"nn", "models", "engine", "images", "pipeline"},
    "batch": {"api", "engine", "images", "pipeline"},
    "tools": {"nn", "models", "engine", "images", "api", "batch", "pipeline"},
    # the optional Ray engine: the only room that imports ray; it reaches the network only
    # through the pipeline
    "raybatch": {"api", "batch", "pipeline"},
    # bridges to other tools (spandrel): may use any of the core, and nothing imports them
    "integrations": {"nn", "models", "engine", "images", "api", "batch"},
    # the CLI parses, builds a spec and reports (its upscale command reaches the engine only
    # through the API and the pipeline: test_doors_reach_the_engine_only_through_the_pipeline)
    "cli": {"nn", "models", "engine", "images", "api", "batch", "pipeline", "tools", "raybatch", "__init__"},
    "__main__": {"cli"},
    "__init__": {"api", "models"},
    "errors": set(),
    "files": set(),
}
BASE = {"errors", "files"}


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE).with_suffix("").parts
        name = ".".join(("lia_upscale", *parts))
        out[name.removesuffix(".__init__")] = path
    return out


def _imports(name: str, path: Path) -> list[tuple[str, list[str]]]:
    """(imported module, names) for every import in the file, lazy ones included."""
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.startswith("lia_upscale"):
                found.append((target, [a.name for a in node.names]))
        elif isinstance(node, ast.Import):
            found += [(a.name, []) for a in node.names if a.name.startswith("lia_upscale")]
    return found


def _room(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for name, path in modules.items():
        for target, names in _imports(name, path):
            # "from . import images" names a module; "from .x import f" names the module x
            for sub in names:
                if f"{target}.{sub}" in modules:
                    graph[name].add(f"{target}.{sub}")
            if target in modules and not all(f"{target}.{s}" in modules for s in names or ["?"]):
                graph[name].add(target)
    return graph


def test_rooms_import_only_downwards() -> None:
    wrong = []
    for module, targets in _graph().items():
        room = _room(module)
        for target in targets:
            other = _room(target)
            if other != room and other not in BASE and other not in ALLOWED[room]:
                wrong.append(f"{module} -> {target}")
    assert not wrong, "imports against the layout:\n" + "\n".join(sorted(wrong))


def test_no_import_circles() -> None:
    graph = _graph()
    # a package's __init__ importing its own submodules is how re-exports work, not a circle
    edges = {m: {t for t in ts if not t.startswith(m + ".")} for m, ts in graph.items()}
    state: dict[str, int] = {}
    cycles = []

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(edges[node]):
            if state.get(nxt) == 1:
                cycles.append(" -> ".join(stack[stack.index(nxt):] + [nxt]))
            elif nxt not in state:
                visit(nxt, [*stack, nxt])
        state[node] = 2

    for node in sorted(edges):
        if node not in state:
            visit(node, [node])
    assert not cycles, "import circles:\n" + "\n".join(cycles)


def test_core_never_imports_cli_ray_or_tooling() -> None:
    core = {"nn", "models", "engine", "images", "api", "batch", "errors", "files"}
    wrong = [f"{m} -> {t}" for m, ts in _graph().items() if _room(m) in core for t in ts
             if _room(t) in ("cli", "tools") or "ray" in _room(t)]
    assert not wrong, wrong


def test_only_raybatch_imports_ray_and_only_lazily() -> None:
    """ray (and pyarrow, which comes with its extra) is optional: imported by raybatch alone,
    inside functions, so that the package imports and runs without it."""
    wrong = [f"{name}: line {node.lineno}" for name, node, roots, top in _absolute_imports()
             if {"ray", "pyarrow"} & roots and (_room(name) != "raybatch" or top)]
    assert not wrong, wrong


def _absolute_imports():
    """(module, import node, top-level package names it imports, whether at module level)."""
    for name, path in _modules().items():
        tree = ast.parse(path.read_text())
        top_level = {id(n) for n in tree.body}
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                roots = {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and not node.level:
                roots = {(node.module or "").split(".")[0]}
            else:
                continue
            yield name, node, roots, id(node) in top_level


def test_nothing_imports_integrations_and_only_they_import_spandrel() -> None:
    """An integration registers with another tool when it is imported, so nothing of ours
    may import it; spandrel (and its torchvision) stays behind the extra."""
    wrong = [f"{m} -> {t}" for m, ts in _graph().items() if _room(m) != "integrations"
             for t in ts if _room(t) == "integrations"]
    wrong += [f"{name}: line {node.lineno}" for name, node, roots, _ in _absolute_imports()
              if {"spandrel", "torchvision"} & roots and _room(name) != "integrations"]
    assert not wrong, wrong


def test_no_private_names_across_packages() -> None:
    """A package may share its own internals between its modules; no other room uses them."""
    wrong = []
    for name, path in _modules().items():
        for target, names in _imports(name, path):
            if _room(target) != _room(name):
                wrong += [f"{name}: from {target} import {n}" for n in names
                          if n.startswith("_") and n != "__version__"]
    assert not wrong, wrong


def _names_used(path: Path) -> set[str]:
    """Every name a module uses: imported names, attributes, plain names."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.Attribute):
            found.add(node.attr)
        elif isinstance(node, ast.Name):
            found.add(node.id)
    return found


def test_only_the_pipeline_drives_the_encoder() -> None:
    """The encoder's streaming writer and its sample encoders are called by the pipeline alone
    (and by images itself, and tools that measure the encoder): no door writes on its own."""
    writers = {"write_streamed", "stream_writer", "encode_samples", "write_bytes"}
    wrong = [f"{name}: {sorted(used)}" for name, path in _modules().items()
             if _room(name) not in ("images", "pipeline") and (used := writers & _names_used(path))]
    assert not wrong, wrong


def test_doors_reach_the_engine_only_through_the_pipeline() -> None:
    """raybatch and the CLI's upscale command never import engine/: they build a spec and call the pipeline."""
    graph = _graph()
    doors = [m for m in graph if _room(m) == "raybatch" or m in ("lia_upscale.cli.upscale", "lia_upscale.cli.ray")]
    wrong = [f"{m} -> {t}" for m in doors for t in graph[m] if _room(t) == "engine"]
    assert doors and not wrong, wrong


def _functions(path: Path) -> list[tuple[str, int]]:
    tree = ast.parse(path.read_text())
    return [(node.name, node.end_lineno - node.lineno + 1) for node in ast.walk(tree)
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))]


@pytest.mark.parametrize("room", ["api", "batch", "raybatch", "pipeline"])
def test_no_long_functions_in_the_middle(room: str) -> None:
    """api, batch, raybatch and the pipeline: no function over 60 lines (docstring included)."""
    long = [f"{name}.{fn}: {n}" for name, path in _modules().items() if _room(name) == room
            for fn, n in _functions(path) if n > 60]
    assert not long, long


def test_upscaler_public_surface() -> None:
    """Upscaler keeps the methods a user calls: at most four public methods beyond properties."""
    from lia_upscale.api import Upscaler

    methods = [n for n, v in vars(Upscaler).items() if not n.startswith("_") and callable(v)]
    assert set(methods) == {"upscale", "upscale_file", "upscale_tensor"}, methods
    assert len(methods) <= 4


@pytest.mark.parametrize("limit", [450])
def test_no_module_over_limit(limit: int) -> None:
    long = {str(p.relative_to(PACKAGE)): n for p in PACKAGE.rglob("*.py")
            if (n := len(p.read_text().splitlines())) > limit}
    assert not long, long


def test_the_graph_sees_known_edges() -> None:
    """The checks above are only as good as the graph: it must see real imports."""
    graph = _graph()
    assert "lia_upscale.pipeline" in graph["lia_upscale.api"]
    assert "lia_upscale.images" in graph["lia_upscale.batch.run"]
    assert "lia_upscale.tools.train" in graph["lia_upscale.cli.train"]  # a lazy import


def test_import_lia_upscale_stays_light() -> None:
    code = ("import sys, lia_upscale, lia_upscale.images, lia_upscale.errors; "
            "print(sorted(m for m in ('torch', 'click', 'rich', 'spandrel') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
