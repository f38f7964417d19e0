"""The search machinery on a stub trainer (tests/search_stub.py: a closed-form score, no training)
and real Optuna storages: SPEC forms, samplers, pruning, fold aggregation, resumption, workers."""

import csv
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

import optuna
import pytest

TESTS = Path(__file__).resolve().parent
sys.path.insert(0, str(TESTS))

import search_stub  # noqa: E402

from normgan.config import load_config  # noqa: E402
from normgan.errors import UserError  # noqa: E402
from normgan.search import TERM_PRESETS, parse_param, run_search  # noqa: E402
from normgan.search.space import ABSENT, apply_values, grid_points  # noqa: E402

STUB = "search_stub:train"
BASE = ["train.steps=4", "eval.every=2", "eval.metrics=[psnr,l1]"]
LAMBDAS = [0, 1, 10, 100, 1000, 100000]


def _search(tmp_path, params, **kw):
    kw.setdefault("folds", 3)
    kw.setdefault("metric", "psnr")
    kw.setdefault("name", "s")
    return run_search(
        config="edges2digit",
        overrides=kw.pop("overrides", BASE),
        params=params,
        searches_dir=tmp_path,
        trainer=STUB,
        progress=False,
        heartbeat=kw.pop("heartbeat", 5),
        **kw,
    )


def _csv(folder):
    with open(Path(folder) / "trials.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def _stub_folds(lam, folds, seeds=1):
    """The stub's per-fold scores, computed here from its formula (not from the search)."""
    return [
        statistics.fmean(search_stub.score(lam, fold=f, seed=s, step=4, steps=4) for s in range(seeds))
        for f in range(folds)
    ]


# ------------------------------------------------------------------------------------------- SPECs
@pytest.mark.parametrize(
    "text, kind, values, lo, hi",
    [
        ("a.b=[0,1,10,1e5]", "grid", (0, 1, 10, 1e5), 0, 0),
        ("a.b=[0.5, 2]", "grid", (0.5, 2), 0, 0),
        ("a.b=[bce,hinge]", "grid", ("bce", "hinge"), 0, 0),
        ("a.b=log:1e-3:1e3", "log", (), 1e-3, 1e3),
        ("a.b=uniform:-1:2.5", "uniform", (), -1, 2.5),
        ("a.b=int:1:8", "int", (), 1, 8),
        (
            "regularizers.r1=choice:none,r1,{term: grad, net: D, at: real, weight: 5}",
            "choice",
            ("none", "r1", "{term: grad, net: D, at: real, weight: 5}"),
            0,
            0,
        ),
    ],
)
def test_spec_forms(text, kind, values, lo, hi):
    p = parse_param(text)
    assert p.kind == kind and p.key == text.split("=")[0]
    assert p.values == values
    assert (p.lo, p.hi) == (lo, hi)
    assert p.log == (kind == "log")


def test_choice_values_decode_to_presets_specs_and_absence():
    p = parse_param("regularizers.r1=choice:none,r1,{term: grad, net: D, at: real, weight: 5}")
    assert p.decode("none") == ABSENT
    assert p.decode("r1") == TERM_PRESETS["r1"] and p.decode("r1") is not TERM_PRESETS["r1"]
    assert p.decode("{term: grad, net: D, at: real, weight: 5}") == {
        "term": "grad",
        "net": "D",
        "at": "real",
        "weight": 5,
    }
    base = {"regularizers": {"r1": {"term": "grad"}, "x": {}}}
    assert apply_values(base, {"regularizers.r1": ABSENT}) == {"regularizers": {"x": {}}}
    assert base["regularizers"]["r1"] == {"term": "grad"}  # a copy was changed


def test_none_is_a_plain_word_outside_term_entries():
    """``none`` removes only a regularizers./constraints. entry; a norm of "none" stays the word."""
    p = parse_param("model.discriminator.norm=choice:batch,none")
    assert p.decode("none") == "none"
    base = {"model": {"discriminator": {"norm": "batch"}}, "regularizers": {"r1": {}}}
    assert apply_values(base, {"model.discriminator.norm": "none"})["model"]["discriminator"]["norm"] == "none"
    assert apply_values(base, {"regularizers.r1.weight": "none"})["regularizers"]["r1"] == {"weight": "none"}


@pytest.mark.parametrize(
    "text, words",
    [
        ("a.b", "KEY=SPEC"),
        ("=[1]", "no valid KEY"),
        ("a..b=[1]", "no valid KEY"),
        ("a.b=", "empty SPEC"),
        ("a.b=[1,2", "closing"),
        ("a.b=[1,,2]", "empty value"),
        ("a.b=[1,1]", "repeats"),
        ("a.b=log:0:10", "lo > 0"),
        ("a.b=log:10:1", "lo < hi"),
        ("a.b=uniform:x:1", "not a number"),
        ("a.b=int:1.5:3", "integer"),
        ("a.b=int:1", "int:lo:hi"),
        ("a.b=gauss:0:1", "unknown SPEC"),
        ("a.b=choice:", "empty option"),
        ("a.b=choice:a,a", "repeats"),
        ("a.b=log:1:inf", "finite"),
        ("a.b=choice:{x: [1}", "valid YAML"),
    ],
)
def test_malformed_specs_are_one_line_errors(text, words):
    with pytest.raises(UserError) as e:
        parse_param(text)
    assert words in str(e.value) and "\n" not in str(e.value)


def test_grid_points_product_and_limit():
    params = [parse_param("a=[1,2,3]"), parse_param("b=choice:x,y")]
    pts = grid_points(params)
    assert len(pts) == 6 and {(p["a"], p["b"]) for p in pts} == {(a, b) for a in (1, 2, 3) for b in ("x", "y")}
    sub = grid_points(params, limit=4, seed=1)
    assert len(sub) == 4 and len({json.dumps(p, sort_keys=True) for p in sub}) == 4
    with pytest.raises(UserError, match="grid needs"):
        grid_points([parse_param("a=log:1:2")])


@pytest.mark.parametrize("preset", sorted(TERM_PRESETS))
def test_every_preset_is_a_valid_term_or_constraint(preset):
    """Each named preset loads into a config of the kind it is for (its own validation, models built)."""
    spec = TERM_PRESETS[preset]
    section = "constraints" if "kind" in spec else "regularizers"
    paired = spec.get("term") == "recon"
    base = load_config("edges2digit" if paired else None, overrides=["model.discriminator.norm=none"])
    from normgan.config import to_dict

    cfg = load_config(
        base=apply_values(
            to_dict(base), {f"{section}.{preset}": parse_param(f"{section}.{preset}=choice:{preset}").decode(preset)}
        )
    )
    assert getattr(cfg, section)[preset] == spec


# ------------------------------------------------------------------------------------------- searches
def test_grid_search_folds_mean_std_best_and_csv(tmp_path):
    """A log grid with 0 and a huge λ, 3 folds: every trial's fold scores, mean and std equal the
    stub's formula; the best is λ = 100 (the formula's optimum); the final figure is the test one."""
    out = _search(tmp_path, [f"regularizers.l1.weight=[{','.join(map(str, LAMBDAS))}]"])
    rows = {r["params"]["regularizers.l1.weight"]: r for r in out["rows"]}
    assert sorted(rows) == sorted(LAMBDAS) and all(r["state"] == "COMPLETE" for r in rows.values())
    for lam, r in rows.items():
        want = _stub_folds(lam, 3)
        assert r["folds"] == pytest.approx(want, rel=1e-12, abs=1e-12)
        assert r["mean"] == pytest.approx(statistics.fmean(want), rel=1e-12)
        assert r["std"] == pytest.approx(statistics.pstdev(want), rel=1e-9, abs=1e-12)
    assert out["best"]["params"]["regularizers.l1.weight"] == 100
    assert out["final"]["value"] == pytest.approx(
        search_stub.score(100.0, fold=0, seed=0, step=1, steps=1) + 100, rel=1e-12
    )
    table = {float(r["regularizers.l1.weight"]): r for r in _csv(out["folder"])}
    for lam in LAMBDAS:
        assert float(table[lam]["mean"]) == pytest.approx(statistics.fmean(_stub_folds(lam, 3)), rel=1e-9)
        assert [float(table[lam][f"fold_{f}"]) for f in range(3)] == pytest.approx(_stub_folds(lam, 3), rel=1e-9)
    for f in ("best.yaml", "report.html", "plots/history.png"):
        assert (out["folder"] / f).is_file(), f


def test_each_fold_trains_on_its_own_fold_and_seeds_average(tmp_path):
    log = tmp_path / "calls.jsonl"
    os.environ["STUB_LOG"] = str(log)
    try:
        out = _search(tmp_path, ["regularizers.l1.weight=[10]"], seeds=2, folds=4)
    finally:
        del os.environ["STUB_LOG"]
    calls = [json.loads(line) for line in log.read_text().splitlines()]
    trial_calls = [c for c in calls if "/trials/" in c["run_dir"]]
    assert sorted((c["fold"], c["seed"]) for c in trial_calls) == [(f, s) for f in range(4) for s in range(2)]
    assert all(c["folds"] == 4 for c in trial_calls)
    final_calls = [c for c in calls if "/final/" in c["run_dir"]]
    assert len(final_calls) == 1 and final_calls[0]["folds"] == 0  # retrained on the whole training split
    assert out["rows"][0]["folds"] == pytest.approx(_stub_folds(10.0, 4, seeds=2), rel=1e-12)


def test_best_yaml_round_trips_through_train_dry_run(tmp_path):
    out = _search(tmp_path, ["regularizers.l1.weight=[1,100]", "optim.g.lr=[1e-4,2e-4]"], folds=2)
    best = out["folder"] / "best.yaml"
    r = subprocess.run(
        [sys.executable, "-m", "normgan", "train", str(best), "--dry-run"], capture_output=True, text=True, timeout=120
    )
    assert r.returncode == 0, r.stderr
    import yaml

    cfg = yaml.safe_load(r.stdout)
    assert cfg["regularizers"]["l1"]["weight"] == 100
    assert cfg["optim"]["g"]["lr"] == pytest.approx(out["best"]["params"]["optim.g.lr"])
    assert cfg["data"]["folds"] == 0 and cfg["data"]["name"] == "edges2digit" and cfg["train"]["steps"] == 4


@pytest.mark.parametrize("sampler", ["random", "tpe"])
def test_samplers_draw_inside_the_ranges(tmp_path, sampler):
    out = _search(
        tmp_path,
        ["regularizers.l1.weight=log:1e-2:1e4", "optim.g.lr=uniform:1e-4:3e-4", "optim.d_steps=int:1:3"],
        sampler=sampler,
        trials=7,
        folds=2,
    )
    rows = out["rows"]
    assert len(rows) == 7 and all(r["state"] == "COMPLETE" for r in rows)
    for r in rows:
        p = r["params"]
        assert 1e-2 <= p["regularizers.l1.weight"] <= 1e4 and 1e-4 <= p["optim.g.lr"] <= 3e-4
        assert p["optim.d_steps"] in (1, 2, 3) and isinstance(p["optim.d_steps"], int)
        assert r["mean"] == pytest.approx(statistics.fmean(_stub_folds(p["regularizers.l1.weight"], 2)), rel=1e-9)
    assert len({r["params"]["regularizers.l1.weight"] for r in rows}) == 7
    assert (out["folder"] / "plots" / "importance.png").is_file()


@pytest.mark.parametrize("pruner", ["median", "halving"])
def test_pruners_stop_poor_trials_and_say_so(tmp_path, pruner):
    # good λ first (they set the bar), then poor ones: the pruner stops those at an early evaluation
    out = _search(
        tmp_path,
        ["regularizers.l1.weight=[100,50,200,0,1e5,1e6]"],
        pruner=pruner,
        folds=3,
        overrides=["train.steps=8", "eval.every=1", "eval.metrics=[psnr]"],
        sampler="grid",
    )
    states = {r["params"]["regularizers.l1.weight"]: r for r in out["rows"]}
    pruned = [r for r in out["rows"] if r["state"] == "PRUNED"]
    assert pruned, [(r["params"], r["state"]) for r in out["rows"]]
    assert all(r["pruned_at"] is not None for r in pruned)
    assert states[100]["state"] == "COMPLETE"
    assert states[1e6]["state"] == "PRUNED"  # the worst λ, after the bar was set
    best = search_stub.score(100.0, fold=0, seed=0, step=1, steps=1)
    assert all(
        search_stub.score(float(r["params"]["regularizers.l1.weight"]), fold=0, seed=0, step=1, steps=1) < best
        for r in pruned
    )
    table = {r["number"]: r for r in _csv(out["folder"])}
    assert all(table[str(r["number"])]["state"] == "PRUNED" and table[str(r["number"])]["pruned_at"] for r in pruned)


def test_interrupted_search_continues_and_reruns_the_interrupted_trial(tmp_path):
    log = tmp_path / "calls.jsonl"
    os.environ.update(STUB_LOG=str(log), STUB_INTERRUPT_AT="10")
    try:
        with pytest.raises(KeyboardInterrupt):
            _search(tmp_path, ["regularizers.l1.weight=[1,10,100,1000]"], folds=2)
        study = optuna.load_study(study_name="s", storage=f"sqlite:///{tmp_path / 's' / 'study.db'}")
        states = [t.state.name for t in study.trials]
        assert "FAIL" in states  # the interrupted trial, readable in the storage
        out = _search(tmp_path, ["regularizers.l1.weight=[1,10,100,1000]"], folds=2)
    finally:
        for k in ("STUB_LOG", "STUB_INTERRUPT_AT"):
            os.environ.pop(k, None)
    done = [r for r in out["rows"] if r["state"] == "COMPLETE"]
    assert sorted(r["params"]["regularizers.l1.weight"] for r in done) == [1, 10, 100, 1000]
    failed = [r for r in out["rows"] if r["state"] == "FAIL"]
    assert (
        len(failed) == 1 and failed[0]["params"]["regularizers.l1.weight"] == 10 and "interrupted" in failed[0]["error"]
    )
    # a finished search run again does nothing more
    before = len(log.read_text().splitlines())
    again = _search(tmp_path, ["regularizers.l1.weight=[1,10,100,1000]"], folds=2)
    assert len(log.read_text().splitlines()) == before and len(again["rows"]) == len(out["rows"])


def test_more_trials_on_rerun_tops_up_and_other_settings_are_refused(tmp_path):
    out = _search(tmp_path, ["regularizers.l1.weight=log:1:1000"], sampler="random", trials=3, folds=2)
    assert len(out["rows"]) == 3
    out = _search(tmp_path, ["regularizers.l1.weight=log:1:1000"], sampler="random", trials=5, folds=2)
    assert len(out["rows"]) == 5 and all(r["state"] == "COMPLETE" for r in out["rows"])
    with pytest.raises(UserError, match="other settings"):
        _search(tmp_path, ["regularizers.l1.weight=log:1:1000"], sampler="random", trials=5, folds=3)


def test_diverged_trial_is_failed_with_its_reason_and_the_search_goes_on(tmp_path, monkeypatch):
    monkeypatch.setenv("STUB_DIVERGE_AT", "1000")
    with pytest.warns(UserWarning, match=r"trial \d+ failed: G loss became NaN"):  # one line names the trial
        out = _search(tmp_path, ["regularizers.l1.weight=[1,100,1000]"], folds=2)
    by = {r["params"]["regularizers.l1.weight"]: r for r in out["rows"]}
    assert by[1000]["state"] == "FAIL" and "NaN" in by[1000]["error"]
    assert by[1]["state"] == by[100]["state"] == "COMPLETE" and out["best"]["params"]["regularizers.l1.weight"] == 100
    assert len(out["rows"]) == 3  # a trial that failed for a reason of its own is a result, not retried


def test_a_value_the_config_refuses_is_caught_before_any_trial(tmp_path):
    with pytest.raises(UserError, match="optim.g.lr"):
        _search(tmp_path, ["optim.g.lr=[1e-4,-1]"], folds=2)
    assert not (tmp_path / "s").exists()


# ------------------------------------------------------------------------------------------- workers
def _worker(tmp_path, name, *extra, env_extra=None):
    env = dict(
        os.environ, PYTHONPATH=os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]), **(env_extra or {})
    )
    cmd = [
        sys.executable,
        "-m",
        "normgan",
        "search",
        "edges2digit",
        *BASE,
        "--param",
        "regularizers.l1.weight=[0,1,3,10,30,100,300,1000]",
        "--folds",
        "2",
        "--metric",
        "psnr",
        "--name",
        name,
        "--searches-dir",
        str(tmp_path),
        "--trainer",
        STUB,
        "--no-progress",
        "--heartbeat",
        "2",
        *extra,
    ]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def test_two_workers_share_the_embedded_storage_without_duplicates(tmp_path):
    log = tmp_path / "calls.jsonl"
    env = {"STUB_LOG": str(log), "STUB_SLEEP": "0.3"}
    procs = [_worker(tmp_path, "w", env_extra=env) for _ in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    calls = [json.loads(line) for line in log.read_text().splitlines()]
    trial_calls = [(c["lam"], c["fold"]) for c in calls if "/trials/" in c["run_dir"]]
    assert sorted(trial_calls) == sorted((lam, f) for lam in (0, 1, 3, 10, 30, 100, 300, 1000) for f in range(2))
    assert len({c["pid"] for c in calls if "/trials/" in c["run_dir"]}) == 2  # both worked
    assert len([c for c in calls if "/final/" in c["run_dir"]]) == 1  # one retrain for the search
    study = optuna.load_study(study_name="w", storage=f"sqlite:///{tmp_path / 'w' / 'study.db'}")
    complete = [t for t in study.trials if t.state.name == "COMPLETE"]
    assert sorted(t.params["regularizers.l1.weight"] for t in complete) == [0, 1, 3, 10, 30, 100, 300, 1000]


# ------------------------------------------------------------------------------------------- bad input
def _cli(tmp_path, *args, home=None):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]))
    return subprocess.run(
        [sys.executable, "-m", "normgan", "search", *args, "--searches-dir", str(tmp_path), "--no-progress"],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )


@pytest.mark.parametrize(
    "args, words",
    [
        (["edges2digit", "--param", "regularizers.l1.wieght=[1,2]"], "regularizers.l1.wieght"),
        (["edges2digit", "--param", "model.generator.widht=[8,16]"], "unknown config key"),
        (["edges2digit", "--param", "regularizers.l1.weight=log:0:1"], "lo > 0"),
        (["edges2digit", "--param", "regularizers.l1.weight=[1,10]", "--metric", "fid"], "does not compute"),
        (
            [
                "edges2digit",
                "--param",
                "regularizers.l1.weight=[1,10]",
                "--storage",
                "postgresql://u:secret@127.0.0.1:9/db",
            ],
            "cannot connect",
        ),
        (["edges2digit", "--param", "regularizers.l1.weight=[1,10]", "--storage", "nonsense"], "not a database URL"),
        (["edges2digit", "--param", "regularizers.l1.weight=[1,10]", "--folds", "1000"], "--folds 1000"),
        (["edges2digit", "--param", "regularizers.l1.weight=log:1:10"], "needs --trials"),
        (["edges2digit", "--param", "regularizers.l1.weight=[1,10]", "--sampler", "cmaes"], "--sampler"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(tmp_path, args, words):
    r = _cli(tmp_path, *args)
    assert r.returncode == 2, (r.stdout, r.stderr)
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("normgan: error:") and words in lines[0], r.stderr
    assert "secret" not in r.stderr


def _doc_commands():
    """The `normgan search` commands of docs/search.md's "Ready searches" (continuation lines joined)."""
    text = (TESTS.parent / "docs" / "search.md").read_text()
    ready = text.split("## Ready searches", 1)[1].split("## Measured", 1)[0]
    joined = ready.replace("\\\n", " ")
    return [line.strip() for line in joined.splitlines() if line.strip().startswith("normgan search ")]


@pytest.mark.parametrize("command", _doc_commands())
def test_documented_searches_are_valid(command, tmp_path):
    """Each ready search in docs/search.md parses and validates (keys, SPECs, metric, folds) as written."""
    import shlex

    from normgan.cli import build_parser, parse_args
    from normgan.cli.search import search_from_args

    args = parse_args(build_parser(), shlex.split(command)[1:] + ["--searches-dir", str(tmp_path)])
    search = search_from_args(args)
    assert search.params and search.requested >= 5 and len(search.fold_plan) == 3


def test_three_ready_searches_are_documented():
    keys = " ".join(_doc_commands())
    assert len(_doc_commands()) == 3
    for key in ("regularizers.l1.weight", "regularizers.r1.weight", "regularizers.wd_g.weight"):
        assert key in keys
