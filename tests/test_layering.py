"""Layering: normgan's modules import only modules of their own or a lower layer, and the import
graph has no cycle. Every ``import`` counts, including those inside functions (they run too)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import normgan

ROOT = Path(normgan.__file__).parent

#: lowest first; a module belongs to the layer of the longest matching prefix
LAYERS = [
    ["normgan.errors", "normgan._version", "normgan.registry", "normgan.device", "normgan.paths", "normgan.resources",
     "normgan.threads"],
    ["normgan.functional", "normgan.models", "normgan.data", "normgan.metrics.functional", "normgan.metrics.overfit",
     "normgan.train.ema", "normgan.train.logger", "normgan.train.checkpoint", "normgan.train.run_dir",
     "normgan.train.distributed"],
    ["normgan.metrics", "normgan.metric_info", "normgan.task_info"],
    ["normgan.regularizers", "normgan.dirac"],
    ["normgan.config"],
    ["normgan.train.build", "normgan.train.compiled", "normgan.train.batches", "normgan.tasks", "normgan.sample", "normgan.translate"],
    ["normgan.evaluation", "normgan.evaluation_paired"],
    ["normgan.diagnostics", "normgan.study.overfit"],
    # the run report: below the loop (train.report makes Trainer.fit import it); it reuses the page
    # helpers of normgan.search.outputs, which imports nothing of normgan, so that module sits here too
    ["normgan.report", "normgan.search.outputs"],
    ["normgan.train.loop", "normgan.train"],
    ["normgan.search", "normgan.study"],
    ["normgan.compare", "normgan.cli_eval", "normgan.cli_search", "normgan.cli_report", "normgan.cli_study", "normgan.cli", "normgan.__main__",
     "normgan"],
]


def modules() -> dict[str, Path]:
    out = {}
    for p in ROOT.rglob("*.py"):
        parts = list(p.relative_to(ROOT.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = p
    return out


def _resolve(name: str, mods) -> str:
    while name and name not in mods:
        name = name.rsplit(".", 1)[0] if "." in name else ""
    return name


def import_graph(mods) -> dict[str, set[str]]:
    """module -> the normgan modules it imports anywhere in its source (``from pkg import mod`` → pkg.mod)."""
    graph = {}
    for name, path in mods.items():
        package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
        targets = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets |= {_resolve(a.name, mods) for a in node.names if a.name.split(".")[0] == "normgan"}
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")[: len(package.split(".")) - node.level + 1]
                    module = ".".join(base + ([node.module] if node.module else []))
                else:
                    module = node.module or ""
                if module.split(".")[0] != "normgan":
                    continue
                for a in node.names:
                    full = f"{module}.{a.name}"
                    targets.add(full if full in mods else _resolve(module, mods))
        targets.discard(name)
        targets.discard("")
        graph[name] = targets
    return graph


def layer_of(name: str) -> int:
    best, layer = -1, None
    for i, prefixes in enumerate(LAYERS):
        for prefix in prefixes:
            if (name == prefix or name.startswith(prefix + ".")) and len(prefix) > best:
                best, layer = len(prefix), i
    assert layer is not None, f"{name} is in no layer: add it to LAYERS"
    return layer


def find_cycle(graph) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(n):
        state[n] = 1
        stack.append(n)
        for m in sorted(graph.get(n, ())):
            if state.get(m) == 1:
                return stack[stack.index(m):] + [m]
            if m not in state:
                found = visit(m)
                if found:
                    return found
        stack.pop()
        state[n] = 2
        return None

    for n in sorted(graph):
        if n not in state:
            found = visit(n)
            if found:
                return found
    return None


def test_no_module_imports_a_higher_layer():
    mods = modules()
    graph = import_graph(mods)
    upward = [f"{a} (layer {layer_of(a)}) imports {b} (layer {layer_of(b)})"
              for a, targets in sorted(graph.items()) for b in sorted(targets) if layer_of(b) > layer_of(a)]
    assert not upward, "\n".join(upward)


def test_the_import_graph_has_no_cycle():
    cycle = find_cycle(import_graph(modules()))
    assert cycle is None, " -> ".join(cycle)


def test_the_checker_sees_function_level_and_relative_imports(tmp_path):
    """The checker itself: an upward import inside a function and a relative import are both found."""
    pkg = tmp_path / "normgan"
    (pkg / "train").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "config.py").write_text("def f():\n    from normgan.train import loop\n")
    (pkg / "train" / "__init__.py").write_text("")
    (pkg / "train" / "loop.py").write_text("from .. import config\n")
    mods = {}
    for p in pkg.rglob("*.py"):
        parts = list(p.relative_to(tmp_path).with_suffix("").parts)
        mods[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = p
    graph = import_graph(mods)
    assert graph["normgan.config"] == {"normgan.train.loop"}
    assert graph["normgan.train.loop"] == {"normgan.config"}
    assert layer_of("normgan.train.loop") > layer_of("normgan.config")
    assert find_cycle(graph) is not None


def test_the_command_line_imports_no_torch_before_it_runs():
    """``import normgan.cli`` is light, so Ctrl-C while torch loads is handled by ``main``."""
    code = "import sys, normgan.cli; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == "False", out.stderr
