"""Streaming image folders (normgan.data.stream): the same batches as in memory, exact resume, errors."""

from __future__ import annotations

import multiprocessing
import warnings

import numpy as np
import pytest
import torch
from conftest import TINY
from PIL import Image

from normgan import Trainer, load_config
from normgan.data import FileSplit, StreamBatches, apply_fold, list_split, load_dataset, should_stream
from normgan.data.batches import EpochBatches
from normgan.data.stream import FileImages
from normgan.errors import ConfigError, DataError
from normgan.tasks.builtin import UnconditionalTask

CPU = torch.device("cpu")
R = 32


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """40 random RGB PNGs of varied sizes in two class sub-folders (the train split has 36)."""
    root = tmp_path_factory.mktemp("imgs")
    rng = np.random.default_rng(0)
    for i in range(40):
        h, w = int(rng.integers(20, 60)), int(rng.integers(20, 60))
        sub = root / ("cats" if i % 3 else "dogs")
        sub.mkdir(exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(sub / f"{i:03d}.png")
    return root


def memory_and_stream(root, *, channels=3, batch_size=8, seed=3, workers=0):
    mem = load_dataset(name="folder", root=root, resolution=R, channels=channels, split="train", holdout=0.1)
    split = list_split(root, resolution=R, channels=channels, split="train", holdout=0.1)
    eb = EpochBatches(mem.images, batch_size=batch_size, seed=seed, device=CPU)
    sb = StreamBatches(split, batch_size=batch_size, seed=seed, device=CPU, workers=workers)
    return mem, split, eb, sb


@pytest.mark.parametrize("workers", [0, 2])
def test_stream_equals_memory_over_epochs(folder, workers):
    mem, split, eb, sb = memory_and_stream(folder, workers=workers)
    assert len(split) == len(mem) == 36 and split.channels == 3 and split.resolution == R
    assert torch.equal(split.labels, mem.labels)
    with sb:
        for _ in range(3 * 36 // 8 + 1):  # 4 batches an epoch: crosses three reshuffles
            a, b = eb.next(), sb.next()
            assert b.dtype == torch.float32 and b.shape == (8, 3, R, R)
            assert torch.equal(a, b)
        # prefetched batches do not move the consumed position
        sa, sb_state = eb.state_dict(), sb.state_dict()
        assert sa["pos"] == sb_state["pos"] and torch.equal(sa["perm"], sb_state["perm"])
        assert torch.equal(sa["generator"], sb_state["generator"])
    assert not multiprocessing.active_children()  # close() stopped the workers


def test_stream_resume_is_exact(folder):
    _, split, _, full = memory_and_stream(folder, workers=2)
    first = StreamBatches(split, batch_size=8, seed=3, device=CPU, workers=2)
    for _ in range(5):
        assert torch.equal(full.next(), first.next())
    state = first.state_dict()
    first.close()
    resumed = StreamBatches(split, batch_size=8, seed=99, device=CPU, workers=2)
    resumed.load_state_dict(state)
    for _ in range(7):
        assert torch.equal(full.next(), resumed.next())
    # loading a state into a running stream restarts it from there
    full.load_state_dict(state)
    again = StreamBatches(split, batch_size=8, seed=3, device=CPU, workers=0)
    again.load_state_dict(state)
    assert torch.equal(full.next(), again.next())
    for s in (full, resumed, again):
        s.close()
    assert not multiprocessing.active_children()


@pytest.mark.parametrize("world,workers", [(2, 0), (4, 2)])
def test_each_rank_decodes_only_its_rows_of_the_global_batch(folder, world, workers, monkeypatch):
    """rank r of W yields rows r·B/W … of the in-memory global batch, decodes only those files,
    and holds the same index-stream state as one process; a rank resumes exactly."""
    _, split, eb, _ = memory_and_stream(folder, workers=0)
    decoded = []
    if workers == 0:  # in-process decoding: record which files are read
        get = FileImages.__getitem__
        monkeypatch.setattr(FileImages, "__getitem__", lambda self, i: (decoded.append(i), get(self, i))[1])
    ranks = [
        StreamBatches(split, batch_size=8, seed=3, device=CPU, workers=workers, rank=r, world=world)
        for r in range(world)
    ]
    n = 8 // world
    for step in range(10):  # 4 global batches an epoch: crosses two reshuffles
        want_idx = eb.fork().draw()
        want = eb.next()
        for r, sb in enumerate(ranks):
            decoded.clear()
            got = sb.next()
            assert got.shape == (n, 3, R, R)
            assert torch.equal(got, want[r * n : (r + 1) * n]), (step, r)
            if workers == 0:
                assert decoded == want_idx[r * n : (r + 1) * n].tolist()
    states = [sb.state_dict() for sb in ranks]
    for st in states:
        assert st["pos"] == eb.state_dict()["pos"] and torch.equal(st["perm"], eb.state_dict()["perm"])
        assert torch.equal(st["generator"], eb.state_dict()["generator"])
    resumed = StreamBatches(split, batch_size=8, seed=0, device=CPU, workers=workers, rank=world - 1, world=world)
    resumed.load_state_dict(states[-1])
    for _ in range(3):
        assert torch.equal(resumed.next(), eb.next()[(world - 1) * n :])
    for sb in (*ranks, resumed):
        sb.close()
    with pytest.raises(ConfigError, match="does not split over 3"):
        StreamBatches(split, batch_size=8, seed=3, device=CPU, rank=0, world=3)


def test_file_image_array_decodes_what_is_indexed(folder):
    mem = load_dataset(name="folder", root=folder, resolution=R, channels=3, split="test", holdout=0.5)
    split = list_split(folder, resolution=R, channels=3, split="test", holdout=0.5)
    images = split.images
    assert images.shape == mem.images.shape and len(images) == len(mem) == 20 and images.dtype == torch.uint8
    idx = torch.tensor([7, 0, 19, 7])
    assert torch.equal(images[idx], mem.images[idx])
    assert torch.equal(images[[3, 4]], mem.images[[3, 4]])
    assert torch.equal(images[2:9:3], mem.images[2:9:3])
    assert torch.equal(images[-1], mem.images[-1]) and torch.equal(images[torch.tensor(5)], mem.images[5])
    assert images[idx[:0]].shape == (0, 3, R, R)
    with pytest.raises(IndexError):
        images[20]


def test_streamed_folder_is_evaluated_without_loading_it(folder, monkeypatch):
    """The reference of a streamed run is the file list; its scores equal the in-memory ones."""
    from normgan.eval.evaluation import PeriodicEvaluator, reference_dataset

    over = [*TINY, "data.name=folder", f"data.root={folder}", "data.channels=3", "data.holdout=0.5"]
    cfg_on, cfg_off = (load_config(overrides=[*over, f"data.stream={v}"]) for v in ("true", "false"))
    for split in ("train", "test"):
        on, off = reference_dataset(cfg_on, split), reference_dataset(cfg_off, split)
        assert isinstance(on, FileSplit) and len(on) == len(off) == 20
        assert torch.equal(on.images[torch.arange(20)], off.images) and torch.equal(on.labels, off.labels)
    folds = ["data.folds=2", "data.fold=1"]
    on = reference_dataset(load_config(overrides=[*over, *folds, "data.stream=true"]), "test")
    off = reference_dataset(load_config(overrides=[*over, *folds, "data.stream=false"]), "test")
    assert isinstance(on, FileSplit) and torch.equal(on.images[torch.arange(len(on))], off.images)

    torch.manual_seed(0)
    extractor = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, stride=2), torch.nn.Flatten(), torch.nn.LazyLinear(6))
    extractor(torch.zeros(1, 3, R, R))
    import normgan.data

    loaded = []
    load = normgan.data.load_dataset
    monkeypatch.setattr(normgan.data, "load_dataset", lambda **kw: (loaded.append(kw["split"]), load(**kw))[1])
    scores = []
    G = torch.nn.Sequential(torch.nn.Linear(8, 3 * R * R), torch.nn.Tanh(), torch.nn.Unflatten(1, (3, R, R)))
    G.z_dim = 8
    for cfg, want in ((cfg_on, []), (cfg_off, ["test"])):
        ev = PeriodicEvaluator(cfg, n=10, metrics=("fid", "kid", "pr"), extractor=extractor, batch_size=4)
        assert loaded == want  # streamed: nothing loaded (the in-memory one shows the probe works)
        scores.append(ev(G))
    for key in ("fid", "fid_floor", "kid_mean", "precision", "recall"):
        assert scores[0][key] == pytest.approx(scores[1][key], rel=1e-9, abs=1e-12), key
    from normgan.search.runner import train_size  # a search's fold sizes: listed, not loaded

    loaded.clear()
    assert train_size(cfg_on) == 20 and loaded == []


def test_stream_follows_outside_draws_and_next_indices(folder):
    _, _, eb, sb = memory_and_stream(folder, workers=0)
    assert torch.equal(eb.next(), sb.next())
    for b in (eb, sb):  # someone else draws from the batch generator (as a paired task's jitter does)
        torch.rand(3, generator=b.generator)
    assert torch.equal(eb.next_indices(), sb.next_indices())
    for _ in range(6):
        assert torch.equal(eb.next(), sb.next())
    # a draw while the loader runs: its lookahead is out of step at the next reshuffle and restarts
    starts = []
    start = sb._start
    sb._start = lambda cursor: (starts.append(cursor.pos), start(cursor))
    for b in (eb, sb):
        torch.rand(3, generator=b.generator)
    for _ in range(6):
        assert torch.equal(eb.next(), sb.next())
    assert len(starts) == 1
    sb.close()


def test_folds_and_task_stream(folder):
    mem = load_dataset(name="folder", root=folder, resolution=R, channels=3, split="train", holdout=0.1)
    split = list_split(folder, resolution=R, channels=3, split="train", holdout=0.1)
    fit_mem, fit = apply_fold(mem, folds=2, fold=1, part="fit"), split.fold(folds=2, fold=1, part="fit")
    assert isinstance(fit, FileSplit) and len(fit) == len(fit_mem) == 18
    images = FileImages(fit)
    assert torch.equal(torch.stack([images[i][1] for i in range(len(fit))]), fit_mem.images)
    with pytest.raises(ConfigError, match="data.folds"):
        split.fold(folds=5, fold=0, part="fit")
    # the task: streaming with folds gives the in-memory batches
    over = [
        *TINY,
        "data.name=folder",
        f"data.root={folder}",
        "data.channels=3",
        "data.folds=2",
        "data.fold=1",
        "data.workers=0",
    ]
    on = UnconditionalTask(load_config(overrides=[*over, "data.stream=true"]), device=CPU)
    off = UnconditionalTask(load_config(overrides=[*over, "data.stream=false"]), device=CPU)
    assert (
        on.streaming and not off.streaming and (on.channels, on.resolution) == (off.channels, off.resolution) == (3, R)
    )
    for _ in range(4):
        assert torch.equal(on.next_batch().real, off.next_batch().real)
    on.close()


def test_channels_probe(tmp_path):
    rng = np.random.default_rng(1)
    grey, mixed = tmp_path / "grey", tmp_path / "mixed"
    for i in range(12):
        for root, colour in ((grey, False), (mixed, i == 0)):
            root.mkdir(exist_ok=True)
            shape = (30, 30, 3) if colour else (30, 30)
            Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8)).save(root / f"{i:02d}.png")
    with pytest.warns(UserWarning, match="grey"):
        s = list_split(grey, resolution=R, split="all")
    m = list_split(mixed, resolution=R, split="all")
    for split, root in ((s, grey), (m, mixed)):
        mem = load_dataset(name="folder", root=root, resolution=R, split="all")
        assert split.channels == mem.channels
        images = FileImages(split)
        assert torch.equal(torch.stack([images[i][1] for i in range(len(split))]), mem.images)
    assert (s.channels, m.channels) == (1, 3)


def test_unreadable_file_is_one_line_data_error(tmp_path):
    rng = np.random.default_rng(2)
    for i in range(10):
        Image.fromarray(rng.integers(0, 256, (24, 24, 3), dtype=np.uint8)).save(tmp_path / f"{i:02d}.png")
    (tmp_path / "x.png").write_bytes(b"this is not a png at all")
    split = list_split(tmp_path, resolution=R, channels=3, split="all")  # listed: nothing is decoded yet
    assert len(split) == 11
    for workers in (0, 1):
        sb = StreamBatches(split, batch_size=11, seed=0, device=CPU, workers=workers)
        with pytest.raises(DataError) as err:
            sb.next()
        msg = str(err.value)
        assert "x.png" in msg and "\n" not in msg and "streaming" in msg
    # the header probe (data.channels null) reads the first files and names a bad one too
    probe = tmp_path / "probe"
    probe.mkdir()
    (probe / "a.png").write_bytes(b"garbage")
    Image.fromarray(rng.integers(0, 256, (24, 24), dtype=np.uint8)).save(probe / "b.png")
    with pytest.raises(DataError, match="a.png"):
        list_split(probe, resolution=R, split="all")
    assert not multiprocessing.active_children()


def test_config_and_auto_rule(folder, monkeypatch):
    base = ["data.name=folder", f"data.root={folder}"]
    with pytest.raises(ConfigError, match="data.stream") as err:
        load_config(overrides=[*base, "data.stream=maybe"])
    assert "\n" not in str(err.value)
    with pytest.raises(ConfigError, match="streaming is for data.name=folder") as err:
        load_config(overrides=["data.name=mnist5k", "data.stream=true"])
    assert "\n" not in str(err.value)
    with pytest.raises(ConfigError, match="data.workers"):
        load_config(overrides=[*base, "data.workers=-1"])
    # YAML booleans in the str field are normalised
    assert load_config(base={"data": {"name": "folder", "root": str(folder), "stream": True}}).data.stream == "true"
    assert load_config(base={"data": {"name": "folder", "root": str(folder), "stream": False}}).data.stream == "false"
    assert load_config(overrides=[*base, "data.stream=True"]).data.stream == "true"
    assert load_config(overrides=base).data.stream == "auto"
    # auto: 40 files × 3 × 32² = 122880 bytes against a quarter of the free memory
    need = 40 * 3 * R * R
    with pytest.warns(UserWarning, match="data.stream=auto"):
        assert should_stream("auto", name="folder", root=folder, resolution=R, available=4 * need - 1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert not should_stream("auto", name="folder", root=folder, resolution=R, available=4 * need)
        assert not should_stream("auto", name="mnist5k", root=None, resolution=R, available=1)
        assert should_stream("true", name="folder", root=folder, resolution=R)
        assert not should_stream("false", name="folder", root=folder, resolution=R, available=1)
        monkeypatch.setattr("normgan.data.stream.available_memory", lambda: None)
        assert not should_stream("auto", name="folder", root=folder, resolution=R)  # unknown: never


def test_trainer_stream_equals_memory_and_resumes(folder, tmp_path):
    over = [
        *TINY,
        "data.name=folder",
        f"data.root={folder}",
        "data.channels=3",
        "train.steps=4",
        "train.checkpoint_every=2",
    ]

    def cfg(*extra):
        return load_config(overrides=[*over, *extra])

    mem = Trainer(cfg("data.stream=false"), runs_dir=tmp_path, name="mem", progress=False)
    mem.fit()
    streamed = Trainer(cfg("data.stream=true", "data.workers=2"), runs_dir=tmp_path, name="stream", progress=False)
    assert streamed.task.streaming and not mem.task.streaming
    streamed.fit()
    half = Trainer(
        cfg("data.stream=true", "data.workers=2", "train.steps=2"), runs_dir=tmp_path, name="half", progress=False
    )
    half.fit()
    half.task.close()
    resumed = Trainer.resume(tmp_path / "half", overrides=["train.steps=4"], progress=False)
    assert resumed.step == 2 and resumed.task.streaming
    resumed.fit()
    for other in (streamed, resumed):
        for a, b in ((mem.G, other.G), (mem.D, other.D), (mem.G_ema, other.G_ema)):
            sa, sb = a.state_dict(), b.state_dict()
            for k in sa:
                torch.testing.assert_close(sa[k], sb[k], rtol=0, atol=0, msg=k)
    for t in (streamed, resumed):
        t.task.close()
    assert not multiprocessing.active_children()
