"""``normgan export`` (issue 23): the EMA generator as a TorchScript or ONNX file that runs without
normgan, and its input contract.

Real tiny runs: an unconditional one (``l0-gates``: hard-concrete gates on G, plus spectral norm on
G, so parametrizations are baked in) and a paired one (the shipped ``edges2digit`` config, a U-Net
whose dropout is kept on at test time, which the export switches off). Each exported file is run
in a separate Python (``-I -S``, its path only the site-packages of torch, numpy and onnxruntime
without normgan; ``import normgan`` is asserted to fail there) on inputs saved to .npz files, and
its outputs are compared with the EMA generator loaded through normgan in this process, at two
batch sizes. The measured differences are printed (``pytest -s``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import TINY, run_cli

from normgan.cli import main
from normgan.config import load_config
from normgan.inference.export import contract_path
from normgan.inference.sample import load_generator
from normgan.models.layers import KeepDropout
from normgan.runtime.resources import format_bytes
from normgan.train import Trainer

REPO = Path(__file__).resolve().parents[1]
FORMATS = ("torchscript", "onnx")
BATCHES = (1, 5)
TOLERANCE = 1e-5

#: what runs the exported file: no normgan on its path (checked), only torch / onnxruntime / numpy
RUNNER = r"""
import json, sys
sys.path[:0] = [sys.argv[1]]
try:
    import normgan
except ImportError:
    print("normgan is not importable")
else:
    sys.exit(f"normgan is importable here: {normgan.__file__}")
import numpy as np
fmt, model, work = sys.argv[2:5]
names = [s["name"] for s in json.load(open(model + ".json"))["inputs"]]
if fmt == "torchscript":
    import torch
    module = torch.jit.load(model)
    def run(arrays):
        with torch.no_grad():
            return module(*[torch.from_numpy(arrays[n]) for n in names]).numpy()
else:
    import onnxruntime
    session = onnxruntime.InferenceSession(model, providers=["CPUExecutionProvider"])
    def run(arrays):
        return session.run(None, {n: arrays[n] for n in names})[0]
for batch in sys.argv[5:]:
    np.save(f"{work}/outputs-{batch}.npy", run(dict(np.load(f"{work}/inputs-{batch}.npz"))))
print("normgan modules loaded:", sorted(m for m in sys.modules if m.split(".")[0] == "normgan"))
"""


def _tiny_unconditional():
    over = [o for o in TINY if not o.startswith("regularizers")]  # keep l0-gates' L0 term: G gets gates
    return load_config("l0-gates", overrides=over + ["+constraints.sn.kind=spectral", "+constraints.sn.net=G"])


def _tiny_paired():
    over = [o for o in TINY if not o.startswith(("data.batch_size", "regularizers"))]
    return load_config(
        "edges2digit",
        overrides=over + ["data.batch_size=4", "eval.every=0", "+model.generator.options.test_dropout=true"],
    )


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("export-runs")
    return {
        "unconditional": Trainer(_tiny_unconditional(), runs_dir=root, name="u", progress=False).fit(),
        "paired": Trainer(_tiny_paired(), runs_dir=root, name="p", progress=False).fit(),
    }


@pytest.fixture(scope="module")
def exported(runs, tmp_path_factory):
    """(task, format) -> the exported file, written by ``normgan export`` (in this process)."""
    out = tmp_path_factory.mktemp("exported")
    files = {}
    for task, run in runs.items():
        for fmt in FORMATS:
            files[task, fmt] = out / f"{task}.{fmt}"
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                assert main(["export", str(run), "--format", fmt, "--out", str(files[task, fmt])]) == 0
            # torch's deprecation notices and tracer notes stay inside; only the dropout note comes out
            expected = ["test_dropout: true"] if task == "paired" else []
            assert [m for m in expected if any(m in str(w.message) for w in caught)] == expected
            assert len(caught) == len(expected), [str(w.message) for w in caught]
    return files


@pytest.fixture(scope="module")
def bare_site(tmp_path_factory):
    """A folder of links to the site-packages entries of torch, numpy and onnxruntime, without
    normgan (an editable install's finder or a regular install alike)."""
    import onnxruntime

    farm = tmp_path_factory.mktemp("bare-site")
    for module in (torch, np, onnxruntime):
        for entry in Path(module.__file__).resolve().parents[1].iterdir():
            if not entry.name.lower().startswith(("normgan", "__editable__")) and not (farm / entry.name).exists():
                (farm / entry.name).symlink_to(entry)
    return farm


def make_inputs(specs, batch: int, seed: int) -> dict:
    """Arrays for the contract's input specs: noise from N(0, 1), images uniform in their range."""
    rng = np.random.default_rng(seed)
    arrays = {}
    for s in specs:
        shape = (batch, *s["shape"][1:])
        assert s["dtype"] == "float32"
        if s.get("distribution") == "normal":
            arrays[s["name"]] = rng.standard_normal(shape).astype(np.float32)
        else:
            arrays[s["name"]] = rng.uniform(*s["range"], size=shape).astype(np.float32)
    return arrays


def run_without_normgan(bare_site: Path, fmt: str, model: Path, work: Path, inputs: dict) -> dict:
    """Save ``inputs`` (batch -> arrays), run ``model`` in a Python without normgan; batch -> outputs."""
    work.mkdir(parents=True, exist_ok=True)
    for batch, arrays in inputs.items():
        np.savez(work / f"inputs-{batch}.npz", **arrays)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")} | {"OMP_NUM_THREADS": "1"}
    args = [sys.executable, "-I", "-S", "-c", RUNNER, bare_site, fmt, model, work, *inputs]
    p = subprocess.run([str(a) for a in args], cwd=work, env=env, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    assert "normgan is not importable" in p.stdout and "normgan modules loaded: []" in p.stdout, p.stdout
    assert not str(work).startswith(str(REPO))
    return {batch: np.load(work / f"outputs-{batch}.npy") for batch in inputs}


def reference_outputs(run: Path, contract: dict, inputs: dict) -> dict:
    """The EMA generator loaded through normgan, in eval mode with test-time dropout off (as exported)."""
    G, _ = load_generator(run)
    for m in G.modules():
        if isinstance(m, KeepDropout):
            m.keep = False
    names = [s["name"] for s in contract["inputs"]]
    with torch.no_grad():
        return {b: G(*[torch.from_numpy(a[n]) for n in names]).numpy() for b, a in inputs.items()}


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("task", ["unconditional", "paired"])
def test_exported_file_reproduces_the_ema_generator_without_normgan(task, fmt, runs, exported, bare_site, tmp_path):
    model = exported[task, fmt]
    contract = json.loads(contract_path(model).read_text())
    inputs = {b: make_inputs(contract["inputs"], b, seed=b) for b in BATCHES}
    got = run_without_normgan(bare_site, fmt, model, tmp_path / "work", inputs)
    want = reference_outputs(runs[task], contract, inputs)
    diffs = {b: float(np.abs(got[b] - want[b]).max()) for b in BATCHES}
    print(f"\n{task} {fmt}: max abs difference {diffs}")
    for b in BATCHES:
        c, r = contract["image"]["channels"], contract["image"]["resolution"]
        assert got[b].shape == want[b].shape == (b, c, r, r)
        assert diffs[b] <= TOLERANCE, diffs
    assert float(np.abs(want[BATCHES[-1]]).max()) > 0  # not a constant zero image


def test_the_runs_hold_what_export_must_handle(runs):
    """Spectral norm and gates on the unconditional G, dropout kept on at test time in the paired G."""
    from torch.nn.utils import parametrize

    from normgan.functional.gates import HardConcreteGate

    G, _ = load_generator(runs["unconditional"])
    assert any(parametrize.is_parametrized(m) for m in G.modules())
    assert any(isinstance(m, HardConcreteGate) for m in G.modules())
    G, _ = load_generator(runs["paired"])
    assert any(isinstance(m, KeepDropout) and m.keep for m in G.modules())
    x = torch.rand(2, 1, 32, 32) * 2 - 1
    with torch.no_grad():
        assert not torch.equal(G(x), G(x))  # stochastic as the run keeps it; the export is not


CONTRACT_KEYS = {
    "contract",
    "format",
    "file",
    "exporter",
    "task",
    "inputs",
    "outputs",
    "z_dim",
    "classes",
    "image",
    "generator",
    "checkpoint",
    "step",
    "versions",
    "check",
}


@pytest.mark.parametrize("fmt", FORMATS)
def test_contract_of_an_unconditional_run(fmt, runs, exported):
    model = exported["unconditional", fmt]
    c = json.loads(contract_path(model).read_text())
    assert set(c) == CONTRACT_KEYS
    assert c["format"] == fmt and c["file"] == model.name and c["task"] == "unconditional" and c["contract"] == 1
    assert c["z_dim"] == 64 and c["classes"] is None and c["step"] == 6
    assert c["inputs"] == [
        {"name": "z", "shape": ["batch", 64], "dtype": "float32", "distribution": "normal", "mean": 0.0, "std": 1.0}
    ]
    assert c["outputs"] == [
        {"name": "image", "shape": ["batch", 1, 32, 32], "dtype": "float32", "range": [-1.0, 1.0], "layout": "NCHW"}
    ]
    assert c["image"] == {"channels": 1, "resolution": 32, "range": [-1.0, 1.0]}
    assert c["generator"] == {"name": "dcgan", "weights": "generator_ema", "mode": "eval", "test_dropout": False}
    assert Path(c["checkpoint"]) == (runs["unconditional"] / "checkpoints" / "last.pt").resolve()
    assert c["versions"]["normgan"] == "0.1.0" and c["versions"]["torch"] == str(torch.__version__)
    assert ("onnx" in c["versions"]) == (fmt == "onnx")
    assert c["exporter"] == (
        "torch.jit.trace" if fmt == "torchscript" else "torch.onnx.export (dynamo=False), opset 17"
    )
    assert c["check"]["batch_sizes"] == [1, 3] and c["check"]["max_abs_diff"] <= 1e-4


@pytest.mark.parametrize("fmt", FORMATS)
def test_contract_of_a_paired_run(fmt, exported):
    c = json.loads(contract_path(exported["paired", fmt]).read_text())
    assert set(c) == CONTRACT_KEYS and c["task"] == "paired" and c["step"] == 6
    assert c["z_dim"] is None and c["classes"] is None
    assert c["inputs"] == [
        {"name": "x", "shape": ["batch", 1, 32, 32], "dtype": "float32", "range": [-1.0, 1.0], "layout": "NCHW"}
    ]
    assert c["outputs"][0]["shape"] == ["batch", 1, 32, 32] and c["outputs"][0]["range"] == [-1.0, 1.0]
    assert c["generator"] == {"name": "unet", "weights": "generator_ema", "mode": "eval", "test_dropout": True}


def test_export_warns_that_test_time_dropout_is_switched_off(runs, tmp_path, capsys):
    out = tmp_path / "g.pt"
    with pytest.warns(UserWarning, match=r"test_dropout: true.*deterministic, with that dropout off"):
        assert main(["export", str(runs["paired"]), "--format", "torchscript", "--out", str(out)]) == 0
    assert capsys.readouterr().out.splitlines() == [
        f"wrote {out} (torchscript, {format_bytes(out.stat().st_size)}; step 6; inputs x [batch, 1, 32, 32])",
        f"wrote {out}.json (its input contract)",
    ]


def test_checkpoint_option_names_the_file(runs, tmp_path):
    import shutil

    ckpts = runs["unconditional"] / "checkpoints"
    shutil.copy(ckpts / "last.pt", ckpts / "other.pt")
    try:
        out = tmp_path / "g.pt"
        assert (
            main(
                [
                    "export",
                    str(runs["unconditional"]),
                    "--format",
                    "torchscript",
                    "--checkpoint",
                    "other.pt",
                    "--out",
                    str(out),
                ]
            )
            == 0
        )
        assert json.loads(contract_path(out).read_text())["checkpoint"].endswith("other.pt")
    finally:
        (ckpts / "other.pt").unlink()


def test_a_generator_of_several_inputs_exports_with_labels(tmp_path):
    """A class-conditional G(z, y) (the coming task) needs no new branch: its inputs are specs."""
    from normgan.inference.export import check_export, example_inputs, export_bytes
    from normgan.tasks.info import image_spec, noise_spec

    class ToyConditional(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = torch.nn.Embedding(10, 8)
            self.net = torch.nn.Sequential(torch.nn.Linear(16, 3 * 8 * 8), torch.nn.Tanh())

        def forward(self, z, y):
            return self.net(torch.cat([z, self.embed(y)], 1)).view(-1, 3, 8, 8)

    torch.manual_seed(0)
    G = ToyConditional().eval().requires_grad_(False)
    specs = (noise_spec(8), {"name": "y", "shape": ["batch"], "dtype": "int64", "range": [0, 9]})
    z, y = example_inputs(specs, batch=4, seed=0)
    assert y.dtype == torch.int64 and 0 <= int(y.min()) and int(y.max()) <= 9 and z.dtype == torch.float32
    with torch.no_grad():
        refs = {b: (x, G(*x)) for b in (1, 3) for x in [example_inputs(specs, batch=b, seed=b)]}
    for fmt in FORMATS:
        data = export_bytes(G, fmt=fmt, specs=specs, output=image_spec("image", channels=3, resolution=8))
        check = check_export(data, fmt=fmt, specs=specs, references=refs)
        assert check["batch_sizes"] == [1, 3] and check["max_abs_diff"] <= TOLERANCE, check


@pytest.mark.parametrize(
    "config, overrides",
    [
        ("r3gan", ["+constraints.sn.kind=spectral", "+constraints.sn.net=G"]),  # fixed-kernel resampling
        ("edges2digit", ["model.generator.name=resnet", "data.batch_size=4", "eval.every=0"]),
    ],
    ids=["r3gan", "resnet"],
)
def test_every_generator_exports_in_both_formats(config, overrides, tmp_path):
    """The export's own check (the file against G at batch sizes 1 and 3) for the other generators."""
    from normgan.inference.export import export_run

    over = [o for o in TINY if not o.startswith(("regularizers", "data.batch_size"))] + ["train.steps=1"]
    run = Trainer(load_config(config, overrides=over + overrides), runs_dir=tmp_path, name="r", progress=False).fit()
    for fmt in FORMATS:
        check = export_run(run, fmt=fmt, out=tmp_path / f"g.{fmt}")["check"]
        print(f"\n{config} {fmt}: {check}")
        assert check["batch_sizes"] == [1, 3] and check["max_abs_diff"] <= TOLERANCE, check


# ------------------------------------------------------------------------------ bad input


def one_error_line(capsys, argv) -> str:
    rc = main([str(a) for a in argv])
    err = capsys.readouterr().err
    assert rc == 2, (rc, err[-2000:])
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("normgan: error:"), err
    return lines[0]


def nothing_written(out: Path) -> bool:
    return not out.exists() and not contract_path(out).exists()


def test_missing_run_folder(tmp_path, capsys):
    out = tmp_path / "g.pt"
    line = one_error_line(capsys, ["export", tmp_path / "no-run", "--format", "torchscript", "--out", out])
    assert "no-run" in line and "does not exist" in line and nothing_written(out)


def test_run_stopped_before_its_first_checkpoint(runs, tmp_path, capsys):
    import shutil

    run = tmp_path / "early"
    run.mkdir()
    shutil.copy(runs["unconditional"] / "config.yaml", run / "config.yaml")
    (run / "checkpoints").mkdir()
    out = tmp_path / "g.onnx"
    line = one_error_line(capsys, ["export", run, "--format", "onnx", "--out", out])
    assert "checkpoints/last.pt" in line and "before its first checkpoint" in line and nothing_written(out)


def test_missing_best_checkpoint(runs, tmp_path, capsys):
    out = tmp_path / "g.pt"
    argv = ["export", runs["unconditional"], "--format", "torchscript", "--checkpoint", "best.pt", "--out", out]
    line = one_error_line(capsys, argv)
    assert "checkpoints/best.pt" in line and nothing_written(out)


def test_unknown_format(runs, tmp_path, capsys):
    out = tmp_path / "g.tflite"
    line = one_error_line(capsys, ["export", runs["unconditional"], "--format", "tflite", "--out", out])
    assert "--format" in line and "'tflite'" in line and "torchscript or onnx" in line and nothing_written(out)


def test_out_is_a_folder_or_below_a_file(runs, tmp_path, capsys):
    line = one_error_line(capsys, ["export", runs["unconditional"], "--format", "torchscript", "--out", tmp_path])
    assert f"'{tmp_path}' is a folder" in line
    f = tmp_path / "f"
    f.write_text("x")
    line = one_error_line(capsys, ["export", runs["unconditional"], "--format", "torchscript", "--out", f / "g.pt"])
    assert "--out" in line and str(f) in line and "is a file" in line
    assert f.read_text() == "x"


def test_out_is_the_checkpoint_itself(runs, capsys):
    ckpt = runs["unconditional"] / "checkpoints" / "last.pt"
    before = ckpt.read_bytes()
    line = one_error_line(capsys, ["export", runs["unconditional"], "--format", "torchscript", "--out", ckpt])
    assert "is the checkpoint being exported" in line and ckpt.read_bytes() == before


def test_out_on_a_read_only_file_system(runs, tmp_path, capsys):
    from faults import tmpfs

    with tmpfs(tmp_path / "ro", "ro") as ro:
        line = one_error_line(capsys, ["export", runs["unconditional"], "--format", "onnx", "--out", ro / "g.onnx"])
        assert str(ro) in line and "Read-only" in line and "--out" in line
        assert not any(ro.iterdir())


def test_onnx_without_the_onnx_package(runs, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnx", None)  # import onnx raises ImportError
    out = tmp_path / "g.onnx"
    line = one_error_line(capsys, ["export", runs["unconditional"], "--format", "onnx", "--out", out])
    assert "'onnx' package" in line and "pip install 'normgan[export]'" in line and nothing_written(out)
    # TorchScript needs no more than torch
    assert main(["export", str(runs["unconditional"]), "--format", "torchscript", "--out", str(tmp_path / "g.pt")]) == 0


def test_a_failed_write_leaves_no_partial_file_and_keeps_the_previous_one(runs, tmp_path, capsys, monkeypatch):
    import normgan.inference.export as export

    out = tmp_path / "g.pt"
    out.write_bytes(b"previous")

    def full_disk(src, dst):
        raise OSError(28, "No space left on device", str(dst))

    monkeypatch.setattr(export.os, "replace", full_disk)
    line = one_error_line(capsys, ["export", runs["unconditional"], "--format", "torchscript", "--out", out])
    assert "no space left" in line and str(out) in line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["g.pt"] and out.read_bytes() == b"previous"


# ------------------------------------------------------------------------------ a fresh machine


def test_train_then_export_on_a_fresh_machine(tmp_path, bare_site):
    """Empty HOME, cache and TORCH_HOME: ``normgan train`` tiny, then ``normgan export`` to both
    formats (paths given as ``~/...``), each file run without normgan; no cache is made."""
    home, cwd = tmp_path / "home", tmp_path / "cwd"
    for d in (home, cwd, tmp_path / "xdg", tmp_path / "torch"):
        d.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("NORMGAN_CACHE", "HOME", "XDG_CACHE_HOME", "TORCH_HOME")}
    env |= {
        "HOME": str(home),
        "XDG_CACHE_HOME": str(tmp_path / "xdg"),
        "TORCH_HOME": str(tmp_path / "torch"),
        "NORMGAN_OFFLINE": "1",
        "PYTHONPATH": os.pathsep.join([str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])]),
    }
    p = run_cli("train", *TINY, "--runs-dir", "~/runs", "--name", "a", "--no-progress", env=env, cwd=cwd, timeout=600)
    assert p.returncode == 0, p.stderr
    for fmt, name in (("torchscript", "g.pt"), ("onnx", "g.onnx")):
        p = run_cli("export", "~/runs/a", "--format", fmt, "--out", f"~/exported/{name}", env=env, cwd=cwd)
        assert p.returncode == 0 and "Traceback" not in p.stderr and not p.stderr.strip(), p.stderr
        model = home / "exported" / name
        contract = json.loads(contract_path(model).read_text())
        assert contract["step"] == 6 and contract["z_dim"] == 64
        inputs = {b: make_inputs(contract["inputs"], b, seed=10 + b) for b in BATCHES}
        got = run_without_normgan(bare_site, fmt, model, tmp_path / f"work-{fmt}", inputs)
        want = reference_outputs(home / "runs" / "a", contract, inputs)
        assert max(float(np.abs(got[b] - want[b]).max()) for b in BATCHES) <= TOLERANCE
    assert not (home / ".cache").exists() and not (cwd / "~").exists()
