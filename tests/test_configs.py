"""Every shipped config loads and validates; the regularization configs train a few tiny steps."""

from __future__ import annotations

import subprocess
import sys

import pytest

import normgan
from normgan.config import packaged_config_dir, validate
from normgan.errors import ConfigError

CONFIGS = sorted(packaged_config_dir().glob("*.yaml"))
OURS = ["dcgan-r1", "wgan-gp", "sngan", "lsgan-l2", "l0-gates", "stats"]
TINY = [
    "train.steps=2",
    "data.batch_size=8",
    "model.generator.width=4",
    "model.discriminator.width=4",
    "train.tensorboard=false",
    "train.threads=1",
    "train.log_every=1",
    "train.num_samples=4",
]


def test_the_regularization_configs_ship():
    assert {f"{n}.yaml" for n in OURS} <= {p.name for p in CONFIGS}


#: configs for the user's own data: they validate once data.root names it
NEEDS_ROOT = {"pix2pix-facades"}


@pytest.mark.parametrize("path", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_config_loads_and_validates(path):
    cfg = normgan.load_config(path, overrides=["data.root=/data/facades"] if path.stem in NEEDS_ROOT else [])
    validate(cfg)


@pytest.mark.parametrize("path", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_to_dict_equals_omegaconfs_conversion(path):
    """to_dict (a dataclass copy) gives OmegaConf's plain containers, key order included, for every
    shipped config with terms, constraints and weight rules added."""
    import yaml
    from omegaconf import OmegaConf

    from normgan.config import to_dict

    cfg = normgan.load_config(path, overrides=["data.root=/data/facades"] if path.stem in NEEDS_ROOT else [])
    cfg.regularizers["extra"] = {
        "term": "weights",
        "net": "G",
        "weight": {"schedule": "warmup", "base": 2.0, "steps": 10},
    }
    cfg.constraints["sn"] = {"kind": "spectral", "net": "D"}
    want = OmegaConf.to_container(OmegaConf.structured(cfg), resolve=True)
    assert yaml.safe_dump(to_dict(cfg), sort_keys=False) == yaml.safe_dump(want, sort_keys=False)


def test_to_dict_turns_values_set_by_hand_into_plain_containers():
    from omegaconf import OmegaConf

    from normgan.config import to_dict

    cfg = normgan.load_config()
    cfg.optim.g.betas = (0.0, 0.99)
    cfg.regularizers = {"r": OmegaConf.create({"term": "weights", "net": "G", "weight": 1.0})}
    d = to_dict(cfg)
    assert d["optim"]["g"]["betas"] == [0.0, 0.99] and type(d["optim"]["g"]["betas"]) is list
    assert type(d["regularizers"]["r"]) is dict and d["regularizers"]["r"]["weight"] == 1.0


def test_pix2pix_facades_is_the_papers_setup_and_asks_for_its_data():
    with pytest.raises(ConfigError, match="data.root"):
        normgan.load_config(packaged_config_dir() / "pix2pix-facades.yaml")  # ConfigError
    cfg = normgan.load_config(packaged_config_dir() / "pix2pix-facades.yaml", overrides=["data.root=/data/facades"])
    assert cfg.paired and cfg.data.resolution == 256 and cfg.data.load_size == 286 and cfg.data.flip
    assert cfg.model.generator.name == "unet" and cfg.model.generator.dropout == 0.5
    assert cfg.model.discriminator.name == "patchgan" and cfg.model.discriminator.options == {"layers": 3}
    assert cfg.regularizers["l1"] == {"term": "recon", "net": "G", "norm": "l1", "weight": 100.0}
    assert cfg.optim.g.lr == 2e-4 and cfg.optim.g.betas[0] == 0.5
    from normgan.models import build_discriminator

    assert build_discriminator(cfg.model.discriminator, resolution=256, channels=6).receptive_field == 70


PAIRED_CONFIGS = [
    "gray2color",
    "edges2photo",
    "noisy2clean",
    "blur2sharp",
    "lowres2highres",
    "edges2digit",
    "lowres2digit",
]


@pytest.mark.parametrize("name", PAIRED_CONFIGS)
def test_paired_config_trains_two_tiny_steps(tmp_path, name):
    cfg = normgan.load_config(packaged_config_dir() / f"{name}.yaml", overrides=TINY + ["eval.every=0"])
    assert cfg.paired and cfg.regularizers["l1"]["term"] == "recon"
    normgan.Trainer(cfg, runs_dir=tmp_path, progress=False).fit()


def test_configs_say_what_they_promise():
    wgan = normgan.load_config(packaged_config_dir() / "wgan-gp.yaml")
    assert wgan.loss == "wasserstein" and wgan.optim.d_steps == 5 and wgan.model.discriminator.norm == "none"
    assert wgan.optim.d.lr == 1e-4 and list(wgan.optim.d.betas) == [0.0, 0.9]
    assert wgan.regularizers["gp"] == {"term": "grad", "net": "D", "at": "interpolates", "center": 1, "weight": 10.0}
    assert normgan.load_config(packaged_config_dir() / "dcgan-r1.yaml").regularizers["r1"]["every"] == 16
    sn = normgan.load_config(packaged_config_dir() / "sngan.yaml")
    assert sn.loss == "hinge" and sn.constraints["sn"]["kind"] == "spectral"


@pytest.mark.parametrize("name", OURS)
def test_config_trains_two_tiny_steps(tmp_path, name):
    cfg = normgan.load_config(packaged_config_dir() / f"{name}.yaml", overrides=TINY + ["optim.d_steps=1"])
    normgan.Trainer(cfg, runs_dir=tmp_path, progress=False).fit()


def test_cli_dry_run_of_a_shipped_config():
    proc = subprocess.run(
        [sys.executable, "-m", "normgan", "train", str(packaged_config_dir() / "stats.yaml"), "--dry-run"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "texture" in proc.stdout


def test_an_empty_mapping_override_clears_terms_and_later_overrides_add_to_it():
    # OmegaConf merges {} into a mapping as a no-op; `regularizers={}` must mean "no terms"
    cfg = normgan.load_config(packaged_config_dir() / "mnist.yaml")
    assert set(cfg.regularizers) == {"wd_g"}
    assert normgan.load_config(packaged_config_dir() / "mnist.yaml", overrides=["regularizers={}"]).regularizers == {}
    cfg = normgan.load_config(
        packaged_config_dir() / "mnist.yaml",
        overrides=[
            "regularizers={}",
            "+regularizers.r1={term: grad, net: D, at: real}",
            "model.discriminator.norm=none",
        ],
    )
    assert set(cfg.regularizers) == {"r1"}
    # structured sections keep their schema: {} changes nothing there
    assert normgan.load_config(overrides=["data={}"]).data.name == "mnist5k"
