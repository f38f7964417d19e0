"""``eval.features: domain-full``: the domain classifier of the data source's default split (data.holdout
0.1) for a run on a small split; the warning of ``domain`` on a small split; the overfitting measures and
the study outputs naming their features; one-line errors for bad values.

Every classifier is trained from an empty cache (tmp_path) for one epoch (``train_domain_classifier``
wrapped), to keep the file fast; the accuracy bounds below hold at one epoch."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest
import torch
from conftest import TINY

from normgan.cli import main
from normgan.config import load_config
from normgan.errors import ConfigError
from normgan.eval import evaluation
from normgan.eval.evaluation import build_extractor, reference_dataset
from normgan.metrics import domain
from normgan.study.overfit import overfitting_scores

SMALL = [*TINY, "data.holdout=0.98"]  # 100 training digits of mnist5k, 4,900 held out


@pytest.fixture(scope="module")
def one_epoch():
    """``train_domain_classifier`` at one epoch, whatever it is asked (module-wide)."""
    mp = pytest.MonkeyPatch()
    full = domain.train_domain_classifier
    mp.setattr(domain, "train_domain_classifier", lambda train, **kw: full(train, **{**kw, "epochs": 1}))
    yield
    mp.undo()


@pytest.fixture(scope="module")
def cache(tmp_path_factory, one_epoch):
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="module")
def classifiers(cache):
    """``(domain-full, domain)`` extractors of a holdout-0.98 config, from an empty cache; the warning records."""
    cfg = load_config(overrides=SMALL)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        full = build_extractor("domain-full", cfg, device="cpu", cache_dir=cache)
        n_full = len(caught)
        small = build_extractor("domain", cfg, device="cpu", cache_dir=cache)
    return full, small, [str(w.message) for w in caught[:n_full]], [str(w.message) for w in caught[n_full:]]


def test_domain_full_is_the_default_splits_classifier(classifiers, cache):
    full, small, _, _ = classifiers
    default_train = reference_dataset(load_config(overrides=TINY), "train")  # holdout 0.1: a default run's split
    small_train = reference_dataset(load_config(overrides=SMALL), "train")
    assert len(default_train) == 4500 and len(small_train) == 100
    assert full.name == "domain-full" and small.name == "domain"
    assert full.fingerprint == default_train.fingerprint != small.fingerprint == small_train.fingerprint
    # one cache file per fingerprint, the default run's one shared: a default run's domain classifier is a cache hit
    assert sorted(p.name for p in cache.iterdir()) == sorted(
        f"domain-{f}.pt" for f in (default_train.fingerprint, small_train.fingerprint)
    )
    again = build_extractor("domain", load_config(overrides=TINY), device="cpu", cache_dir=cache)
    assert again.from_cache and again.fingerprint == full.fingerprint
    assert torch.equal(again.head.weight, full.head.weight)
    # held-out accuracy: the 4,500-digit classifier on the 500 default held-out digits, the 100-digit one
    # on the 4,900 held out of the run; two-sided sanity bounds (one epoch; chance is 0.1)
    assert 0.6 <= full.heldout_accuracy <= 1.0, full.heldout_accuracy
    assert 0.0 <= small.heldout_accuracy <= 0.5, small.heldout_accuracy
    assert full.heldout_accuracy - small.heldout_accuracy >= 0.3


def test_domain_on_a_small_split_warns_once_and_domain_full_does_not(classifiers, cache, monkeypatch):
    _, _, full_warnings, small_warnings = classifiers
    assert full_warnings == []
    assert len(small_warnings) == 1 and "\n" not in small_warnings[0]
    assert "trained on only 100 images" in small_warnings[0] and "eval.features: domain-full" in small_warnings[0]
    # 1,000 training digits (holdout 0.8) and more: no warning (the extractor itself is not needed here)
    monkeypatch.setattr("normgan.metrics.build_feature_extractor", lambda spec, **kw: torch.nn.Identity())
    for holdout in (0.8, 0.1):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            build_extractor(
                "domain", load_config(overrides=[*TINY, f"data.holdout={holdout}"]), device="cpu", cache_dir=cache
            )
        assert len(reference_dataset(load_config(overrides=[*TINY, f"data.holdout={holdout}"]), "train")) >= 1000
        assert [str(w.message) for w in caught] == []
    with pytest.warns(UserWarning, match="trained on only 500 images"):
        build_extractor("domain", load_config(overrides=[*TINY, "data.holdout=0.9"]), device="cpu", cache_dir=cache)


@pytest.fixture(scope="module")
def small_run(tmp_path_factory, one_epoch):
    torch.set_num_threads(1)
    cfg = load_config("configs/mnist.yaml", overrides=[*SMALL, "eval.features=domain-full"])
    from normgan.train import Trainer

    return Trainer(cfg, runs_dir=tmp_path_factory.mktemp("runs"), name="r", progress=False).fit()


def test_overfitting_scores_use_and_record_the_runs_features(small_run, cache, classifiers):
    s = overfitting_scores(small_run, n=100, cache_dir=cache)  # default: the run's eval.features
    assert s["features"] == "domain-full" and s["n_train"] == 100 and s["n_heldout"] == 100
    with pytest.warns(UserWarning, match="trained on only 100 images"):
        d = overfitting_scores(small_run, n=100, cache_dir=cache, features="domain")
    assert d["features"] == "domain" and d["fid_train"] != s["fid_train"]
    # the study keeps the name beside the numbers, and its table and results.csv say it
    from normgan.report.study import write_study_outputs
    from normgan.study.runner import stored_scores

    final = stored_scores({**s, "step": 6, "fid": 1.0})
    assert final["features"] == "domain-full" and final["step"] == 6 and isinstance(final["fid_gap"], float)
    folder = Path(small_run).parent / "study"
    run = {"variant": "none", "seed": 0, "run": str(small_run), "state": "done", "final": final}
    doc = {
        "name": "s",
        "metric": "fid",
        "measures": ["overfitting"],
        "columns": ["fid", "fid_gap", "memorization"],
        "variants": [{"name": "none", "values": {}}],
        "seeds": [0],
        "runs": [run],
    }
    folder.mkdir()
    (folder / "study.json").write_text(json.dumps(doc))
    write_study_outputs(folder)
    assert "memorization (with their real controls) use the domain-full features" in (folder / "table.md").read_text()
    assert "use the domain-full features" in (folder / "report.html").read_text()
    header, row = (folder / "results.csv").read_text().splitlines()[:2]
    assert header.split(",")[-3] == "features" and row.split(",")[-3] == "domain-full"


def test_cli_eval_with_domain_full(small_run, cache, classifiers, capsys):
    args = ["eval", str(small_run), "--features", "domain-full", "--n", "100", "--metrics", "fid"]
    assert main([*args, "--cache-dir", str(cache), "--no-progress", "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["features"] == "domain-full" and res["features_spec"] == "domain-full"
    assert res["domain_fingerprint"] == classifiers[0].fingerprint
    assert res["domain_heldout_accuracy"] == pytest.approx(classifiers[0].heldout_accuracy)
    assert Path(res["path"]).name == "eval-step000006-domain-full-n100.json"


def test_bad_features_are_one_line_errors(tmp_path, small_run, capsys):
    with pytest.raises(ConfigError, match=r"^eval\.features: unknown feature extractor 'domain-ful'; .*domain-full"):
        load_config(overrides=["eval.every=10", "eval.features=domain-ful"])
    with pytest.raises(ConfigError, match=r"^eval\.features: domain-full .*data\.folds.*use eval\.features: domain$"):
        load_config(overrides=["eval.every=10", "eval.features=domain-full", "data.folds=3"])
    # through the command line (in this process: a subprocess would import torch again): exit 2, one line
    assert main(["eval", str(small_run), "--features", "nope", "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("normgan: error: --features: unknown feature extractor 'nope'")
    assert main(["train", "eval.every=10", "eval.features=domain-ful", "--dry-run", "--runs-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("normgan: error: eval.features: unknown feature extractor 'domain-ful'")
    assert list(tmp_path.iterdir()) == []


def test_folds_refused_before_loading_anything(monkeypatch):
    cfg = load_config(overrides=[*TINY, "data.folds=3"])
    monkeypatch.setattr(evaluation, "reference_dataset", lambda *a, **k: pytest.fail("loaded a split"))
    with pytest.raises(Exception, match="domain-full .*data.folds"):
        build_extractor("domain-full", cfg, device="cpu", cache_dir=None)
