"""normgan.compare: seed groups, mean ± std equal to numpy's, reuse of eval JSON, the outputs and CLI."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pytest

import normgan
from normgan.compare import aggregate, compare_runs, format_table, group_runs
from normgan.errors import UserError

from test_evaluation import TINY_RUN, needs_cli, shared_env

SHORT = [o for o in TINY_RUN if not o.startswith("train.steps")] + ["train.steps=8"]


@pytest.fixture(scope="session")
def runs(tmp_path_factory):
    """Config A with seeds 0, 1 and 2; config B (another G learning rate) with seed 0."""
    env = shared_env(tmp_path_factory)
    root = tmp_path_factory.getbasetemp() / "normgan-compare-runs"
    made = []
    for name, extra in (("a-s0", ["train.seed=0"]), ("a-s1", ["train.seed=1"]), ("b-s0", ["optim.g.lr=0.0001"]),
                        ("a-s2", ["train.seed=2"])):
        if not (root / name / "checkpoints" / "last.pt").exists():
            normgan.Trainer(normgan.load_config(overrides=SHORT + extra), runs_dir=root, name=name, progress=False).fit()
        made.append(root / name)
    return env, made


def test_group_runs_by_config_except_seed(runs):
    _, (a0, a1, b0, a2) = runs
    groups = group_runs([a0, a1, b0, a2])
    assert [g["runs"] for g in groups] == [[str(a0), str(a1), str(a2)], [str(b0)]]
    assert groups[0]["seeds"] == [0, 1, 2] and groups[1]["seeds"] == [0]
    assert groups[0]["name"] == "optim.g.lr=0.0002" and groups[1]["name"] == "optim.g.lr=0.0001"
    assert group_runs([a0, a1])[0]["name"] == "all"


def test_aggregate_matches_numpy():
    vals = [3.0, 5.0, 10.0]
    assert aggregate(vals) == (pytest.approx(np.mean(vals)), pytest.approx(np.std(vals, ddof=1)))
    assert aggregate([4.0]) == (4.0, None)
    assert aggregate([None, float("nan")]) == (None, None)


def test_compare_runs_table_and_files(runs, tmp_path, monkeypatch):
    env, (a0, a1, b0, a2) = runs
    out = tmp_path / "cmp"
    # a0 evaluated beforehand: compare must reuse its JSON (same step, features, n)
    from normgan.evaluation import evaluate_run

    pre = evaluate_run(a0, n=40, metrics=("fid", "pr"), cache_dir=env["cache"])
    table = compare_runs([a0, a1, b0, a2], n=40, metrics=("fid", "pr"), cache_dir=env["cache"], out=out)
    assert table["runs"][str(a0)].get("reused") and table["runs"][str(a0)]["fid"] == pre["fid"]
    assert not table["runs"][str(a1)].get("reused")
    assert all(r["n"] == 40 and r["step"] == 8 for r in table["runs"].values())  # the same N for every run
    ga, gb = table["groups"]
    assert ga["n_runs"] == 3 and gb["n_runs"] == 1
    per_run = [table["runs"][str(r)]["fid"] for r in (a0, a1, a2)]
    assert ga["values"]["fid"] == per_run
    assert ga["fid_mean"] == pytest.approx(np.mean(per_run)) and ga["fid_std"] == pytest.approx(np.std(per_run, ddof=1))
    prec = [table["runs"][str(r)]["precision"] for r in (a0, a1, a2)]
    assert ga["precision_std"] == pytest.approx(np.std(prec, ddof=1))
    assert gb["fid_mean"] == table["runs"][str(b0)]["fid"] and gb["fid_std"] is None
    assert "kid_mean" not in ga  # not asked for

    saved = json.loads((out / "compare.json").read_text())
    assert saved["n"] == 40 and saved["groups"][0]["fid_mean"] == pytest.approx(ga["fid_mean"])
    md = (out / "compare.md").read_text()
    assert "| group | runs | step | FID |" in md and "N=40" in md and "(seed 1)" in md

    text = format_table(table["groups"])
    lines = text.splitlines()
    assert lines[0].split()[:4] == ["group", "runs", "step", "FID"] and set(lines[1]) <= {"-", " "}
    assert f"{ga['fid_mean']:.4g} ± {ga['fid_std']:.2g}" in lines[2]
    assert len({len(line) for line in lines[:2]}) == 1  # header and rule aligned

    # a second compare reuses every result: no generator is evaluated again
    import normgan.evaluation as ev

    monkeypatch.setattr(ev, "evaluate_generator", lambda *a, **k: pytest.fail("recomputed"))
    again = compare_runs([a0, a1, b0, a2], n=40, metrics=("fid", "pr"), cache_dir=env["cache"])
    assert again["groups"][0]["fid_mean"] == pytest.approx(ga["fid_mean"])


def test_compare_errors(runs, tmp_path):
    _, (a0, *_rest) = runs
    with pytest.raises(UserError, match="does not exist") as info:
        compare_runs([a0, tmp_path / "nope"], n=10)
    assert "\n" not in str(info.value)
    with pytest.raises(UserError, match="--n"):
        compare_runs([a0], n=1)
    with pytest.raises(UserError, match="unknown feature"):
        compare_runs([a0], n=10, features="bogus")


def test_cmd_compare_in_process(runs, tmp_path, capsys):
    from normgan.cli_eval import add_eval_parsers

    env, (a0, a1, b0, _) = runs
    parser = argparse.ArgumentParser(prog="normgan")
    add_eval_parsers(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["compare", str(a0), str(a1), str(b0), "--n", "40", "--metrics", "fid,pr",
                              "--cache-dir", str(env["cache"]), "--out", str(tmp_path / "o")])
    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert "N=40 samples per run" in out and "optim.g.lr=0.0002" in out and " ± " in out
    assert (tmp_path / "o" / "compare.md").is_file()


@needs_cli
def test_cli_compare_subprocess(runs, tmp_path):
    from conftest import run_cli

    env, (a0, a1, *_r) = runs
    p = run_cli("compare", a0, a1, "--n", "40", "--metrics", "fid,pr", "--cache-dir", env["cache"], "--out", tmp_path / "o")
    assert p.returncode == 0, p.stderr
    assert "FID" in p.stdout and (tmp_path / "o" / "compare.json").is_file()
    p = run_cli("compare", a0, "--n", "1")
    assert p.returncode == 2 and p.stderr.startswith("normgan: error: --n")
