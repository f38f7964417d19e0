"""End-to-end CLI on a fresh machine: train -> sample -> eval -> compare -> diagnose.

Every command runs as ``python -m normgan`` in a subprocess whose HOME, XDG_CACHE_HOME and
TORCH_HOME point at empty folders of this module and without NORMGAN_CACHE, so nothing made by
other tests (in particular the pre-built domain classifier of test_evaluation's ``shared_env``)
can be found.  The first command that needs the domain classifier (whichever test runs first)
trains it from nothing (the "element 0 of tensors does not require grad" crash of issue 7);
later commands of this module reuse that one fresh cache (~40 s per classifier on 2 cores).

Paths are given as ``~/...`` and ``$HOME/...`` (never expanded by a shell here: subprocess
passes them verbatim), so the commands must expand them themselves; a literal ``~`` or ``$HOME``
folder in the working directory would mean they did not.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest
from conftest import TINY, run_cli
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
N_EVAL = 50


@pytest.fixture(scope="module")
def fresh(tmp_path_factory):
    """A fresh machine: empty HOME/XDG_CACHE_HOME/TORCH_HOME, no NORMGAN_CACHE, a scratch cwd."""
    root = tmp_path_factory.mktemp("fresh-machine")
    home, xdg, torch_home, cwd = root / "home", root / "xdg-cache", root / "torch-home", root / "cwd"
    for d in (home, xdg, torch_home, cwd):
        d.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("NORMGAN_CACHE", "HOME", "XDG_CACHE_HOME", "TORCH_HOME")}
    env.update(
        HOME=str(home),
        XDG_CACHE_HOME=str(xdg),
        TORCH_HOME=str(torch_home),
        NORMGAN_OFFLINE="1",
        PYTHONPATH=os.pathsep.join([str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])]),
    )
    cache = home / ".cache" / "normgan"
    assert not cache.exists() and not any(home.iterdir()) and not any(xdg.iterdir()) and not any(torch_home.iterdir())
    state = {"home": home, "cwd": cwd, "cache": cache, "env": env}

    def cli(*args, **kw):
        return run_cli(*args, env=env, cwd=cwd, timeout=600, **kw)

    state["cli"] = cli
    for name, seed in (("a", 0), ("b", 1)):  # two seeds of one config, for compare
        p = cli("train", *TINY, f"train.seed={seed}", "--runs-dir", "~/runs", "--name", name, "--no-progress")
        assert p.returncode == 0, p.stderr
        assert (home / "runs" / name / "checkpoints" / "last.pt").is_file(), p.stdout
    assert not cache.exists()  # training alone never builds the classifier
    yield state
    assert not (cwd / "~").exists() and not (cwd / "$HOME").exists(), "a path was not expanded"


def _classifier_files(cache: Path) -> list[Path]:
    return sorted(cache.glob("domain-*.pt")) if cache.is_dir() else []


def _ensure_classifier(fresh) -> dict:
    """Cache files and their mtimes, after making sure a fresh classifier exists (trained by eval)."""
    if not _classifier_files(fresh["cache"]):
        test_eval_trains_the_classifier_from_an_empty_cache(fresh)
    return {p: p.stat().st_mtime_ns for p in _classifier_files(fresh["cache"])}


def test_sample_writes_n_pngs_of_the_dataset_size(fresh):
    p = fresh["cli"]("sample", "~/runs/a", "--n", "5", "--out", "~/samples", "--seed", "3")
    assert p.returncode == 0, p.stderr
    out = fresh["home"] / "samples"
    files = sorted(out.glob("0*.png"))
    assert [f.name for f in files] == [f"{i:06d}.png" for i in range(5)]
    for f in files:
        with Image.open(f) as img:
            assert img.size == (32, 32)
    with Image.open(out / "grid.png") as grid:
        assert grid.size[0] > 32 and grid.size[1] >= 32  # 5 tiles side by side (with padding)


def test_eval_trains_the_classifier_from_an_empty_cache(fresh):
    cache = fresh["cache"]
    if _classifier_files(cache):
        pytest.skip("the classifier of this module was already trained by an earlier test")
    p = fresh["cli"]("eval", "~/runs/a", "--n", str(N_EVAL))
    assert p.returncode == 0, p.stderr
    assert "Traceback" not in p.stderr and "does not require grad" not in p.stderr
    assert "training the domain classifier of mnist5k" in p.stderr  # the minute it takes is announced
    m = re.search(
        rf"FID ([0-9.e+-]+) \(N={N_EVAL}, features=domain, real-vs-real floor ([0-9.e+-]+) at N={N_EVAL}\)", p.stdout
    )
    assert m, p.stdout
    assert float(m.group(1)) > float(m.group(2)) > 0  # an untrained 6-step generator is far from real digits
    assert re.search(r"precision [0-9.]+, recall [0-9.]+", p.stdout) and re.search(r"IS [0-9.]+", p.stdout), p.stdout
    acc = re.search(r"domain classifier held-out accuracy ([0-9.]+)", p.stdout)
    assert acc and float(acc.group(1)) > 0.9, p.stdout  # a freshly trained, useful classifier
    [clf] = _classifier_files(cache)  # trained here, under the default ~/.cache/normgan
    saved = json.loads((fresh["home"] / "runs" / "a" / "eval" / f"eval-step000006-domain-n{N_EVAL}.json").read_text())
    assert saved["n"] == N_EVAL and saved["domain_fingerprint"] in clf.name


def test_compare_two_seeds_with_expanded_paths(fresh):
    before = _ensure_classifier(fresh)
    p = fresh["cli"](
        "compare",
        "~/runs/a",
        "$HOME/runs/b",
        "--n",
        str(N_EVAL),
        "--metrics",
        "fid,pr",
        "--cache-dir",
        "~/.cache/normgan",
        "--out",
        "${HOME}/cmp",
    )
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("group"))
    row = lines[header + 2].split()
    assert row[:3] == ["all", "2", "6"], p.stdout  # one group: two seeds of one config at step 6
    assert " ± " in lines[header + 2]
    table = json.loads((fresh["home"] / "cmp" / "compare.json").read_text())
    [group] = table["groups"]
    assert group["seeds"] == [0, 1] and group["n_runs"] == 2
    assert {p.name for p in (fresh["home"] / "cmp").iterdir()} == {"compare.md", "compare.json"}
    # the expanded --cache-dir is the cache eval made: reused, not retrained
    assert {p: p.stat().st_mtime_ns for p in _classifier_files(fresh["cache"])} == before


def test_diagnose_prints_divergence_and_collapse_verdicts(fresh):
    p = fresh["cli"]("diagnose", "~/runs/a")
    assert p.returncode == 0, p.stderr
    assert "divergence: none" in p.stdout, p.stdout
    m = re.search(r"mode collapse: (SUSPECTED|not detected) \(.*pixel diversity ratio ([0-9.]+)", p.stdout)
    assert m, p.stdout
    ratio = float(m.group(2))
    assert 0.0 <= ratio < 2.0
    if ratio < 0.5:  # a 6-step EMA generator is still nearly constant: the verdict must say so
        assert m.group(1) == "SUSPECTED", p.stdout
