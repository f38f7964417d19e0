"""Bad input: one-line message naming the problem, exit code 2, no traceback."""

import gzip

import pytest
from conftest import run_cli


def make_bad_inputs(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    corrupt = tmp_path / "corrupt"
    corrupt.mkdir()
    (corrupt / "a.png").write_bytes(b"\x89PNG\r\n\x1a\nthis is not a png")
    bad_yaml = tmp_path / "bad.yaml"
    bad_yaml.write_text("data: {name: mnist5k\n  resolution: [")
    list_yaml = tmp_path / "list.yaml"
    list_yaml.write_text("- 1\n- 2\n")
    bad_ckpt = tmp_path / "badrun"
    (bad_ckpt / "checkpoints").mkdir(parents=True)
    (bad_ckpt / "checkpoints" / "last.pt").write_bytes(b"garbage, not a checkpoint")
    bad_idx = tmp_path / "train-images-idx3-ubyte.gz"
    bad_idx.write_bytes(gzip.compress(b"\x00\x00\x08\x03" + b"\x00\x00\x00\x05"))
    reg_list = tmp_path / "reglist.yaml"
    reg_list.write_text("regularizers:\n  - {term: weights, net: G}\n")
    binary = tmp_path / "binary.yaml"
    binary.write_bytes(bytes(range(256)) * 4)
    return {
        "regularizers as a list": (["train", str(reg_list), "--dry-run"], "regularizers"),
        "regularizers override as a list": (["train", "regularizers=[1,2]", "--dry-run"], "regularizers"),
        "binary config file": (["train", str(binary), "--dry-run"], "binary.yaml"),
        "gradient penalty on a BatchNorm D": (
            ["train", "configs/dcgan-r1.yaml", "model.discriminator.norm=batch", "--dry-run"],
            "model.discriminator.norm=none",
        ),
        "unknown key": (["train", "train.stepz=5", "--dry-run"], "train.stepz"),
        "unknown section": (["train", "trainer.steps=5", "--dry-run"], "trainer"),
        "wrong type": (["train", "train.steps=many", "--dry-run"], "train.steps"),
        "negative steps": (["train", "train.steps=-5", "--dry-run"], "train.steps"),
        "zero batch": (["train", "data.batch_size=0", "--dry-run"], "data.batch_size"),
        "bad lr": (["train", "optim.g.lr=-1", "--dry-run"], "optim.g.lr"),
        "missing folder": (["train", "data.name=folder", f"data.root={tmp_path / 'nope'}", "train.steps=1"], "nope"),
        "empty folder": (["train", "data.name=folder", f"data.root={empty}", "train.steps=1"], "no image"),
        "corrupt png strict": (
            ["train", "data.name=folder", f"data.root={corrupt}", "data.strict=true", "train.steps=1"],
            "a.png",
        ),
        "only corrupt png": (["train", "data.name=folder", f"data.root={corrupt}", "train.steps=1"], "corrupt"),
        "unknown dataset": (["train", "data.name=cifar99", "--dry-run"], "data.name"),
        "unknown model": (["train", "model.generator.name=stylegan9", "--dry-run"], "model.generator.name"),
        "unknown loss": (["train", "loss=kl", "--dry-run"], "loss"),
        "unknown norm layer": (["train", "model.discriminator.norm=weird", "--dry-run"], "model.discriminator.norm"),
        "unsupported resolution": (["train", "data.resolution=48", "--dry-run"], "data.resolution"),
        "missing config file": (["train", str(tmp_path / "none.yaml"), "--dry-run"], "none.yaml"),
        "bad yaml": (["train", str(bad_yaml), "--dry-run"], "bad.yaml"),
        "yaml not a mapping": (["train", str(list_yaml), "--dry-run"], "list.yaml"),
        "override without value": (["train", "train.steps", "--dry-run"], "train.steps"),
        "unreadable resume path": (["train", "--resume", str(tmp_path / "no-run")], "no-run"),
        "corrupt checkpoint": (["train", "--resume", str(bad_ckpt)], "last.pt"),
        "sample from missing run": (["sample", str(tmp_path / "no-run"), "--out", str(tmp_path / "o")], "no-run"),
        "truncated idx": (["train", "data.name=idx", f"data.root={bad_idx}", "train.steps=1"], "idx"),
        "batch larger than data": (
            ["train", "data.name=faces", "data.batch_size=100000", "train.steps=1", "--runs-dir", str(tmp_path / "r")],
            "batch_size",
        ),
    }


CASES = [
    "regularizers as a list",
    "regularizers override as a list",
    "binary config file",
    "gradient penalty on a BatchNorm D",
    "unknown key",
    "unknown section",
    "wrong type",
    "negative steps",
    "zero batch",
    "bad lr",
    "missing folder",
    "empty folder",
    "corrupt png strict",
    "only corrupt png",
    "unknown dataset",
    "unknown model",
    "unknown loss",
    "unknown norm layer",
    "unsupported resolution",
    "missing config file",
    "bad yaml",
    "yaml not a mapping",
    "override without value",
    "unreadable resume path",
    "corrupt checkpoint",
    "sample from missing run",
    "truncated idx",
    "batch larger than data",
]


@pytest.mark.parametrize("case", CASES)
def test_bad_input_gives_one_line_and_exit_2(case, tmp_path):
    args, needle = make_bad_inputs(tmp_path)[case]
    if args[0] == "train" and "--runs-dir" not in args:
        args = [*args, "--runs-dir", str(tmp_path / "runs")]
    proc = run_cli(*args, cwd=tmp_path)
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-2000:])
    assert "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("normgan: error:")]
    assert len(errors) == 1, proc.stderr
    assert needle.lower() in errors[0].lower(), errors[0]


# --------------------------------------------------------------------------------------------------
# issue 19, items 7-9: tracebacks and silent acceptance that become one line (each fails on 3f81e3c)

import errno
import subprocess
import sys
from pathlib import Path

from conftest import TINY
from faults import tmpfs

import normgan

ROOT = Path(normgan.__file__).resolve().parents[1]  # the checkout whose normgan is tested


def one_error_line(capsys, argv, *, code=2):
    """Run ``normgan ARGV`` in this process; the one ``normgan: error:`` line (exit ``code``)."""
    from normgan.cli import main

    rc = main([str(a) for a in argv])
    err = capsys.readouterr().err
    assert rc == code, (rc, err[-2000:])
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.startswith("normgan: error:")]
    assert len(lines) == 1 and len(err.strip().splitlines()) == 1, err
    return lines[0]


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


BAD_CONFIG_FILES = {
    # file text, words the one line must hold
    "section given a number": ("model: {generator: 3}\n", ["model.generator", "mapping"]),
    "list given a mapping": ("optim: {g: {betas: {a: 1}}}\n", ["optim.g.betas", "list"]),
    "non-string key": ("null: 1\n", ["None", "names"]),
    "duplicate top-level key": ("data:\n  name: mnist5k\ndata:\n  name: faces\n", ["duplicate key 'data'", "line 3"]),
    "duplicate nested key": ("train:\n  steps: 5\n  steps: 6\n", ["duplicate key 'steps'"]),
    "alias": ("a: &a [1, 2]\nb: *a\n", ["alias", "line 2"]),
}


@pytest.mark.parametrize("case", sorted(BAD_CONFIG_FILES))
def test_bad_config_file_is_one_line(case, tmp_path, capsys):
    text, words = BAD_CONFIG_FILES[case]
    line = one_error_line(capsys, ["train", write(tmp_path / "c.yaml", text), "--dry-run"])
    for w in words:
        assert w in line, line


BAD_OVERRIDES = {
    "index into a list": (["optim.g.betas.5=1"], ["optim.g.betas", "list", "optim.g.betas=[0.5,0.999]"]),
    "index into a list, 0": (["optim.d.betas.0=0.1"], ["optim.d.betas"]),
    "section given a number": (["model.generator=3"], ["model.generator", "mapping"]),
    "duplicate key in a value": (["regularizers.x={term: weights, term: grad}"], ["duplicate key 'term'"]),
    "train.seed beyond 64 bits": ([f"train.seed={2**64}"], ["train.seed", "2**64"]),
    "negative train.seed": (["train.seed=-1"], ["train.seed"]),
    "width too large to describe": (["model.generator.width=1000000000"], ["model.generator.width=1000000000"]),
    "width beyond any memory": (["model.discriminator.width=100000"], ["model.discriminator.width=100000", "TiB"]),
    "missing data.root": (
        ["data.name=folder", "data.root=/nonexistent/normgan-images"],
        ["data.root", "/nonexistent/normgan-images"],
    ),
    "missing aligned data.root": (
        [
            "data.name=aligned",
            "data.root=/nonexistent/pairs",
            "model.generator.name=unet",
            "model.discriminator.name=patchgan",
        ],
        ["data.root", "/nonexistent/pairs"],
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_OVERRIDES))
def test_bad_override_is_one_line_in_dry_run(case, capsys):
    overrides, words = BAD_OVERRIDES[case]
    line = one_error_line(capsys, ["train", *overrides, "--dry-run"])
    for w in words:
        assert w in line, line


def test_dry_run_refuses_a_file_as_data_folder(tmp_path, capsys):
    f = write(tmp_path / "images.txt", "not a folder")
    line = one_error_line(capsys, ["train", "data.name=folder", f"data.root={f}", "--dry-run"])
    assert "data.root" in line and "not a folder" in line


def test_sizes_are_checked_against_memory_before_allocating(monkeypatch, capsys):
    """width=4096 needs ~53 GiB (2.7e9 generator parameters × 20 bytes); with 8 GiB free it is one
    line naming the key and the estimate, before anything is allocated (dry-run and a real start)."""
    import normgan.models.build as build
    import normgan.runtime.resources as resources

    monkeypatch.setattr(resources, "device_memory", lambda device: (8 * 2**30, "of memory available"))
    for extra in (["--dry-run"], ["--runs-dir", "/nonexistent-runs-never-created"]):
        line = one_error_line(capsys, ["train", *TINY, "model.generator.width=4096", *extra])
        assert "model.generator.width=4096" in line and "8 GiB of memory available" in line, line
        est = float(line.split("training needs about ")[1].split(" GiB")[0])
        assert 50 <= est <= 65, line
    assert not Path("/nonexistent-runs-never-created").exists()
    from normgan import load_config

    cfg = load_config(overrides=TINY)
    est = build.estimate_training_bytes(cfg, channels=1)
    G, D, _, _ = build.build_networks(cfg, resolution=32, channels=1)
    assert est["g_params"] == sum(p.numel() for p in G.parameters()) and est["generator"] == 20 * est["g_params"]
    assert est["d_params"] == sum(p.numel() for p in D.parameters()) and est["discriminator"] == 16 * est["d_params"]


def test_width_beyond_memory_in_a_real_start_is_one_line(tmp_path):
    """A subprocess (no allocator message, no traceback): 1.6e12 parameters need ~29 TiB."""
    r = run_cli(
        "train", *TINY, "model.generator.width=100000", "--runs-dir", tmp_path / "runs", cwd=tmp_path, timeout=120
    )
    assert r.returncode == 2, r.stderr[-2000:]
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert "model.generator.width=100000" in r.stderr and " TiB" in r.stderr


def test_alias_bomb_is_refused_at_once(tmp_path):
    """A 'billion laughs' config (289 bytes, > 300 s before) is one line in a few seconds."""
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for i, name in enumerate("bcdefghi"):
        prev = "abcdefghi"[i]
        lines.append(f"{name}: &{name} [{','.join(['*' + prev] * 9)}]")
    bomb = write(tmp_path / "bomb.yaml", "\n".join(lines) + "\n")
    r = run_cli("train", bomb, "--dry-run", cwd=tmp_path, timeout=120)
    assert r.returncode == 2, r.stderr[-2000:]
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert "bomb.yaml" in r.stderr and "alias" in r.stderr


def test_one_yaml_loader_for_configs_studies_and_overrides(tmp_path):
    """Duplicate keys are errors in a study file too (two `none:` variants replaced the baseline)."""
    from normgan.config import load_yaml, parse_override
    from normgan.errors import ConfigError, UserError
    from normgan.study.spec import load_study

    study = write(
        tmp_path / "s.yaml",
        "config: mnist\noverrides: {train.steps: 20, eval.every: 10}\nseeds: 1\n"
        "variants:\n  none: {}\n  r1: {regularizers.r1: r1}\n  none: {regularizers.wd_g: none}\n",
    )
    with pytest.raises(UserError, match=r"duplicate key 'none'.*first at line 5"):
        load_study(str(study))
    aliased = write(tmp_path / "a.yaml", "config: mnist\nseeds: &n 1\nvariants: {a: {}}\nthreshold: *n\n")
    with pytest.raises(UserError, match="alias"):
        load_study(str(aliased))
    # the override parser of train and study: YAML values, 1e-4 a float (as OmegaConf reads it)
    assert parse_override("optim.g.lr=1e-4") == ("optim.g.lr", 1e-4)
    assert parse_override("+regularizers.x={term: weights}") == ("regularizers.x", {"term": "weights"})
    assert parse_override("data.root=2024-01-01") == ("data.root", "2024-01-01")
    with pytest.raises(ConfigError, match="duplicate key"):
        load_yaml("{a: 1, a: 2}", source="x")


def test_version(capsys):
    from normgan import __version__
    from normgan.cli import main

    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    import torch

    assert (
        out.strip()
        == f"normgan {__version__} (torch {torch.__version__.split('+')[0]}, python {sys.version.split()[0]})"
        or out.startswith(f"normgan {__version__} (torch {torch.__version__}")
    ), out


def test_gitignore_ignores_search_and_study_folders_not_shipped_studies():
    if not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    paths = [
        "searches/s/trials.csv",
        "studies/x/study.json",
        "runs/r/config.yaml",
        "normgan/configs/studies/stability-digits.yaml",
    ]
    r = subprocess.run(["git", "check-ignore", *paths], cwd=ROOT, capture_output=True, text=True)
    assert sorted(r.stdout.split()) == sorted(paths[:3]), r.stdout


def test_os_error_backstop_is_one_line(monkeypatch, capsys):
    """An OSError no command turned into a message still prints one line with its path and a fix."""
    import normgan.cli.sample as cli

    def boom(args):
        raise OSError(errno.ENOSPC, "No space left on device", "/data/out/000001.png")

    monkeypatch.setattr(cli, "cmd_sample", boom)
    line = one_error_line(capsys, ["sample", "run", "--out", "o"], code=1)
    assert "/data/out/000001.png" in line and "free some space" in line

    def ro(args):
        raise OSError(errno.EROFS, "Read-only file system", "/mnt/ro/x")

    monkeypatch.setattr(cli, "cmd_sample", ro)
    assert "read-only" in one_error_line(capsys, ["sample", "run", "--out", "o"], code=2)


# ---------------------------------------------------------------- commands on a trained run


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Two tiny unconditional runs (G width 8 and 16) and a tiny paired one."""
    root = tmp_path_factory.mktemp("runs")
    for name, width in (("w8", 8), ("w16", 16)):
        r = run_cli(
            "train",
            *[o for o in TINY if not o.startswith("model.generator.width")],
            f"model.generator.width={width}",
            "--runs-dir",
            root,
            "--name",
            name,
            "--no-progress",
        )
        assert r.returncode == 0, r.stderr
    from test_paired_train import PAIRED

    r = run_cli("train", *PAIRED, "train.steps=1", "--runs-dir", root, "--name", "paired", "--no-progress")
    assert r.returncode == 0, r.stderr
    return root


def test_resume_refuses_a_checkpoint_of_another_config(runs, tmp_path, capsys):
    import shutil

    run = tmp_path / "w8"
    shutil.copytree(runs / "w8", run)
    shutil.copy(runs / "w16" / "checkpoints" / "last.pt", run / "checkpoints" / "last.pt")
    before = {p.name: p.read_bytes() for p in (run / "config.yaml", run / "metrics.jsonl")}
    files = sorted(str(p.relative_to(run)) for p in run.rglob("*"))
    line = one_error_line(capsys, ["train", "--resume", run, "train.steps=9", "--no-progress"])
    assert "model.generator.width (8 in config.yaml, 16 in the checkpoint)" in line, line
    assert {p.name: p.read_bytes() for p in (run / "config.yaml", run / "metrics.jsonl")} == before
    assert sorted(str(p.relative_to(run)) for p in run.rglob("*")) == files  # nothing written


def test_sample_seed_beyond_64_bits(runs, tmp_path, capsys):
    for seed in (2**64, -1):
        line = one_error_line(capsys, ["sample", runs / "w8", "--n", "2", "--out", tmp_path / "o", "--seed", seed])
        assert "--seed" in line and "2**64" in line
    assert not (tmp_path / "o").exists()


def test_translate_seed_beyond_64_bits(runs, tmp_path, capsys):
    (tmp_path / "in").mkdir()
    line = one_error_line(
        capsys, ["translate", runs / "paired", "--input", tmp_path / "in", "--out", tmp_path / "o", "--seed", 2**70]
    )
    assert "--seed" in line


def test_sample_n_beyond_the_bound_is_refused_before_generating(runs, tmp_path, capsys):
    line = one_error_line(capsys, ["sample", runs / "w8", "--n", 100_000_000, "--out", tmp_path / "o"])
    assert "--n" in line and "100000000" in line and "1,000,000" in line
    assert not (tmp_path / "o").exists()


def test_sample_writes_in_batches(runs, tmp_path, monkeypatch):
    """Images are generated and written a batch at a time: the same files as one big batch."""
    import torch
    from PIL import Image

    from normgan.inference.sample import load_generator, sample_images, write_sample_files

    write_sample_files(runs / "w8", n=7, out=tmp_path / "o", seed=3, batch_size=3)
    G, _ = load_generator(runs / "w8")
    ref = ((sample_images(G, n=7, seed=3, batch_size=3) + 1) / 2).mul(255).add(0.5).clamp(0, 255).to(torch.uint8)
    got = torch.stack(
        [torch.from_numpy(__import__("numpy").array(Image.open(tmp_path / "o" / f"{i:06d}.png"))) for i in range(7)]
    )
    got = got.permute(0, 3, 1, 2)[:, :1] if got.dim() == 4 else got[:, None]
    torch.testing.assert_close(got, ref[:, :1], atol=0, rtol=0)
    assert (tmp_path / "o" / "grid.png").is_file() and not (tmp_path / "o" / "000007.png").exists()


def test_sample_on_a_full_disk(runs, tmp_path, capsys, monkeypatch):
    with tmpfs(tmp_path / "small", "size=64k") as small:
        # 64 files of 4 KiB blocks cannot fit in 64 KiB: refused before the first file
        line = one_error_line(capsys, ["sample", runs / "w8", "--n", 64, "--out", small / "s"])
        assert f"{small / 's'}" in line and "free" in line and "--n" in line
        assert not any((small / "s").glob("*.png"))
        # past the estimate, the disk fills while writing: one line, the files before are whole PNGs
        from PIL import Image

        import normgan.inference.sample as sample

        monkeypatch.setattr(sample, "check_disk", lambda *a, **k: None)
        line = one_error_line(capsys, ["sample", runs / "w8", "--n", 64, "--out", small / "s"])
        assert "no space left" in line and f"{small / 's'}" in line
        n = int(line.split("; the ")[1].split(" files")[0])
        pngs = sorted((small / "s").glob("*.png"))
        assert 1 <= n == len(pngs) < 64
        for p in pngs:
            Image.open(p).load()  # each complete


def test_sample_out_is_a_file_or_read_only(runs, tmp_path, capsys):
    f = write(tmp_path / "f", "x")
    line = one_error_line(capsys, ["sample", runs / "w8", "--n", 2, "--out", f])
    assert str(f) in line and "--out" in line
    with tmpfs(tmp_path / "ro", "ro") as ro:
        line = one_error_line(capsys, ["sample", runs / "w8", "--n", 2, "--out", ro])
        assert str(ro) in line and "Read-only" in line


def test_translate_out_is_a_file_or_read_only(runs, tmp_path, capsys):
    import numpy as np
    from PIL import Image

    (tmp_path / "in").mkdir()
    Image.fromarray(np.zeros((8, 8), dtype=np.uint8)).save(tmp_path / "in" / "a.png")
    f = write(tmp_path / "f", "x")
    line = one_error_line(
        capsys, ["translate", runs / "paired", "--input", tmp_path / "in", "--out", f, "--no-progress"]
    )
    assert str(f) in line and "is a file" in line
    line = one_error_line(
        capsys, ["translate", runs / "paired", "--input", tmp_path / "in", "--out", f / "sub", "--no-progress"]
    )
    assert str(f / "sub") in line
    with tmpfs(tmp_path / "ro", "ro") as ro:
        line = one_error_line(
            capsys, ["translate", runs / "paired", "--input", tmp_path / "in", "--out", ro / "t", "--no-progress"]
        )
        assert str(ro / "t") in line and "Read-only" in line


def test_translate_on_a_full_disk(runs, tmp_path, capsys):
    import numpy as np
    from PIL import Image

    src = tmp_path / "in"
    src.mkdir()
    rng = np.random.default_rng(0)
    for i in range(16):  # each output takes at least one 4 KiB page of the tmpfs
        Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(src / f"{i:02d}.png")
    with tmpfs(tmp_path / "small", "size=64k") as small:
        (small / "filler").write_bytes(b"\0" * (44 * 1024))  # about 20 KiB left
        line = one_error_line(
            capsys, ["translate", runs / "paired", "--input", src, "--out", small / "t", "--no-progress"]
        )
        assert "no space left" in line and str(small / "t") in line
        n = int(line.split("; the ")[1].split(" images")[0])
        outs = sorted((small / "t").glob("*.png"))
        assert 1 <= n == len(outs) < 16
        for p in outs:
            Image.open(p).load()


def test_eval_cache_dir_is_a_file_or_read_only(runs, tmp_path, capsys):
    """Checked before the classifier is trained (a minute on CPU), not after."""
    f = write(tmp_path / "f", "x")
    line = one_error_line(capsys, ["eval", runs / "w8", "--n", 64, "--cache-dir", f])
    assert str(f) in line and "--cache-dir" in line
    with tmpfs(tmp_path / "ro", "ro") as ro:
        line = one_error_line(capsys, ["eval", runs / "w8", "--n", 64, "--cache-dir", ro / "c"])
        assert str(ro / "c") in line and "Read-only" in line


def test_eval_cache_on_a_full_disk(tmp_path, monkeypatch):
    """$NORMGAN_CACHE on a full disk: the classifier's write fails with one line, no temporary left."""
    from normgan.data import ImageData, load_dataset
    from normgan.errors import UserError
    from normgan.metrics import domain

    train = load_dataset(name="mnist5k", split="train")
    small = ImageData(
        images=train.images[:32], labels=train.labels[:32], name=train.name, fingerprint=train.fingerprint
    )
    with tmpfs(tmp_path / "small", "size=64k") as cache:
        (cache / "filler").write_bytes(b"\0" * (60 * 1024))
        with pytest.raises(
            UserError, match=r"(?s)cannot write the domain classifier cache .*no space left.*--cache-dir"
        ):
            domain.load_or_train(small, cache_dir=cache, epochs=1, seed=0)
        assert sorted(p.name for p in cache.iterdir()) == ["filler"]
