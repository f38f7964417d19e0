"""The shape issue 20 set for the code: short functions, a short step and objective.

A function of normgan/ longer than MAX_LINES needs a comment ``# long: <why>`` on the line above
its ``def`` (or decorator); the training step stays a loop over phases (at most 35 lines and 4
branches) and the objective one short file."""

import ast
from pathlib import Path

import normgan

ROOT = Path(normgan.__file__).parent
MAX_LINES = 60


def functions(tree):
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            yield node


def first_line(node) -> int:
    return min([node.lineno] + [d.lineno for d in node.decorator_list])


def long_functions(root: Path, max_lines: int = MAX_LINES):
    out = []
    for path in sorted(root.rglob("*.py")):
        lines = path.read_text().splitlines()
        for fn in functions(ast.parse("\n".join(lines))):
            n = fn.end_lineno - fn.lineno + 1
            above = lines[first_line(fn) - 2].strip() if first_line(fn) >= 2 else ""
            if n > max_lines and not above.startswith("# long:"):
                out.append(f"{path.relative_to(root.parent)}:{fn.lineno} {fn.name} ({n} lines)")
    return out


def branches(fn) -> int:
    return sum(isinstance(n, (ast.If, ast.IfExp, ast.While, ast.Match)) for n in ast.walk(fn))


def test_no_function_is_longer_than_60_lines_without_a_reason():
    assert long_functions(ROOT) == []


def test_the_check_finds_a_long_function_and_accepts_a_reason(tmp_path):
    body = "".join(f"    x{i} = {i}\n" for i in range(70))
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "a.py").write_text(f"def f():\n{body}\n\n# long: a table\ndef g():\n{body}")
    assert long_functions(tmp_path / "pkg") == ["pkg/a.py:1 f (71 lines)"]


def test_the_step_is_a_short_loop_over_phases_and_the_objective_one_short_file():
    loop = ast.parse((ROOT / "train" / "loop.py").read_text())
    (step,) = [f for f in functions(loop) if f.name == "train_step"]
    assert step.end_lineno - step.lineno + 1 <= 35
    assert branches(step) <= 4
    assert len((ROOT / "train" / "objective.py").read_text().splitlines()) <= 200
