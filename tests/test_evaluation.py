"""normgan.eval.evaluation: evaluate_run (JSON, held-out reference), evaluate_generator on known
generators, the periodic evaluator, input errors, and the eval CLI."""

from __future__ import annotations

import json
import math
import re
import time
from pathlib import Path

import pytest
import torch
from torch import nn

import normgan
from normgan.data import ImageData, batch_to_float, load_dataset
from normgan.errors import UserError
from normgan.eval.evaluation import (
    check_eval_args,
    class_coverage,
    default_cache_dir,
    eval_path,
    evaluate_generator,
    evaluate_run,
    make_periodic_evaluator,
    mean_pairwise_distance,
    reference_dataset,
)
from normgan.metrics import domain

TINY_RUN = [
    "train.steps=30",
    "data.batch_size=16",
    "model.generator.width=8",
    "model.discriminator.width=8",
    "train.tensorboard=false",
    "regularizers={}",
    "train.log_every=5",
    "train.sample_every=1000",
    "train.checkpoint_every=1000",
    "train.num_samples=4",
]
CLASSIFIER_IMAGES, CLASSIFIER_EPOCHS = 1500, 3  # a small, quick classifier: enough to rank obvious cases
_ENV: dict = {}


def shared_env(tmp_path_factory) -> dict:
    """A domain classifier cache and a tiny trained run, made once per session and shared by the
    evaluation and compare tests (memoised in-process and on disk under the session's basetemp)."""
    base = tmp_path_factory.getbasetemp() / "normgan-eval-env"
    if str(base) in _ENV:
        return _ENV[str(base)]
    cache, runs = base / "cache", base / "runs"
    train = load_dataset(name="mnist5k", split="train")
    test = load_dataset(name="mnist5k", split="test")
    if not domain.cache_path(cache, train.fingerprint).exists():
        # trained on a subset but cached under the full train split's fingerprint, so evaluate_run
        # (which looks the classifier up by that fingerprint) reuses it instead of training its own
        small = ImageData(
            images=train.images[:CLASSIFIER_IMAGES],
            labels=train.labels[:CLASSIFIER_IMAGES],
            name=train.name,
            fingerprint=train.fingerprint,
        )
        t0 = time.perf_counter()
        model = domain.load_or_train(small, heldout=test, cache_dir=cache, epochs=CLASSIFIER_EPOCHS, seed=0)
        print(f"domain classifier {time.perf_counter() - t0:.1f}s, held-out accuracy {model.heldout_accuracy:.3f}")
    run = runs / "r"
    if not (run / "checkpoints" / "last.pt").exists():
        normgan.Trainer(normgan.load_config(overrides=TINY_RUN), runs_dir=runs, name="r", progress=False).fit()
    env = {"cache": cache, "runs": runs, "run": run, "train": train, "test": test}
    _ENV[str(base)] = env
    return env


@pytest.fixture(scope="session")
def env(tmp_path_factory):
    return shared_env(tmp_path_factory)


@pytest.fixture(scope="session")
def extractor(env):
    return domain.load_or_train(env["train"], cache_dir=env["cache"])


class ImageBank(nn.Module):
    """A stand-in generator that returns stored images, each once in turn (no repeats), or one image."""

    def __init__(self, images: torch.Tensor, *, collapsed: bool = False) -> None:
        super().__init__()
        self.register_buffer("images", batch_to_float(images))
        self.z_dim, self.collapsed = 4, collapsed
        self.dummy = nn.Parameter(torch.zeros(1))
        self.next = 0

    def forward(self, z):
        if self.collapsed:
            return self.images[:1].expand(z.shape[0], -1, -1, -1)
        idx = torch.arange(self.next, self.next + z.shape[0]) % len(self.images)
        self.next += z.shape[0]
        return self.images[idx]


def _one_line(exc_info):
    assert "\n" not in str(exc_info.value)


# ------------------------------------------------------------------------------------------ evaluate_run
def test_evaluate_run_writes_json_against_heldout(env):
    res = evaluate_run(env["run"], n=100, cache_dir=env["cache"])
    path = env["run"] / "eval" / "eval-step000030-domain-n100.json"
    assert res["path"] == str(path) and path.is_file()
    saved = json.loads(path.read_text())
    for key in (
        "n",
        "features",
        "fid",
        "fid_floor",
        "fid_floor_n",
        "kid_mean",
        "kid_std",
        "precision",
        "recall",
        "is_mean",
        "is_std",
        "reference",
        "step",
        "domain_heldout_accuracy",
        "class_coverage",
        "diversity",
    ):
        assert key in saved, key
    assert saved["n"] == 100 and saved["features"] == "domain" and saved["step"] == 30
    assert saved["reference"] == "test" and saved["fid_floor_n"] == 100  # 500 held-out images >= 2n
    # the reference is the held-out split, not the training images
    assert saved["reference_fingerprint"] == env["test"].fingerprint != env["train"].fingerprint
    assert saved["n_reference"] == len(env["test"])
    assert saved["domain_heldout_accuracy"] == pytest.approx(
        domain.load_or_train(env["train"], cache_dir=env["cache"]).heldout_accuracy
    )
    assert 0.0 < saved["class_coverage"] <= 1.0 and saved["diversity"] > 0
    for key in ("fid", "fid_floor", "kid_mean", "precision", "recall", "is_mean"):
        assert math.isfinite(saved[key]), key


def test_reference_split_is_disjoint_from_training(env):
    cfg = normgan.load_config(overrides=TINY_RUN)
    ref, train = reference_dataset(cfg, "test"), reference_dataset(cfg, "train")
    assert ref.fingerprint == env["test"].fingerprint and len(ref) == 500
    seen = {bytes(img.numpy()) for img in train.images}
    assert not any(bytes(img.numpy()) in seen for img in ref.images)
    with pytest.raises(UserError, match="--reference train") as info:
        reference_dataset(normgan.load_config(overrides=["data.holdout=0"]), "test")
    _one_line(info)


def test_reference_train_and_seed_get_their_own_file(env):
    res = evaluate_run(env["run"], n=50, metrics=("fid",), reference="train", seed=1, cache_dir=env["cache"])
    assert res["reference"] == "train" and res["reference_fingerprint"] == env["train"].fingerprint
    assert Path(res["path"]).name == "eval-step000030-domain-n50-ref_train-seed1.json"
    assert set(res) >= {"fid", "fid_floor"} and "kid_mean" not in res


def test_reuse_returns_the_saved_result(env, monkeypatch):
    first = evaluate_run(env["run"], n=40, metrics=("fid",), cache_dir=env["cache"])
    import normgan.eval.evaluation as ev

    monkeypatch.setattr(ev, "evaluate_generator", lambda *a, **k: pytest.fail("recomputed despite a saved result"))
    again = evaluate_run(env["run"], n=40, metrics=("fid",), cache_dir=env["cache"], reuse=True)
    assert again["reused"] and again["fid"] == first["fid"]


# ------------------------------------------------------------------------------------------ known generators
def test_real_heldout_images_score_near_floor_and_collapse_far_worse(env, extractor):
    cfg = normgan.load_config(overrides=TINY_RUN)
    real_gen = ImageBank(env["test"].images)
    good = evaluate_generator(real_gen, cfg, n=200, metrics=("fid", "pr", "is"), extractor=extractor)
    bad = evaluate_generator(
        ImageBank(env["test"].images, collapsed=True), cfg, n=200, metrics=("fid", "pr", "is"), extractor=extractor
    )
    assert good["fid_floor_n"] == 200 and good["reference"] == "test"
    assert good["fid"] < 3 * good["fid_floor"] + 1e-3
    assert bad["fid"] > 10 * good["fid"] and bad["fid"] > 10 * bad["fid_floor"]
    assert good["recall"] > 0.5 and bad["recall"] < 0.1
    assert good["class_coverage"] == 1.0 and bad["class_coverage"] == pytest.approx(0.1)  # 1 of 10 digits
    assert 0.8 < good["diversity"] < 1.2 and bad["diversity"] == pytest.approx(0.0, abs=1e-6)


def test_class_coverage_and_pairwise_distance_definitions():
    logits = torch.zeros(40, 4)
    logits[:30, 0] = 1  # 30 of class 0
    logits[30:39, 1] = 1  # 9 of class 1
    logits[39:, 2] = 1  # 1 of class 2: below 40/(4*4) = 2.5 samples
    assert class_coverage(logits) == pytest.approx(0.5)  # classes 0 and 1 of 4
    x = torch.tensor([[0.0, 0.0], [3.0, 4.0], [0.0, 4.0]])  # pair distances 5, 4, 3
    assert mean_pairwise_distance(x) == pytest.approx(4.0)
    assert math.isnan(mean_pairwise_distance(x[:1]))


# ------------------------------------------------------------------------------------------ periodic evaluator
def test_periodic_evaluator_matches_evaluate_and_keeps_rng(env, extractor):
    from normgan.inference.sample import load_generator

    G, cfg = load_generator(env["run"])
    ev = make_periodic_evaluator(cfg, device="cpu", cache_dir=env["cache"], n=60, metrics=("fid", "kid", "pr", "is"))
    G.train()
    state = torch.get_rng_state()
    got = ev(G)
    torch.testing.assert_close(torch.get_rng_state(), state)  # the training RNG stream is untouched
    assert G.training  # mode restored
    G.eval()
    ref = evaluate_generator(G, cfg, n=60, metrics=("fid", "kid", "pr", "is"), extractor=extractor)
    for key in ("fid", "fid_floor", "kid_mean", "precision", "recall", "is_mean", "class_coverage", "diversity"):
        assert got[key] == pytest.approx(ref[key], rel=1e-6, abs=1e-9), key
    assert got["fid_floor_n"] == ref["fid_floor_n"] and got["n"] == 60
    assert ev(G)["fid"] == pytest.approx(got["fid"])  # deterministic given its seed


# ------------------------------------------------------------------------------------------ errors
def test_bad_inputs_are_one_line_user_errors(env, tmp_path, monkeypatch):
    cases = [
        (dict(n=1), "--n"),
        (dict(features="nope"), "unknown feature extractor 'nope'"),
        (dict(metrics=("fid", "fjd")), "unknown metric 'fjd'"),
        (dict(reference="val"), "--reference"),
    ]
    for kw, match in cases:
        with pytest.raises(UserError, match=re.escape(match)) as info:
            evaluate_run(env["run"], **{"n": 10, **kw})
        _one_line(info)
    with pytest.raises(UserError, match="does not exist") as info:
        evaluate_run(tmp_path / "missing", n=10)
    _one_line(info)
    assert check_eval_args(metrics="fid, kid") == ("fid", "kid")
    monkeypatch.setenv("NORMGAN_CACHE", str(tmp_path / "c"))
    assert default_cache_dir() == tmp_path / "c"
    monkeypatch.delenv("NORMGAN_CACHE")
    assert default_cache_dir() == Path("~/.cache/normgan").expanduser()
    assert (
        eval_path("r", step=7, features="pkg.mod:Cls", n=3, ema=False).name
        == "eval-step000007-pkg.mod_Cls-n3-noema.json"
    )


# ------------------------------------------------------------------------------------------ CLI
def _parser():
    from normgan.cli import build_parser

    return build_parser()


FID_LINE = re.compile(r"FID [0-9.e+-]+ \(N=30, features=domain, real-vs-real floor [0-9.e+-]+ at N=30\)")


def test_cmd_eval_in_process(env, capsys):
    args = _parser().parse_args(
        ["eval", str(env["run"]), "--n", "30", "--metrics", "fid,pr", "--cache-dir", str(env["cache"])]
    )
    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert FID_LINE.search(out), out
    assert "precision" in out and "class coverage" in out and "eval-step000030-domain-n30.json" in out
    for argv, match in (
        [["eval", str(env["run"]), "--n", "1"], "--n"],
        [["eval", str(env["run"]), "--features", "bogus"], "bogus"],
        [["eval", str(env["run"]), "--metrics", "fid,xyz"], "xyz"],
        [["eval", str(env["run"]) + "-missing"], "does not exist"],
    ):
        args = _parser().parse_args(argv)
        with pytest.raises(UserError, match=match) as info:
            args.func(args)
        _one_line(info)


def _cli_wired() -> bool:
    from normgan.cli import build_parser

    try:
        build_parser().parse_args(["eval", "x"])
        return True
    except SystemExit:
        return False


needs_cli = pytest.mark.skipif(
    not _cli_wired(), reason="normgan.cli does not register the eval commands yet (normgan.cli.COMMANDS)"
)


@needs_cli
def test_cli_eval_subprocess(env):
    from conftest import run_cli

    p = run_cli("eval", env["run"], "--n", "30", "--metrics", "fid", "--cache-dir", env["cache"])
    assert p.returncode == 0, p.stderr
    assert FID_LINE.search(p.stdout), p.stdout
    for args in (["--n", "1"], ["--features", "bogus"], ["--metrics", "fid,xyz"]):
        p = run_cli("eval", env["run"], *args, "--cache-dir", env["cache"])
        assert (
            p.returncode == 2 and p.stderr.startswith("normgan: error: ") and len(p.stderr.strip().splitlines()) == 1
        ), p.stderr
    p = run_cli("eval", Path(env["run"]).parent / "missing")
    assert p.returncode == 2 and "does not exist" in p.stderr


def test_periodic_evaluation_in_training_keeps_best_checkpoint(env, tmp_path):
    """eval.every: eval/<metric> rows at the evaluation steps, best.pt at the best FID, survives resume."""
    over = [
        *TINY_RUN,
        "train.steps=12",
        "eval.every=4",
        "eval.n=100",
        "eval.metrics=[fid,pr]",
        f"eval.cache_dir={env['cache']}",
    ]
    trainer = normgan.Trainer(normgan.load_config(overrides=over), runs_dir=tmp_path, name="ev", progress=False)
    run = trainer.fit()
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    evals = [r for r in rows if "eval/fid" in r]
    assert [r["step"] for r in evals] == [4, 8, 12]
    for r in evals:
        assert r["eval/n"] == 100 and r["eval/fid_floor"] < r["eval/fid"]
    best = min(evals, key=lambda r: r["eval/fid"])
    state = torch.load(run / "checkpoints" / "best.pt", weights_only=True)
    assert state["step"] == best["step"]
    assert state["best"]["score"] == pytest.approx(best["eval/fid"], rel=1e-9)
    resumed = normgan.Trainer.resume(run, progress=False)
    assert resumed.best_score == pytest.approx(best["eval/fid"], rel=1e-9) and resumed.best_step == best["step"]


# ------------------------------------------------------------------------------------------ metric_info
def test_metric_info_is_a_leaf_module():
    import ast
    import sys

    import normgan.eval.metric_info as mi
    import normgan.runtime.resources as resources

    def top_imports(module):
        tree = ast.parse(Path(module.__file__).read_text())
        top = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]
        return [a.name for n in top if isinstance(n, ast.Import) for a in n.names] + [
            n.module for n in top if isinstance(n, ast.ImportFrom)
        ]

    def stdlib(m):
        return m.split(".")[0] in sys.stdlib_module_names or m == "__future__"

    # metric_info loads no torch: the standard library, the errors and the memory reader, itself a leaf
    names = top_imports(mi)
    assert all(m in ("normgan.errors", "normgan.runtime.resources") or stdlib(m) for m in names), names
    assert all(stdlib(m) for m in top_imports(resources)), top_imports(resources)
    from normgan.eval import evaluation

    assert evaluation.check_eval_args is mi.check_eval_args  # re-exported, one implementation


def test_minimum_n_follows_the_requested_metrics():
    from normgan.eval.metric_info import check_eval_args as check

    for n, metrics in ((2, "fid"), (2, "fid,kid,is"), (4, "pr"), (4, "fid,kid,pr,is")):
        assert check(n=n, metrics=metrics) == tuple(metrics.split(","))
    for n, metrics in ((3, "pr"), (2, "fid,pr"), (3, None), (1, "fid")):
        with pytest.raises(UserError, match=r"--n: \d is too small.*use at least") as info:
            check(n=n, metrics=metrics)
        _one_line(info)
        if metrics != "fid":
            assert "k+1 = 4" in str(info.value) and "at least 4" in str(info.value)


def test_best_metric_must_be_produced_by_the_metrics():
    from normgan.eval.metric_info import (
        BEST_METRIC_CHOICES,
        HIGHER_IS_BETTER,
        LOWER_IS_BETTER,
        check_best_metric,
        is_better,
    )

    assert check_best_metric(best_metric="fid", metrics=["fid"]) == "fid"
    assert check_best_metric(best_metric="precision", metrics=["fid", "pr"]) == "precision"
    assert check_best_metric(best_metric="diversity", metrics=["kid"]) == "diversity"  # every evaluation has it
    with pytest.raises(UserError, match=r"'precision' is not produced by eval.metrics \[fid\].*add pr") as info:
        check_best_metric(best_metric="precision", metrics=["fid"])
    _one_line(info)
    with pytest.raises(UserError, match="add kid"):
        check_best_metric(best_metric="kid_mean", metrics="fid,pr")
    with pytest.raises(UserError, match="unknown score 'fid_floor'"):
        check_best_metric(best_metric="fid_floor", metrics=["fid"])
    # every choice has a direction, and exactly one
    assert all((c in HIGHER_IS_BETTER) != (c in LOWER_IS_BETTER) for c in BEST_METRIC_CHOICES)
    assert {"psnr", "ssim"} <= set(HIGHER_IS_BETTER) and "lpips" in LOWER_IS_BETTER
    assert is_better(metric="fid", value=1.0, best=2.0) and not is_better(metric="fid", value=3.0, best=2.0)
    assert is_better(metric="recall", value=0.9, best=0.5) and is_better(metric="recall", value=0.1, best=None)


def test_produced_keys_match_a_real_evaluation(env, extractor):
    from normgan.eval.metric_info import RESULT_KEYS, produced_keys

    cfg = normgan.load_config(overrides=TINY_RUN)
    for metrics in (("fid",), ("kid", "pr"), ("is",)):
        res = evaluate_generator(ImageBank(env["test"].images), cfg, n=20, metrics=metrics, extractor=extractor)
        groups = {k for m in RESULT_KEYS for k in RESULT_KEYS[m]}
        assert {k for k in res if k in groups or k in ("class_coverage", "diversity")} == set(produced_keys(metrics))


# ------------------------------------------------------------------------------------------ the floor's N
def test_floor_line_states_its_n_and_why(env, capsys):
    """N=300 > 500/2: the floor is computed between the two halves of the held-out split (N=250)."""
    args = _parser().parse_args(
        ["eval", str(env["run"]), "--n", "300", "--metrics", "fid", "--cache-dir", str(env["cache"])]
    )
    assert args.func(args) == 0
    out = capsys.readouterr().out
    line = next(line for line in out.splitlines() if line.startswith("FID "))
    assert re.search(
        r"\(N=300, features=domain, real-vs-real floor [0-9.e+-]+ at N=250: the held-out split has 500 "
        r"images, too few for two disjoint sets of 300",
        line,
    ), line
    saved = json.loads((env["run"] / "eval" / "eval-step000030-domain-n300.json").read_text())
    assert saved["fid_floor_n"] == 250 == saved["n_reference"] // 2 and saved["n_real"] == 300
    # the floor is the FID between the two halves of the permuted held-out split, recomputed here
    from normgan.metrics import fid_from_features, real_features

    ext = domain.load_or_train(env["train"], cache_dir=env["cache"])
    perm = torch.randperm(500, generator=torch.Generator().manual_seed(0))
    feats = real_features(ext, env["test"], indices=perm)
    assert saved["fid_floor"] == pytest.approx(fid_from_features(feats[:250], feats[250:500]), rel=1e-9)
    from normgan.cli.eval import format_eval

    same = format_eval({**saved, "n": 100, "fid_floor_n": 100})
    assert "at N=100)" in same and "too few" not in same  # no explanation when the floor is at N


def test_n_too_small_for_precision_recall_is_one_line_cli_error(env):
    from conftest import run_cli

    p = run_cli("eval", env["run"], "--n", "2", "--cache-dir", env["cache"])
    assert p.returncode == 2 and p.stderr.startswith("normgan: error: --n: 2 is too small"), p.stderr
    assert len(p.stderr.strip().splitlines()) == 1 and "at least 4" in p.stderr
    p = run_cli("eval", env["run"], "--n", "2", "--metrics", "fid", "--cache-dir", env["cache"], "--json")
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["n"] == 2


# ------------------------------------------------------------------------------------------ damaged checkpoints
def _crafted(root: Path, name: str, state: dict) -> Path:
    run = root / name
    (run / "checkpoints").mkdir(parents=True)
    torch.save(state, run / "checkpoints" / "last.pt")
    return run


def test_sample_and_eval_on_mismatching_or_incomplete_checkpoints(env, tmp_path):
    """Another config's weights, or a missing config / image_shape / generator entry: one line, exit 2."""
    from conftest import run_cli

    good = torch.load(env["run"] / "checkpoints" / "last.pt", map_location="cpu", weights_only=True)
    wider = json.loads(json.dumps(good["config"]))
    wider["model"]["generator"]["width"] = 16  # the weights are width 8
    cases = {
        "mismatch": (
            {**good, "config": wider},
            r"does not match the config's EMA generator: key '[\w.]+' has shape "
            r"\([\d, ]+\) in the checkpoint and \([\d, ]+\) in the model",
        ),
        "noconfig": ({k: v for k, v in good.items() if k != "config"}, "has no 'config' entry"),
        "noshape": ({k: v for k, v in good.items() if k != "image_shape"}, "has no 'image_shape' entry"),
        "noema": ({k: v for k, v in good.items() if k != "generator_ema"}, "has no 'generator_ema' entry"),
        "badshape": ({**good, "image_shape": [1, 32]}, "damaged 'image_shape' entry"),
    }
    for name, (state, match) in cases.items():
        run = _crafted(tmp_path, name, state)
        commands = [("sample", run, "--n", "2", "--out", tmp_path / f"out-{name}")]
        if name in ("mismatch", "noshape"):
            commands.append(("eval", run, "--n", "10", "--cache-dir", env["cache"]))
        for cmd in commands:
            p = run_cli(*cmd)
            assert p.returncode == 2, (name, cmd[0], p.stderr)
            assert p.stderr.startswith("normgan: error: checkpoint ") and len(p.stderr.strip().splitlines()) == 1, (
                p.stderr
            )
            assert re.search(match, p.stderr), (name, p.stderr)
        assert not (run / "eval").exists()
    # the RNG state is not needed to generate: a checkpoint without it still samples
    run = _crafted(tmp_path, "norng", {k: v for k, v in good.items() if k != "rng"})
    p = run_cli("sample", run, "--n", "2", "--out", tmp_path / "out-norng")
    assert p.returncode == 0, p.stderr
    assert sorted(f.name for f in (tmp_path / "out-norng").iterdir()) == ["000000.png", "000001.png", "grid.png"]
