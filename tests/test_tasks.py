"""The Task protocol (normgan.tasks.builtin.Task): every registered task implements it, and what differs
between the tasks stays in the tasks (at most a handful of task branches elsewhere in normgan/)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
import torch
from conftest import TINY

import normgan
from normgan.config import load_config
from normgan.eval.evaluation import TaskEvaluation
from normgan.eval.paired import task_evaluation
from normgan.tasks.builtin import TASKS, Batch, Task
from normgan.tasks.info import TASK_INFO, TaskInfo, auto_task, task_names

CPU = torch.device("cpu")
ROOT = Path(normgan.__file__).parent

#: a tiny config of each task (edges2digit at 32 px: small U-Net and PatchGAN)
CONFIGS = {
    "unconditional": TINY + ["train.tensorboard=false"],
    "paired": [
        "data.name=edges2digit",
        "data.resolution=32",
        "data.batch_size=4",
        "model.generator.name=unet",
        "model.generator.width=4",
        "model.discriminator.name=patchgan",
        "model.discriminator.width=4",
        "model.discriminator.norm=instance",
        "+model.discriminator.options.layers=2",
        "train.num_samples=4",
        "train.tensorboard=false",
        "regularizers={}",
    ],
    "conditional": TINY
    + ["train.tensorboard=false", "model.generator.conditioning=cbn", "model.discriminator.conditioning=projection"],
}


def defined_in(cls, attr: str) -> type:
    """The class of ``cls``'s MRO that defines ``attr``."""
    return next(k for k in cls.__mro__ if attr in vars(k))


def test_every_registered_task_has_a_tiny_config_here():
    assert set(TASKS.names()) == set(TASK_INFO.names()) == set(CONFIGS) == set(task_names())


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_the_task_declares_its_contract(name):
    """The class side: declarations consistent with each other, no data loaded."""
    cls = TASKS.get(name)
    assert issubclass(cls, Task) and issubclass(cls, TASK_INFO.get(name)) and issubclass(cls, TaskInfo)
    assert cls.name == name and cls.run_kind and cls.grid_caption and cls.study_columns
    for method in (
        "__init__",
        "next_batch",
        "fresh_input",
        "critic",
        "sample_grid",
        "checkpoint_entries",
        "train_size",
        "fits_dataset",
        "dataset_error",
        "check_eval_args",
        "check_best_metric",
        "format_result",
        "generator_inputs",
    ):
        assert defined_in(cls, method) not in (Task, TaskInfo), f"{name} does not implement {method}"
    metrics, best = cls.eval_defaults
    assert cls.check_eval_args(metrics=list(metrics)) == tuple(metrics)
    assert cls.check_best_metric(best_metric=best, metrics=list(metrics)) == best
    assert best in cls.scores and cls.metric_group(best) in (*metrics, None)
    assert set(cls.study_columns) <= set(cls.scores)
    # its evaluation (registered under the same name, one layer up)
    ev = task_evaluation(name)
    assert issubclass(ev, TaskEvaluation)
    for method in ("periodic", "score_run", "test"):
        assert defined_in(ev, method) is not TaskEvaluation, f"{name}'s evaluation does not implement {method}"


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_the_task_resolves_its_config_and_eval_defaults(name):
    cfg = load_config(overrides=CONFIGS[name])
    cls = TASKS.get(name)
    assert cfg.task == name == auto_task(cfg.data.name, conditioned=cls.conditioned)
    assert cfg.eval.metrics == list(cls.eval_defaults[0]) and cfg.eval.best_metric == cls.eval_defaults[1]
    assert cls.fits_dataset(cfg.data.name)
    # tasks that differ in conditioning are told apart by model.*.conditioning, not by the dataset
    others = [n for n in task_names() if n != name and TASK_INFO.get(n).conditioned == cls.conditioned]
    for other in others:  # the same dataset under another task: one-line error from that task
        assert not TASK_INFO.get(other).fits_dataset(cfg.data.name)
        assert str(TASK_INFO.get(other).dataset_error(cfg.data.name)).count("\n") == 0


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_a_built_task_gives_batches_grids_and_state(name):
    cfg = load_config(overrides=CONFIGS[name])
    cls = TASKS.get(name)
    task = cls(cfg, device=CPU)
    try:
        b = task.next_batch()
        assert isinstance(b, Batch)
        n, r = cfg.data.batch_size, cfg.data.resolution
        assert b.real.shape == (n, task.channels, r, r) and b.real.dtype == torch.float32
        assert b.g_in.shape[0] == n and task.fresh_input(b).shape == b.g_in.shape
        assert task.in_channels is None or b.g_in.shape[1] == task.in_channels
        assert (task.in_channels is not None) == TASK_INFO.get(name).image_input
        from normgan.models.build import build_networks

        G, D, _, _ = build_networks(
            cfg, resolution=r, channels=task.channels, in_channels=task.in_channels, classes=task.classes
        )
        fake = G(*b.g_args)
        assert fake.shape == b.real.shape
        assert task.critic(D, b)(fake).shape[0] == n and task.critic(D, b, fake=True)(fake).shape[0] == n
        assert (b.g_labels is None) == (b.labels is None) == (task.classes is None) == (not cls.conditioned)
        grid = task.sample_grid(G.eval())
        assert grid.dim() == 3 and 0.0 <= float(grid.min()) and float(grid.max()) <= 1.0
        entries = task.checkpoint_entries()
        assert entries["image_shape"] == [task.channels, r, r] and entries.get("classes") == task.classes
        assert TASK_INFO.get(name).checkpoint_in_channels(entries, path="x.pt") == task.in_channels
        state = task.state_dict()
        task.load_state_dict(state)
        assert TASKS.get(name).train_size(cfg) >= n
    finally:
        task.close()
    task.close()  # closing twice is harmless


# ------------------------------------------------------------------------ no task branches elsewhere
#: what a task branch mentions: the task names, cfg.paired / is_paired(), the paired evaluator
TASK_WORDS = re.compile(
    r"\bpaired\b|\bunconditional\b|\bis_paired\b|in_channels is None"
    r"|\bPairedEvaluator\b|\bevaluate_paired_run\b"
)
#: at most this many task branches outside normgan/tasks/builtin.py and normgan/tasks/info.py
MAX_BRANCHES = 5


def task_branches(root: Path = ROOT) -> list[str]:
    """The task branch points of ``root``'s modules, as ``path:line: test``: every conditional (``if``,
    ``elif``, ``x if c else y``, ``while``, ``assert``, a comprehension's ``if``, ``match``) whose test
    expression's source matches :data:`TASK_WORDS`, and every dict literal with an ``"unconditional"``
    key (a dispatch table over the tasks). The tasks' own modules are left out."""
    out = []
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root.parent).as_posix()
        if rel in ("normgan/tasks/builtin.py", "normgan/tasks/info.py"):
            continue
        src = path.read_text()
        for node in ast.walk(ast.parse(src)):
            if isinstance(node, (ast.If, ast.IfExp, ast.While, ast.Assert)):
                tests = [node.test]
            elif isinstance(node, ast.comprehension):
                tests = list(node.ifs)
            elif isinstance(node, ast.Match):
                tests = [node.subject]
            elif isinstance(node, ast.Dict):
                keys = [k for k in node.keys if isinstance(k, ast.Constant) and k.value == "unconditional"]
                out += [f"{rel}:{k.lineno}: dispatch on the task" for k in keys]
                continue
            else:
                continue
            for t in tests:
                seg = ast.get_source_segment(src, t) or ""
                if TASK_WORDS.search(seg):
                    out.append(f"{rel}:{t.lineno}: {seg}")
    return sorted(out, key=lambda w: (w.split(":")[0], int(w.split(":")[1])))


def test_task_branches_stay_in_the_tasks():
    """Before issue 20 this found 35 (config 9, search/runner 6, metric_info 4, report/run 3, …); each one
    left must say in a comment why it cannot live in the task."""
    found = task_branches()
    assert len(found) <= MAX_BRANCHES, "task branches outside normgan/tasks/builtin.py:\n" + "\n".join(found)
    for where in found:
        rel, line = where.split(":")[:2]
        lines = (ROOT.parent / rel).read_text().splitlines()
        context = "\n".join(lines[max(0, int(line) - 4) : int(line)])
        assert "tests/test_tasks.py" in context, f"{where}: say in a comment why it cannot live in the task"


def test_the_scan_finds_the_kinds_of_branch_it_counts(tmp_path):
    pkg = tmp_path / "normgan"
    pkg.mkdir()
    (pkg / "a.py").write_text(
        "def f(cfg, g):\n    if cfg.paired:\n        pass\n    x = 1 if g.task == 'paired' else 2\n"
        "    y = {'unconditional': 1, 'paired': 2}[cfg.task]\n    z = 'paired_folders' if cfg else 0\n"
    )
    (pkg / "tasks").mkdir()
    (pkg / "tasks" / "builtin.py").write_text("def f(cfg):\n    if cfg.paired:\n        pass\n")
    assert [w.split(":")[1] for w in task_branches(pkg)] == ["2", "4", "5"]
