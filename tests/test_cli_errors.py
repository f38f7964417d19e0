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
        "gradient penalty on a BatchNorm D": (["train", "configs/dcgan-r1.yaml", "model.discriminator.norm=batch", "--dry-run"],
                                              "model.discriminator.norm=none"),
        "unknown key": (["train", "train.stepz=5", "--dry-run"], "train.stepz"),
        "unknown section": (["train", "trainer.steps=5", "--dry-run"], "trainer"),
        "wrong type": (["train", "train.steps=many", "--dry-run"], "train.steps"),
        "negative steps": (["train", "train.steps=-5", "--dry-run"], "train.steps"),
        "zero batch": (["train", "data.batch_size=0", "--dry-run"], "data.batch_size"),
        "bad lr": (["train", "optim.g.lr=-1", "--dry-run"], "optim.g.lr"),
        "missing folder": (["train", "data.name=folder", f"data.root={tmp_path / 'nope'}", "train.steps=1"], "nope"),
        "empty folder": (["train", "data.name=folder", f"data.root={empty}", "train.steps=1"], "no image"),
        "corrupt png strict": (["train", "data.name=folder", f"data.root={corrupt}", "data.strict=true", "train.steps=1"], "a.png"),
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
        "batch larger than data": (["train", "data.name=faces", "data.batch_size=100000", "train.steps=1", "--runs-dir", str(tmp_path / "r")], "batch_size"),
    }


CASES = [
    "regularizers as a list", "regularizers override as a list", "binary config file", "gradient penalty on a BatchNorm D",
    "unknown key", "unknown section", "wrong type", "negative steps", "zero batch", "bad lr", "missing folder", "empty folder",
    "corrupt png strict", "only corrupt png", "unknown dataset", "unknown model", "unknown loss", "unknown norm layer",
    "unsupported resolution", "missing config file", "bad yaml", "yaml not a mapping", "override without value",
    "unreadable resume path", "corrupt checkpoint", "sample from missing run", "truncated idx", "batch larger than data",
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
