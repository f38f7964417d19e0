"""A small domain classifier: the offline feature extractor for FID/KID/PR/IS.

The standard Inception weights must be downloaded; a CNN trained on the dataset's own labels is
the offline alternative (REFERENCE.md, "Metrics").  Its features are the 128-d penultimate layer
(ReLU activations after global average pooling), its logits feed the Inception Score.

Numbers from this extractor are comparable only with numbers from the *same* classifier (same
dataset, fingerprint, architecture version): report them as "domain FID", never next to
Inception FID.

Training (:func:`train_domain_classifier`): the TRAIN split only, Adam with a cosine learning
rate, random shifts of up to 2 px as augmentation, cross-entropy; deterministic given ``seed``
(RNG forked, so the caller's global RNG is untouched).  Held-out accuracy is measured on a
separate split (normally the dataset's TEST split) and stored as ``heldout_accuracy``.

Cache (:func:`load_or_train`): ``cache_dir/domain-<train fingerprint>.pt`` holds
``{"state_dict", "meta"}`` with meta = num_classes, channels, resolution, heldout_accuracy,
fingerprint, arch version, epochs, seed, train_seconds.  It is written atomically (temporary file
then ``os.replace``) and read with ``torch.load(weights_only=True)``.  A cache file that cannot
be read or does not match (architecture version, channels, resolution, fingerprint) is replaced
by retraining, with a warning.  Epochs and seed are not part of the key: the first classifier
trained for a fingerprint is reused.

Unlabelled datasets are not supported: :func:`train_domain_classifier` raises a ``UserError``
suggesting ``--features inception`` or a ``package.module:ClassName`` extractor.
"""

from __future__ import annotations

import math
import os
import tempfile
import time
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from normgan.errors import DataError, UserError
from normgan.runtime.paths import check_writable_dir, write_error

__all__ = ["DomainClassifier", "train_domain_classifier", "load_or_train", "domain_classifier", "ARCH_VERSION"]

ARCH_VERSION = 1
DEFAULT_EPOCHS = 6
DEFAULT_WIDTH = 16


def _to_float(images: Tensor) -> Tensor:
    """uint8 [0, 255] -> float32 [-1, 1] (same mapping as ``normgan.data.batch_to_float``)."""
    if images.dtype == torch.uint8:
        return images.float().div_(127.5).sub_(1.0)
    return images.float()


class DomainClassifier(nn.Module):
    """Three conv blocks (conv3x3-BN-ReLU, max-pool between) -> global average pool -> 128-d -> linear.

    ``forward(x)`` returns the ``(B, num_features)`` penultimate features for float images in
    ``[-1, 1]`` of shape ``(B, channels, H, W)``; inputs of another size are resized (bilinear,
    antialiased) to the training ``resolution``.  ``logits(x)`` returns ``(B, num_classes)``.
    """

    name = "domain"

    def __init__(
        self,
        *,
        channels: int,
        num_classes: int,
        resolution: int,
        width: int = DEFAULT_WIDTH,
        num_features: int = 128,
        dropout: float = 0.3,
    ) -> None:
        super().__init__()
        self.channels, self.num_classes, self.resolution = int(channels), int(num_classes), int(resolution)
        self.num_features, self.width = int(num_features), int(width)

        def block(cin: int, cout: int) -> nn.Sequential:
            return nn.Sequential(
                nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)
            )

        self.body = nn.Sequential(
            block(self.channels, width),
            nn.MaxPool2d(2),
            block(width, 2 * width),
            nn.MaxPool2d(2),
            block(2 * width, self.num_features),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(self.num_features, self.num_classes)
        self.heldout_accuracy: float | None = None
        self.fingerprint: str | None = None
        self.from_cache = False
        self.train_seconds: float | None = None

    def _prepare(self, x: Tensor) -> Tensor:
        if x.ndim != 4 or x.shape[1] != self.channels:
            raise UserError(
                f"domain features expect images of shape (B, {self.channels}, H, W), got {tuple(x.shape)}; "
                f"generate images with the dataset's channel count"
            )
        if x.shape[-2:] != (self.resolution, self.resolution):
            x = F.interpolate(
                x, size=(self.resolution, self.resolution), mode="bilinear", antialias=True, align_corners=False
            )
        return x

    def forward(self, x: Tensor) -> Tensor:
        return self.body(self._prepare(x))

    def logits(self, x: Tensor) -> Tensor:
        return self.head(self.forward(x))

    def features_and_logits(self, x: Tensor) -> tuple[Tensor, Tensor]:
        f = self.forward(x)
        return f, self.head(f)


def _random_shift(x: Tensor, max_shift: int, generator: torch.Generator) -> Tensor:
    """Shift each image by an independent integer offset in [-max_shift, max_shift] (edge-replicated)."""
    b, _, h, w = x.shape
    p = F.pad(x, (max_shift,) * 4, mode="replicate")
    dy = torch.randint(0, 2 * max_shift + 1, (b,), generator=generator)
    dx = torch.randint(0, 2 * max_shift + 1, (b,), generator=generator)
    rows = (dy[:, None] + torch.arange(h))[:, :, None]  # (B, H, 1)
    cols = (dx[:, None] + torch.arange(w))[:, None, :]  # (B, 1, W)
    out = p[torch.arange(b)[:, None, None], :, rows, cols]  # (B, H, W, C)
    return out.permute(0, 3, 1, 2).contiguous()


@torch.inference_mode()
def _accuracy(model: DomainClassifier, images: Tensor, labels: Tensor, *, batch_size: int, device) -> float:
    model.eval()
    correct = 0
    for s in range(0, len(images), batch_size):
        x = _to_float(images[s : s + batch_size]).to(device)
        pred = model.logits(x).argmax(1).cpu()
        correct += int((pred == labels[s : s + batch_size]).sum())
    return correct / max(1, len(images))


def _check_labels(data, what: str) -> None:
    if getattr(data, "labels", None) is None:
        raise UserError(
            f"the domain feature extractor needs class labels but dataset {getattr(data, 'name', '?')!r} ({what}) has none; "
            f"use --features inception or an import path package.module:ClassName"
        )


def train_domain_classifier(
    train,
    *,
    heldout=None,
    epochs: int = DEFAULT_EPOCHS,
    batch_size: int = 64,
    lr: float = 3e-3,
    width: int = DEFAULT_WIDTH,
    seed: int = 0,
    device="cpu",
    progress: bool | None = False,
) -> DomainClassifier:
    """Train a :class:`DomainClassifier` on ``train`` (an ``ImageData`` with labels).

    ``heldout`` (normally the TEST split) gives ``heldout_accuracy``; without it the attribute is
    ``None``.  Adam (lr ``lr``, cosine decay to 0 over all steps), batch ``batch_size``, random
    2-px shifts.  Deterministic given ``seed`` on a fixed device and thread count.  Gradients
    are enabled inside (``torch.enable_grad``, ``inference_mode(False)``), so it works when
    called under ``torch.no_grad()`` or ``torch.inference_mode()``.  ``progress``: a bar over
    the steps on stderr (True, False, or None: when stderr is a terminal).
    """
    from normgan.metrics import progress as prog

    _check_labels(train, "train split")
    if len(train) < 2:
        raise DataError(f"dataset {train.name!r} has {len(train)} training images; the domain classifier needs more")
    labels = train.labels.long()
    num_classes = int(labels.max()) + 1
    t0 = time.perf_counter()
    # training needs autograd even when the caller runs under torch.no_grad() or inference_mode()
    # (e.g. an evaluation that finds no cached classifier): switch both back on here
    with torch.inference_mode(False), torch.enable_grad(), torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        gen = torch.Generator().manual_seed(seed)
        model = DomainClassifier(
            channels=train.channels, num_classes=num_classes, resolution=train.resolution, width=width
        ).to(device)
        opt, sched, total = _cosine_adam(model, lr=lr, total=max(1, epochs * math.ceil(len(train) / batch_size)))
        model.train()
        bar = prog.bar(total=total, desc="domain classifier", unit="step", progress=progress, delay=0.0)
        for _ in range(epochs):
            _train_epoch(model, train, gen=gen, opt=opt, sched=sched, bar=bar, batch_size=batch_size, device=device)
        bar.close()
    model.eval()
    model.train_seconds = time.perf_counter() - t0
    model.fingerprint = getattr(train, "fingerprint", None)
    if heldout is not None:
        _check_labels(heldout, "held-out split")
        model.heldout_accuracy = _accuracy(model, heldout.images, heldout.labels.long(), batch_size=500, device=device)
    model.train_meta = {"epochs": int(epochs), "seed": int(seed)}
    return model


def _cosine_adam(model, *, lr: float, total: int) -> tuple:
    """``(Adam, scheduler, total)``: Adam at ``lr`` with a cosine decay to 0 over ``total`` steps."""
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda i: 0.5 * (1 + math.cos(math.pi * min(i, total) / total)))
    return opt, sched, total


def _train_epoch(model, train, *, gen, opt, sched, bar, batch_size: int, device) -> None:
    """One epoch of the domain classifier: a shuffle drawn from ``gen``, then one Adam and scheduler step per
    batch of at least 2 images (randomly shifted by up to 2 px, drawn from ``gen``), advancing ``bar``."""
    labels = train.labels.long()
    perm = torch.randperm(len(train), generator=gen)
    for s in range(0, len(train), batch_size):
        idx = perm[s : s + batch_size]
        if len(idx) < 2:  # BatchNorm needs > 1 sample
            continue
        x = _random_shift(_to_float(train.images[idx]), 2, gen).to(device)
        y = labels[idx].to(device)
        loss = F.cross_entropy(model.logits(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        bar.update(1)


#: the fix named when the classifier cache cannot be written
CACHE_FIX = "free some space, or give a writable folder with --cache-dir or $NORMGAN_CACHE"


def cache_path(cache_dir, fingerprint: str) -> Path:
    """``cache_dir/domain-<fingerprint>.pt``."""
    return Path(cache_dir).expanduser() / f"domain-{fingerprint}.pt"


def _save(model: DomainClassifier, path: Path) -> None:
    meta = {
        "arch_version": ARCH_VERSION,
        "num_classes": model.num_classes,
        "channels": model.channels,
        "resolution": model.resolution,
        "num_features": model.num_features,
        "width": model.width,
        "heldout_accuracy": -1.0 if model.heldout_accuracy is None else float(model.heldout_accuracy),
        "fingerprint": model.fingerprint or "",
        "train_seconds": float(model.train_seconds or 0.0),
        **getattr(model, "train_meta", {}),
    }
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save({"state_dict": state, "meta": meta}, f)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _load(path: Path, *, fingerprint: str, channels: int, resolution: int, device) -> DomainClassifier:
    """Load a cached classifier; raises ``ValueError`` (or a torch/pickle error) when unusable."""
    blob = torch.load(path, map_location="cpu", weights_only=True)
    meta = blob["meta"]
    expected = {
        "arch_version": ARCH_VERSION,
        "fingerprint": fingerprint,
        "channels": channels,
        "resolution": resolution,
    }
    for key, value in expected.items():
        if meta.get(key) != value:
            raise ValueError(f"cache {key} is {meta.get(key)!r}, expected {value!r}")
    with torch.random.fork_rng(devices=[]):  # its random init is overwritten: it must not move the caller's RNG
        model = DomainClassifier(
            channels=meta["channels"],
            num_classes=meta["num_classes"],
            resolution=meta["resolution"],
            num_features=meta["num_features"],
            width=meta["width"],
        )
    model.load_state_dict(blob["state_dict"])
    acc = float(meta["heldout_accuracy"])
    model.heldout_accuracy = None if acc < 0 else acc
    model.fingerprint = meta["fingerprint"]
    model.train_seconds = float(meta.get("train_seconds", 0.0))
    model.train_meta = {"epochs": meta.get("epochs"), "seed": meta.get("seed")}
    model.from_cache = True
    return model.to(device).eval()


def load_or_train(
    train,
    *,
    heldout=None,
    cache_dir=None,
    epochs: int = DEFAULT_EPOCHS,
    seed: int = 0,
    device="cpu",
    progress: bool | None = None,
) -> DomainClassifier:
    """Return the cached classifier for ``train.fingerprint`` or train (and cache) a new one.

    ``heldout`` may be an ``ImageData``, ``None``, or a no-argument callable returning either
    (called only when training is needed).  ``cache_dir=None`` disables caching.  An unreadable or mismatching cache file triggers a
    warning and retraining; the new classifier overwrites it atomically.

    Training takes a minute on CPU for the built-in digits: when it is needed, a line on stderr
    says so ("training the domain classifier … (first use, cached in DIR)") above a bar over its
    steps.  ``progress``: True, False, or None (default: when stderr is a terminal).
    """
    from normgan.metrics import progress as prog

    _check_labels(train, "train split")
    path = cache_path(cache_dir, train.fingerprint) if cache_dir is not None else None
    if path is not None and path.exists():
        try:
            return _load(
                path, fingerprint=train.fingerprint, channels=train.channels, resolution=train.resolution, device=device
            )
        except Exception as exc:  # corrupted, truncated, or from another version: retrain
            reason = (str(exc).strip().splitlines() or [""])[0][:200]
            warnings.warn(
                f"domain classifier cache {path} is unusable ({type(exc).__name__}: {reason}); retraining",
                RuntimeWarning,
                stacklevel=2,
            )
    if path is not None:  # before a minute of training: a read-only folder or a file in its place is one line
        check_writable_dir(path.parent, what="domain classifier cache folder", fix=CACHE_FIX.split(", or ", 1)[1])
    if callable(heldout):
        heldout = heldout()
    where = f"first use, cached in {path.parent}" if path is not None else "not cached: no cache folder"
    prog.note(
        f"training the domain classifier of {getattr(train, 'name', '?')} ({len(train)} images, {epochs} epochs; "
        f"{where})…",
        progress=progress,
    )
    model = train_domain_classifier(train, heldout=heldout, epochs=epochs, seed=seed, device=device, progress=progress)
    if path is not None:
        try:
            _save(model, path)
        except (OSError, RuntimeError) as e:  # torch.save reports a full disk as a RuntimeError
            raise write_error(e, path, what="the domain classifier cache", fix=CACHE_FIX) from None
    return model


def domain_classifier(
    *,
    dataset: str,
    root=None,
    resolution: int = 32,
    channels: int | None = None,
    holdout: float = 0.1,
    cache_dir=None,
    epochs: int = DEFAULT_EPOCHS,
    seed: int = 0,
    device="cpu",
) -> DomainClassifier:
    """Load the dataset's TRAIN and TEST splits with ``normgan.data.load_dataset`` and call
    :func:`load_or_train` (training on TRAIN, reporting accuracy on TEST)."""
    from normgan.data import load_dataset

    kw = dict(name=dataset, root=root, resolution=resolution, channels=channels, holdout=holdout)
    train = load_dataset(split="train", **kw)
    heldout = load_dataset(split="test", **kw)
    return load_or_train(train, heldout=heldout, cache_dir=cache_dir, epochs=epochs, seed=seed, device=device)
