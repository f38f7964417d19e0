"""Runs written before the step was reshaped (tests/fixtures/legacy, made by make.py at commit
9460833) against today's code: the same config trains to the same metrics rows, and the old
checkpoint loads, resumes and continues to the rows the old code wrote when it resumed it.

The comparison is exact where the fixture was made with this torch build on a CPU of the same
kernel family (torch picks its vectorised kernels by CPU capability, so another family sums in
another order); elsewhere it allows float32 rounding (relative 1e-4)."""

import json
import shutil
from pathlib import Path

import pytest
import torch

import normgan
from normgan import Trainer, load_config

FIXTURES = Path(__file__).parent / "fixtures" / "legacy"
CASES = sorted(p.name for p in FIXTURES.iterdir() if (p / "case.json").is_file())
TIMING = {"images_per_s"}  # wall-clock figures differ between any two runs


def rows(path):
    return [{k: v for k, v in json.loads(line).items() if k not in TIMING} for line in path.read_text().splitlines()]


def assert_same_rows(got, want, *, exact):
    assert [r["step"] for r in got] == [r["step"] for r in want]
    for g, w in zip(got, want):
        assert sorted(g) == sorted(w), f"step {w['step']}: logged keys differ"
        for k, v in w.items():
            if exact:
                assert g[k] == v, f"step {w['step']}: {k} = {g[k]!r}, the legacy run logged {v!r}"
            else:
                assert g[k] == pytest.approx(v, rel=1e-4, abs=1e-6), f"step {w['step']}: {k}"


def case(name):
    spec = json.loads((FIXTURES / name / "case.json").read_text())
    exact = spec["torch"] == torch.__version__ and spec["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    config = None if spec["config"] is None else str(Path(normgan.__file__).parent / spec["config"])
    return spec, config, exact


@pytest.mark.parametrize("name", CASES)
def test_same_seed_same_rows_as_before(tmp_path, name):
    spec, config, exact = case(name)
    run = Trainer(load_config(config, overrides=spec["overrides"]), runs_dir=tmp_path, name="r", progress=False).fit()
    assert_same_rows(rows(run / "metrics.jsonl"), rows(FIXTURES / name / "fresh.jsonl"), exact=exact)


@pytest.mark.parametrize("name", CASES)
def test_legacy_checkpoint_resumes_as_before(tmp_path, name):
    _, _, exact = case(name)
    run = tmp_path / name
    shutil.copytree(FIXTURES / name, run, ignore=shutil.ignore_patterns("*.json", "fresh.jsonl", "resumed.jsonl"))
    trainer = Trainer.resume(run, overrides=["train.steps=6"], progress=False)
    assert trainer.step == 3
    trainer.fit()
    assert_same_rows(rows(run / "metrics.jsonl"), rows(FIXTURES / name / "resumed.jsonl"), exact=exact)
