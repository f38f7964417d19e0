"""benchmarks/bench_gpu.py on CPU: one small run of every section (DDP with 2 gloo processes) prints
one JSON object of the documented structure, with positive finite ratios and every figure naming its
device; a precision the config refuses is reported as not supported, with the config's message."""

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "bench_gpu.py"
# small enough for < 60 s on 2 busy CPU cores: batch 16, 1 warm-up + 6 timed steps, DDP 2 x 4 steps
FLAGS = [
    "--device",
    "cpu",
    "--quick",
    "--steps",
    "6",
    "--repeats",
    "1",
    "--warmup",
    "1",
    "--batches",
    "16",
    "--reg-batch",
    "16",
    "--threads",
    "1",
    "--ddp-procs",
    "2",
    "--ddp-batch",
    "16",
    "--ddp-steps",
    "4",
    "--no-progress",
    "--compile-cases",
    "none",
    "--only",
    "overhead,regularizers,precision,compile,ddp",
]  # ops: counted in-process below
REGULARIZERS = {"none", "r1_every_1", "r1_every_16", "wgan_gp", "spectral_d", "l0_gates", "path_length_g4", "l2_d"}
#: keys that hold a measured figure: a dict that has one must name its device
FIGURE_KEYS = {"images_per_s", "ratio", "normgan", "bare", "speedup_vs_fp32", "speedup", "efficiency", "wall_s"}


def positive_finite(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) and x > 0


def figures(obj, path="$"):
    """Every dict in the JSON tree that holds a measured figure, with its path."""
    if isinstance(obj, dict):
        if FIGURE_KEYS & set(obj):
            yield path, obj
        for k, v in obj.items():
            yield from figures(v, f"{path}.{k}")
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from figures(v, f"{path}[{i}]")


@pytest.fixture(scope="module")
def result():
    proc = subprocess.run([sys.executable, str(SCRIPT), *FLAGS], capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout)  # stdout is exactly one JSON object


def test_header_names_the_cpu(result):
    assert result["device"].startswith("cpu: ") and len(result["device"]) > len("cpu: ")
    assert result["device_type"] == "cpu"
    assert result["torch"] and result["normgan"]
    assert result["settings"]["steps"] == 6 and result["settings"]["batches"] == [16]


def test_every_figure_names_its_device(result):
    found = list(figures(result))
    assert len(found) >= 1 + len(REGULARIZERS) + 2 + 1 + 1  # overhead, regularizers, fp32 + bf16, compile, ddp
    for path, fig in found:
        assert fig.get("device") == result["device"], path
    for section in ("overhead", "regularizers", "precision", "compile", "ddp"):
        assert result[section], section


def test_overhead(result):
    o = result["overhead"]
    assert set(o) == {"16"}
    fig = o["16"]
    assert fig["batch_size"] == 16
    for key in ("normgan", "bare", "ratio"):
        assert positive_finite(fig[key]), key
    assert fig["ratio"] == pytest.approx(fig["normgan"] / fig["bare"], rel=0.01)
    # 6 steps logged every 50: one logged interval only (the first, dropped) → no steady figure
    assert fig["normgan_steady"] is None and fig["ratio_steady"] is None


def test_regularizers(result):
    r = result["regularizers"]
    assert set(r) == REGULARIZERS
    for name, fig in r.items():
        assert positive_finite(fig["ratio"]) and positive_finite(fig["images_per_s"]), name
        assert fig["batch_size"] == 16
    assert r["none"]["ratio"] == 1.0


def test_precision(result):
    p = result["precision"]["16"]
    assert set(p) == {"fp32", "bf16", "fp16"}
    assert p["fp32"]["speedup_vs_fp32"] == 1.0
    for prec in ("fp32", "bf16"):
        assert p[prec]["supported"] is True
        assert positive_finite(p[prec]["images_per_s"]) and positive_finite(p[prec]["speedup_vs_fp32"]), prec
    # fp16: accepted by the config (not timed in --quick on CPU) or "not supported" with a reason
    assert isinstance(p["fp16"]["supported"], bool)
    assert p["fp16"].get("skipped") or p["fp16"].get("reason") or positive_finite(p["fp16"].get("images_per_s"))


def test_compile(result):
    c = result["compile"]
    assert set(c) == {"none"}
    fig = c["none"]
    assert fig["batch_size"] == 16 and fig["spec"] == {"regularizers": {}, "constraints": {}}
    for key in ("speedup", "eager_images_per_s", "compiled_images_per_s"):
        assert positive_finite(fig[key]), key
    assert fig["speedup"] == pytest.approx(fig["compiled_images_per_s"] / fig["eager_images_per_s"], rel=0.01)
    assert set(fig["first_step_s"]) == {"eager", "compiled"} and all(
        positive_finite(v) for v in fig["first_step_s"].values()
    )


def test_ddp_two_gloo_processes(result):
    d = result["ddp"]
    assert "skipped" not in d and "error" not in d, d
    assert d["backend"] == "gloo" and d["procs"] == 2 and d["global_batch"] == 16 and d["steps"] == 4
    assert set(d["wall_s"]) == {"1", "2"} and all(positive_finite(t) for t in d["wall_s"].values())
    assert positive_finite(d["efficiency"])
    assert d["efficiency"] == pytest.approx(d["wall_s"]["1"] / d["wall_s"]["2"] / 2, rel=0.01)
    assert positive_finite(d["efficiency_steady_state"])
    assert "--nproc_per_node=2" in d["command"]


def test_a_refused_precision_is_reported_as_not_supported(monkeypatch, tmp_path):
    """fp16 refused by the config: "not supported" with the ConfigError's message, fp32/bf16 still timed."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    monkeypatch.chdir(tmp_path)
    try:
        import bench_gpu
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    from normgan.errors import ConfigError

    real = bench_gpu.load_config

    def load_config(path, overrides=()):
        if "train.precision=fp16" in overrides:
            raise ConfigError("train.precision: bad value 'fp16'; use fp32 or bf16")
        return real(path, overrides=overrides)

    monkeypatch.setattr(bench_gpu, "load_config", load_config)
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the subprocess runs (2 threads on a busy 2-core machine crawl)
    try:
        out = bench_gpu.bench_precision(
            torch.device("cpu"), [8], ["bf16", "fp16"], steps=2, warmup=1, repeats=1, chunk=16
        )
    finally:
        torch.set_num_threads(threads)
    p = out["8"]
    assert p["fp16"]["supported"] is False
    assert p["fp16"]["reason"].startswith("not supported") and "train.precision" in p["fp16"]["reason"]
    assert p["fp16"]["device"] == bench_gpu.device_name(torch.device("cpu"))
    assert positive_finite(p["bf16"]["speedup_vs_fp32"]) and positive_finite(p["fp32"]["images_per_s"])


def _bench_module(name: str):
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        return __import__(name)
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))


def test_op_counter_counts_kernels_and_host_reads_of_known_code():
    """Closed form: a @ b + c is two kernels (mm, add); views and allocations none; .item() one host read."""
    import torch

    op_count = _bench_module("op_count")
    a, b, c = torch.randn(3, 4), torch.randn(4, 5), torch.randn(3, 5)
    with op_count.OpCounter() as k:
        y = a @ b + c
    assert k.ops["mm"] == 1 and k.ops["add"] == 1 and k.kernels == 2 and k.host_reads == 0
    with op_count.OpCounter() as k:
        y.view(15)[2:7].unsqueeze(0).expand(4, 5).detach()
        torch.empty(8)
    assert k.kernels == 0 and k.host_reads == 0
    with op_count.OpCounter() as k:
        v = y.sum().item()
    assert (
        k.kernels == 1
        and k.host_reads == 1
        and v == pytest.approx(float((a.numpy() @ b.numpy() + c.numpy()).sum()), rel=1e-5)
    )
    assert op_count.count(lambda: a @ b + c, repeats=3) == {"kernels": 2.0, "host_reads": 0.0}


def test_ops_section_counts_steps_and_normgan_reads_the_device_once_per_step(monkeypatch, tmp_path):
    """The loop's one host read per step (its finite check) holds with and without a term; a term
    adds kernels; the ratios are the documented quotients."""
    import torch

    monkeypatch.chdir(tmp_path)
    bench_gpu = _bench_module("bench_gpu")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        out = bench_gpu.bench_ops(torch.device("cpu"), 8, 8, 4, cases=("spectral_d",))
    finally:
        torch.set_num_threads(threads)
    name = bench_gpu.device_name(torch.device("cpu"))
    step = out["step"]
    assert step["device"] == name and step["normgan_host_reads"] == 1.0
    assert step["launch_bound_ratio"] == pytest.approx(step["bare_kernels"] / step["normgan_kernels"], abs=1e-3)
    regs = out["regularizers"]
    assert set(regs) == {"none", "spectral_d"}
    assert regs["none"]["launch_bound_ratio"] == 1.0 and regs["none"]["host_reads"] == 1.0
    assert regs["spectral_d"]["kernels"] > regs["none"]["kernels"] and regs["spectral_d"]["host_reads"] == 1.0
    assert regs["spectral_d"]["launch_bound_ratio"] == pytest.approx(
        regs["none"]["kernels"] / regs["spectral_d"]["kernels"], abs=1e-3
    )


def test_steady_images_per_s_is_the_images_over_the_time_of_the_logged_intervals_after_the_first(tmp_path):
    """Closed form: rows at steps 10, 20, 40 with 100 and 200 img/s over the last two intervals →
    30 steps' images in 10/100 + 20/200 = 0.2 step-seconds: 150 img/s; one row gives none."""
    bench_gpu = _bench_module("bench_gpu")
    rows = [
        {"step": 10, "images_per_s": 5.0},
        {"step": 15, "eval/fid": 1.0},
        {"step": 20, "images_per_s": 100.0},
        {"step": 40, "images_per_s": 200.0},
    ]
    path = tmp_path / "metrics.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    assert bench_gpu.steady_images_per_s(path) == pytest.approx(150.0)
    path.write_text(json.dumps(rows[0]) + "\n")
    assert bench_gpu.steady_images_per_s(path) is None


def test_overhead_section_reports_the_steady_ratio_when_the_run_logs_twice(monkeypatch, tmp_path):
    """105 timed steps logged every 50: the steady figure exists and ratio_steady is its quotient."""
    import torch

    monkeypatch.chdir(tmp_path)
    bench_gpu = _bench_module("bench_gpu")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        fig = bench_gpu.bench_overhead(torch.device("cpu"), [8], steps=105, warmup=1, repeats=1, progress=False)["8"]
    finally:
        torch.set_num_threads(threads)
    assert positive_finite(fig["normgan_steady"]) and positive_finite(fig["ratio_steady"])
    assert fig["ratio_steady"] == pytest.approx(fig["normgan_steady"] / fig["bare"], rel=0.01)
