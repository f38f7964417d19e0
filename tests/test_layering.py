"""Layering: normgan's modules import only modules of their own or a lower layer, the import graph
has no cycle, nothing below training imports ``normgan.train``, and no package imports another
package's private (``_name``) names. Every ``import`` counts, including those inside functions
(they run too)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import normgan

ROOT = Path(normgan.__file__).parent

#: lowest first; a module belongs to the layer of the longest matching prefix
LAYERS = [
    [
        "normgan.errors",
        "normgan.runtime.version",
        "normgan.registry",
        "normgan.runtime.device",
        "normgan.runtime.paths",
        "normgan.runtime.resources",
        "normgan.runtime.threads",
    ],
    # normgan.models holds checkpoint I/O (models.checkpoint) too: evaluation and sampling read
    # checkpoints without importing normgan.train
    [
        "normgan.functional",
        "normgan.models",
        "normgan.data",
        "normgan.metrics.functional",
        "normgan.metrics.overfit",
        "normgan.runtime.distributed",
    ],
    ["normgan.metrics", "normgan.eval.metric_info", "normgan.tasks.info"],
    ["normgan.regularizers", "normgan.study.dirac"],
    ["normgan.config"],
    # building the networks a config describes (with their regularizers' parametrizations) is
    # shared by training, sampling and evaluation, so it sits below all three
    [
        "normgan.models.build",
        "normgan.data.batches",
        "normgan.tasks.builtin",
        "normgan.inference.sample",
        "normgan.inference.translate",
        "normgan.inference.export",
    ],
    ["normgan.eval.evaluation", "normgan.eval.paired"],
    ["normgan.eval.diagnostics", "normgan.study.overfit"],
    # the reports: below the loop (train.report makes Trainer.fit import it); report.html and
    # report.plots are the page and plot helpers the search and study pages use too
    ["normgan.report"],
    # training: the loop and its leaves (compiled, ema, logger, objective, phases, run_dir) sit above
    # evaluation; the training batches (data.batches) and ranks (runtime.distributed) that tasks use are below
    ["normgan.train.loop", "normgan.train"],
    ["normgan.search", "normgan.study"],
    ["normgan.eval.compare", "normgan.cli", "normgan.__main__", "normgan"],
]

#: what sits below training and imports no module of normgan.train
BELOW_TRAINING = [
    "normgan.eval.evaluation",
    "normgan.eval.paired",
    "normgan.inference.sample",
    "normgan.inference.translate",
    "normgan.inference.export",
    "normgan.metrics",
    "normgan.report",
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


def _from_module(node: ast.ImportFrom, package: str) -> str:
    """The absolute module of ``from … import``, a relative one resolved against ``package``."""
    if not node.level:
        return node.module or ""
    base = package.split(".")[: len(package.split(".")) - node.level + 1]
    return ".".join(base + ([node.module] if node.module else []))


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
                module = _from_module(node, package)
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
                return stack[stack.index(m) :] + [m]
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
    upward = [
        f"{a} (layer {layer_of(a)}) imports {b} (layer {layer_of(b)})"
        for a, targets in sorted(graph.items())
        for b in sorted(targets)
        if layer_of(b) > layer_of(a)
    ]
    assert not upward, "\n".join(upward)


def _under(name: str, prefixes) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def test_nothing_below_training_imports_normgan_train():
    """Evaluation, sampling, translation, metrics and reports import no module of normgan.train
    (checkpoint I/O is normgan.models.checkpoint, network building normgan.models.build); what
    they import in turn reaches only the two leaves normgan.tasks.builtin uses."""
    mods = modules()
    graph = import_graph(mods)
    below = [m for m in mods if _under(m, BELOW_TRAINING)]
    assert {"normgan.eval.evaluation", "normgan.inference.sample", "normgan.inference.translate"} <= set(below)
    direct = [f"{a} imports {b}" for a in sorted(below) for b in sorted(graph[a]) if _under(b, ["normgan.train"])]
    assert not direct, "\n".join(direct)
    for start in below:
        seen, todo = set(), [start]
        while todo:
            for m in graph.get(todo.pop(), ()):
                if m not in seen:
                    seen.add(m)
                    todo.append(m)
        reached = {m for m in seen if _under(m, ["normgan.train"])}
        assert not reached, f"{start} reaches {sorted(reached)}"


def package_of(name: str) -> str:
    """``normgan.<pkg>`` for a module of a subpackage, the module itself for a top-level module."""
    return ".".join(name.split(".")[:2])


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _dotted(node) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        base = _dotted(node.value)
        return f"{base}.{node.attr}" if base else None
    return None


def private_imports(mods) -> list[str]:
    """Each place where a module uses a private name of another package: ``from normgan.x import
    _y``, a private module (``normgan.x._y``), or ``mod._y`` on an imported normgan module."""
    found = []
    for name, path in sorted(mods.items()):
        package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
        tree = ast.parse(path.read_text())
        bound = {}  # local name -> the normgan module it names

        def check(target: str, attr: str | None, line: int, text: str) -> None:
            if package_of(target) == package_of(name):
                return
            inner = target.split(".")[2:] + ([attr] if attr else [])
            if any(_private(part) for part in inner):
                found.append(f"{name}:{line}: {text}")

        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for a in node.names:
                    if a.name.split(".")[0] == "normgan":
                        check(_resolve(a.name, mods), None, node.lineno, f"import {a.name}")
                        bound[a.asname or "normgan"] = a.name if a.asname else "normgan"
            elif isinstance(node, ast.ImportFrom):
                module = _from_module(node, package)
                if module.split(".")[0] != "normgan":
                    continue
                for a in node.names:
                    full = f"{module}.{a.name}"
                    if full in mods:
                        check(full, None, node.lineno, f"from {module} import {a.name}")
                        bound[a.asname or a.name] = full
                    else:
                        check(_resolve(module, mods), a.name, node.lineno, f"from {module} import {a.name}")
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and _private(node.attr):
                dotted = _dotted(node.value)
                if dotted and dotted.split(".")[0] in bound:
                    target = ".".join([bound[dotted.split(".")[0]], *dotted.split(".")[1:]])
                    if target in mods:
                        check(target, node.attr, node.lineno, f"{dotted}.{node.attr}")
    return found


def test_no_package_uses_another_packages_private_names():
    """A package is normgan/<pkg>/ (a top-level module is a package of its own): what another
    package needs of it has a public name."""
    found = private_imports(modules())
    assert not found, "\n".join(found)


def test_the_private_name_checker_finds_each_form(tmp_path):
    """The checker itself: a private name imported, a private module, ``mod._x`` across packages
    (at module level and inside a function) are found; the same inside one package is not."""
    pkg = tmp_path / "normgan"
    for sub in ("search", "report"):
        (pkg / sub).mkdir(parents=True)
        (pkg / sub / "__init__.py").write_text("")
    (pkg / "__init__.py").write_text("")
    (pkg / "diagnostics.py").write_text("def _num(v):\n    return v\n")
    (pkg / "search" / "outputs.py").write_text("def _e(v):\n    return v\n")
    (pkg / "search" / "_hidden.py").write_text("X = 1\n")
    (pkg / "search" / "runner.py").write_text("from normgan.search.outputs import _e\nfrom . import _hidden\n")
    (pkg / "report" / "run.py").write_text(
        "from normgan.search.outputs import _e\n"
        "from normgan import diagnostics as dg\n"
        "import normgan.search.outputs\n"
        "def f():\n"
        "    from normgan.search._hidden import X\n"
        "    return dg._num(1), normgan.search.outputs._e(2), dg.public\n"
    )
    mods = {}
    for p in pkg.rglob("*.py"):
        parts = list(p.relative_to(tmp_path).with_suffix("").parts)
        mods[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = p
    found = {f.split(": ", 1)[1] for f in private_imports(mods)}
    assert found == {
        "from normgan.search.outputs import _e",
        "from normgan.search._hidden import X",
        "dg._num",
        "normgan.search.outputs._e",
    }, found


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
