"""train.compile: the adversarial forwards through torch.compile give the eager run's steps (within
float tolerance), penalties still differentiate twice on the eager modules, checkpoints hold the
eager modules' keys, and a missing compiler is a one-line ConfigError."""

import pytest
import torch
from conftest import TINY

from normgan import Trainer, load_config
from normgan.errors import ConfigError
from normgan.train.compiled import compiler_missing
from normgan.train.logger import read_metrics

STEPS = 3
# spectral norm on D (a parametrization inside the compiled graph) plus R1 every step (double
# backward, which must run on the eager D): the two cases most likely to break under compile
OVER = [
    *TINY,
    "train.steps=3",
    "train.log_every=1",
    "train.checkpoint_every=3",
    "train.sample_every=3",
    "regularizers.r1={term: grad, net: D, at: real, weight: 1.0}",
]


def test_compiled_steps_equal_eager_steps(tmp_path):
    runs = {}
    for mode in ("false", "true"):
        tr = Trainer(
            load_config("sngan", overrides=[*OVER, f"train.compile={mode}"]),
            runs_dir=tmp_path,
            name=f"c{mode}",
            progress=False,
        )
        if mode == "true":
            assert tr.G_fwd is not tr.G and tr.D_fwd is not tr.D and not tr.objective.share_real_forward
        else:
            assert tr.G_fwd is tr.G and tr.objective.share_real_forward  # eager R1 reuses D's forward on the real batch
        tr.fit()
        runs[mode] = tr
    eager, comp = runs["false"], runs["true"]
    rows = {m: [r for r in read_metrics(t.run_dir / "metrics.jsonl") if "loss/D" in r] for m, t in runs.items()}
    assert len(rows["false"]) == len(rows["true"]) == STEPS
    for a, b in zip(rows["false"], rows["true"]):
        for key in ("loss/D", "loss/G", "reg/r1/raw"):
            assert b[key] == pytest.approx(a[key], rel=1e-4, abs=1e-6), key
    for name in ("G", "D", "G_ema"):
        sa, sb = getattr(eager, name).state_dict(), getattr(comp, name).state_dict()
        assert set(sa) == set(sb)
        for k in sa:  # the weights moved identically, spectral norm's power-iteration vectors included
            torch.testing.assert_close(sb[k], sa[k], rtol=1e-4, atol=1e-6, msg=lambda m: f"{name}.{k}: {m}")
    ck = torch.load(comp.run_dir / "checkpoints" / "last.pt", weights_only=True)
    ce = torch.load(eager.run_dir / "checkpoints" / "last.pt", weights_only=True)
    for part in ("generator", "discriminator"):
        assert set(ck[part]) == set(ce[part]) and not any("_orig_mod" in k for k in ck[part])


def test_missing_compiler_is_a_config_error(tmp_path, monkeypatch):
    monkeypatch.delenv("CXX", raising=False)
    monkeypatch.setattr("normgan.train.compiled.shutil.which", lambda name: None)
    assert "C++ compiler" in compiler_missing("cpu")
    with pytest.raises(ConfigError, match=r"train.compile: no C\+\+ compiler found .*set train.compile: false"):
        Trainer(load_config(overrides=[*TINY, "train.compile=true"]), runs_dir=tmp_path, progress=False)
