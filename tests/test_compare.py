"""normgan.eval.compare: seed groups, mean ± std equal to numpy's, reuse of eval JSON, the outputs and CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
from test_evaluation import TINY_RUN, needs_cli, shared_env

import normgan
from normgan.errors import UserError
from normgan.eval.compare import aggregate, compare_runs, format_table, group_runs

SHORT = [o for o in TINY_RUN if not o.startswith("train.steps")] + ["train.steps=8"]


@pytest.fixture(scope="session")
def runs(tmp_path_factory):
    """Config A with seeds 0, 1 and 2; config B (another G learning rate) with seed 0."""
    env = shared_env(tmp_path_factory)
    root = tmp_path_factory.getbasetemp() / "normgan-compare-runs"
    made = []
    for name, extra in (
        ("a-s0", ["train.seed=0"]),
        ("a-s1", ["train.seed=1"]),
        ("b-s0", ["optim.g.lr=0.0001"]),
        ("a-s2", ["train.seed=2"]),
    ):
        if not (root / name / "checkpoints" / "last.pt").exists():
            normgan.Trainer(
                normgan.load_config(overrides=SHORT + extra), runs_dir=root, name=name, progress=False
            ).fit()
        made.append(root / name)
    return env, made


def test_group_runs_by_config_except_seed(runs):
    _, (a0, a1, b0, a2) = runs
    groups = group_runs([a0, a1, b0, a2])
    assert [g["runs"] for g in groups] == [[str(a0), str(a1), str(a2)], [str(b0)]]
    assert groups[0]["seeds"] == [0, 1, 2] and groups[1]["seeds"] == [0]
    assert groups[0]["name"] == "optim.g.lr=0.0005" and groups[1]["name"] == "optim.g.lr=0.0001"
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
    from normgan.eval.evaluation import evaluate_run

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
    import normgan.eval.evaluation as ev

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
    from normgan.cli import build_parser

    env, (a0, a1, b0, _) = runs
    parser = build_parser()
    args = parser.parse_args(
        [
            "compare",
            str(a0),
            str(a1),
            str(b0),
            "--n",
            "40",
            "--metrics",
            "fid,pr",
            "--cache-dir",
            str(env["cache"]),
            "--out",
            str(tmp_path / "o"),
        ]
    )
    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert "N=40 samples per run" in out and "optim.g.lr=0.0005" in out and " ± " in out
    assert (tmp_path / "o" / "compare.md").is_file()


@needs_cli
def test_cli_compare_subprocess(runs, tmp_path):
    from conftest import run_cli

    env, (a0, a1, *_r) = runs
    p = run_cli(
        "compare", a0, a1, "--n", "40", "--metrics", "fid,pr", "--cache-dir", env["cache"], "--out", tmp_path / "o"
    )
    assert p.returncode == 0, p.stderr
    assert "FID" in p.stdout and (tmp_path / "o" / "compare.json").is_file()
    p = run_cli("compare", a0, "--n", "1")
    assert p.returncode == 2 and p.stderr.startswith("normgan: error: --n")


@pytest.fixture(scope="session")
def mixed_runs(runs, tmp_path_factory):
    """Real tiny runs next to ``runs``: one with only model-neutral keys changed (log/sample
    intervals, eval.*) and seed 3; a copy of a-s0 (a repeated seed); a run of config A and seed 0
    interrupted at step 4 (trained 4 steps, its config says 8); one with a weight-decay term."""
    import shutil

    import yaml

    env, (a0, a1, b0, a2) = runs
    root = tmp_path_factory.getbasetemp() / "normgan-compare-mixed"
    specs = (
        ("a-s3-log", ["train.seed=3", "train.log_every=4", "train.sample_every=7", "eval.n=123"]),
        ("i-s0", ["train.steps=4"]),
        ("w-s0", ["regularizers.wd={term: weights, net: G, norm: l2, weight: 1.0e-5}"]),
    )
    for name, extra in specs:
        if not (root / name / "checkpoints" / "last.pt").exists():
            normgan.Trainer(
                normgan.load_config(overrides=SHORT + extra), runs_dir=root, name=name, progress=False
            ).fit()
    interrupted = root / "i-s0" / "config.yaml"
    cfg = yaml.safe_load(interrupted.read_text())
    cfg["train"]["steps"] = 8  # as if stopped at step 4 of 8: the same config as a-s0
    interrupted.write_text(yaml.safe_dump(cfg))
    if not (root / "a-s0-copy").exists():
        shutil.copytree(a0, root / "a-s0-copy", ignore=shutil.ignore_patterns("eval"))
    return env, {
        "a0": a0,
        "a1": a1,
        "b0": b0,
        "a2": a2,
        "a3log": root / "a-s3-log",
        "a0copy": root / "a-s0-copy",
        "i0": root / "i-s0",
        "w0": root / "w-s0",
    }


def test_groups_need_distinct_seeds_and_one_step(mixed_runs):
    _, r = mixed_runs
    order = ["a0", "a1", "b0", "a3log", "a0copy", "i0", "w0", "a2"]
    groups = group_runs([r[k] for k in order])
    got = [[next(k for k in order if str(r[k]) == p) for p in g["runs"]] for g in groups]
    # model-neutral keys do not split a group; a repeated seed and another step do
    assert got == [["a0", "a1", "a3log", "a2"], ["b0"], ["a0copy"], ["i0"], ["w0"]]
    assert groups[0]["seeds"] == [0, 1, 3, 2] and [g["step"] for g in groups] == [8, 8, 8, 4, 8]
    for g in groups:
        assert len(set(g["seeds"])) == len(g["seeds"]) and all(len(name) < 80 for name in [g["name"]])
    names = [g["name"] for g in groups]
    assert names == [
        "-wd, optim.g.lr=0.0005, step=8",
        "-wd, optim.g.lr=0.0001, step=8",
        "-wd, optim.g.lr=0.0005, step=8 #2",
        "-wd, optim.g.lr=0.0005, step=4",
        "+wd, optim.g.lr=0.0005, step=8",
    ], names
    # without the odd ones out the labels are just the differing key
    assert [g["name"] for g in group_runs([r["a0"], r["b0"], r["a3log"]])] == ["optim.g.lr=0.0005", "optim.g.lr=0.0001"]


def test_group_labels_are_short():
    from normgan.eval.compare import group_labels

    base = {"optim.g.lr": 0.0002, "loss": "bce", "data.name": "mnist5k"}
    groups = [
        {"config": dict(base), "step": 500},
        {"config": {**base, "regularizers.r1.term": "grad", "regularizers.r1.weight": 10.0}, "step": 500},
        {"config": {**base, "regularizers.r1.term": "grad", "regularizers.r1.weight": 1.0}, "step": 500},
        {
            "config": {**base, "loss": "x" * 100, "regularizers.r1.term": "grad", "regularizers.r1.weight": 1.0},
            "step": 500,
        },
    ]
    assert group_labels(groups) == [
        "-r1, loss=bce",
        "+r1, loss=bce, regularizers.r1.weight=10.0",
        "+r1, loss=bce, regularizers.r1.weight=1.0",
        "+r1, loss=" + "x" * 29 + "…, regularizers.r1.weight=1.0",
    ]
    assert group_labels(groups[1:3]) == ["regularizers.r1.weight=10.0", "regularizers.r1.weight=1.0"]
    assert group_labels(groups[:2]) == ["-r1", "+r1"]
    assert group_labels(groups[:1]) == ["all"]
    assert group_labels([groups[0], {**groups[0], "step": 250}]) == ["step=500", "step=250"]


def test_compare_keeps_other_steps_and_repeated_seeds_apart(mixed_runs, tmp_path):
    env, r = mixed_runs
    table = compare_runs(
        [r["a0"], r["a1"], r["a0copy"], r["i0"]], n=40, metrics=("fid",), cache_dir=env["cache"], out=tmp_path / "o"
    )
    ga, gcopy, gi = table["groups"]
    assert ga["n_runs"] == 2 and ga["seeds"] == [0, 1] and ga["steps"] == [8, 8]
    assert gcopy["n_runs"] == 1 and gcopy["fid_std"] is None and gi["steps"] == [4] and gi["step"] == 4
    per_run = [table["runs"][str(x)]["fid"] for x in (r["a0"], r["a1"])]
    assert ga["fid_mean"] == pytest.approx(np.mean(per_run)) and ga["fid_std"] == pytest.approx(np.std(per_run, ddof=1))
    assert gcopy["fid_mean"] == pytest.approx(table["runs"][str(r["a0copy"])]["fid"])
    assert [g["group"] for g in table["groups"]] == ["step=8", "step=8 #2", "step=4"]
    text = format_table(table["groups"])
    assert "step=4" in text and "step=8 #2" in text
