"""Imports only go down the layers of the design (shared/design.md), and no modules import each other in a circle.

Read from the source with `ast`, imports inside functions included: a lazy import is still a dependency.
"""
from __future__ import annotations

import ast
from pathlib import Path

from pipeline.configs import REPO_ROOT

# Bottom to top. A module may import its own package, or a package listed before its own.
LAYERS = [
    "speedups",  # 0 mechanisms leaning on library internals, one switch: imports nothing of the project
    "models",  # 1 ground: feature contract, preprocessing, Keras model, serving runtime
    "data",  # 1 ground: span reading and writing
    "schema",  # 1 ground: the curated schema
    "pipeline",  # 2 the DAG: configs, create_pipeline, components, gates, evaluation config
    "metadata",  # 3 reading what happened: MLMD connection, runs, lineage, registry
    "serving",  # 4 operating the model: server, hot swap, request log, rollback
    "monitoring",  # 4 statistics, skew, drift and live metrics of served traffic
    "ct",  # 5 continuous training
    "conveyor",  # 6 front door: CLI, local runs, run report, viewers, Kubeflow
    "local_runner",
    "kubeflow_runner",
    "benchmarks",
]


def _modules() -> dict[str, Path]:
    found = {}
    for top in LAYERS:
        path = REPO_ROOT / top
        files = sorted(path.rglob("*.py")) if path.is_dir() else [path.with_suffix(".py")]
        for file in files:
            parts = file.relative_to(REPO_ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            found[name] = file
    return found


def _imports(name: str, file: Path, known: set[str]) -> set[str]:
    """Project modules `name` imports (a `from package import module` counts as the module)."""
    targets = set()
    for node in ast.walk(ast.parse(file.read_text(), str(file))):
        if isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                full = f"{node.module}.{alias.name}"
                targets.add(full if full in known else node.module)
    return {t for t in targets if t in known and t != name}


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(name, file, set(modules)) for name, file in modules.items()}


def test_every_project_package_is_placed_in_a_layer():
    tops = {p.name for p in REPO_ROOT.iterdir() if (p / "__init__.py").exists() and p.name != "tests"}
    assert tops <= set(LAYERS), f"packages missing from LAYERS: {sorted(tops - set(LAYERS))}"


def test_imports_only_go_down_the_layers():
    rank = {top: i for i, top in enumerate(LAYERS)}
    upward = [
        f"{name} imports {target}"
        for name, targets in _graph().items()
        for target in targets
        if rank[target.split(".")[0]] > rank[name.split(".")[0]]
    ]
    assert not upward, "imports running up the layers:\n" + "\n".join(sorted(upward))


def test_no_modules_import_each_other_in_a_circle():
    graph, state, cycles = _graph(), {}, []

    def visit(node: str, path: list[str]) -> None:
        state[node] = "open"
        for target in sorted(graph[node]):
            if state.get(target) == "open":
                cycles.append(" -> ".join(path[path.index(target):] + [target]))
            elif target not in state:
                visit(target, path + [target])
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


def test_the_checker_sees_lazy_imports_and_module_imports():
    graph = _graph()
    assert "conveyor.local.runner" in graph["conveyor.cli.run"]  # imported inside run_once
    assert "pipeline.configs" in graph["metadata.connection"]


MAX_MODULE_LINES = 450  # a module past this does more than one thing: split it by concern


def test_no_module_outside_the_tests_grows_past_its_size():
    sizes = {name: len(file.read_text().splitlines()) for name, file in _modules().items()}
    assert sizes and not {name: n for name, n in sizes.items() if n > MAX_MODULE_LINES}
