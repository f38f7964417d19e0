"""Default-run quality: normgan's default `normgan train` vs plain PyTorch DCGAN loops, same wall time.

1. Trains normgan's default config (normgan/configs/mnist.yaml) and measures its wall time T.
2. Trains, each for the same wall time T on the same mnist5k training split:
   - `pytorch_example`: the PyTorch DCGAN example (64 px, nz=100, ngf=ndf=64, BatchNorm in G and D,
     batch 128, Adam 2e-4 (0.5, 0.999)), images resized to 64 px;
   - `plain_same_arch`: a bare loop with normgan's default architecture, batch and loss, no EMA.
3. Scores all, and a randomly initialised generator, with the domain-classifier FID (normgan.metrics, classifier trained on the training
   split only) against the held-out split, at the same N, with the real-vs-real floor.

Prints JSON. Takes about 3 × T plus the classifier (~15 minutes on 2 CPU cores).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time

import torch
from plain_gan import plain_gan_step
import torch.nn as nn
import torch.nn.functional as F

from normgan import Trainer, load_config
from normgan.data import batch_to_float, load_dataset
from normgan.metrics.domain import load_or_train
from normgan.metrics.evaluate import evaluate
from normgan.models import build_discriminator, build_generator


class ExampleG(nn.Module):
    """The generator of the PyTorch DCGAN example (64 px)."""

    def __init__(self, nz=100, ngf=64, nc=1):
        super().__init__()
        self.nz = nz
        self.main = nn.Sequential(
            nn.ConvTranspose2d(nz, ngf * 8, 4, 1, 0, bias=False), nn.BatchNorm2d(ngf * 8), nn.ReLU(True),
            nn.ConvTranspose2d(ngf * 8, ngf * 4, 4, 2, 1, bias=False), nn.BatchNorm2d(ngf * 4), nn.ReLU(True),
            nn.ConvTranspose2d(ngf * 4, ngf * 2, 4, 2, 1, bias=False), nn.BatchNorm2d(ngf * 2), nn.ReLU(True),
            nn.ConvTranspose2d(ngf * 2, ngf, 4, 2, 1, bias=False), nn.BatchNorm2d(ngf), nn.ReLU(True),
            nn.ConvTranspose2d(ngf, nc, 4, 2, 1, bias=False), nn.Tanh())

    def forward(self, z):
        return self.main(z.view(z.shape[0], -1, 1, 1))


class ExampleD(nn.Module):
    """The discriminator of the PyTorch DCGAN example (64 px), returning logits."""

    def __init__(self, ndf=64, nc=1):
        super().__init__()
        self.main = nn.Sequential(
            nn.Conv2d(nc, ndf, 4, 2, 1, bias=False), nn.LeakyReLU(0.2, True),
            nn.Conv2d(ndf, ndf * 2, 4, 2, 1, bias=False), nn.BatchNorm2d(ndf * 2), nn.LeakyReLU(0.2, True),
            nn.Conv2d(ndf * 2, ndf * 4, 4, 2, 1, bias=False), nn.BatchNorm2d(ndf * 4), nn.LeakyReLU(0.2, True),
            nn.Conv2d(ndf * 4, ndf * 8, 4, 2, 1, bias=False), nn.BatchNorm2d(ndf * 8), nn.LeakyReLU(0.2, True),
            nn.Conv2d(ndf * 8, 1, 4, 1, 0, bias=False))

    def forward(self, x):
        return self.main(x).flatten()


def init_weights(m):
    if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
        nn.init.normal_(m.weight, 0.0, 0.02)
    elif isinstance(m, nn.BatchNorm2d):
        nn.init.normal_(m.weight, 1.0, 0.02)
        nn.init.zeros_(m.bias)


def plain_loop(G, D, images, *, batch, seconds, zdim):
    """Bare non-saturating GAN loop for a fixed wall time; returns the number of steps done."""
    opt_g = torch.optim.Adam(G.parameters(), lr=2e-4, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(D.parameters(), lr=2e-4, betas=(0.5, 0.999))
    perm, pos, steps, start = torch.randperm(len(images)), 0, 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        if pos + batch > len(perm):
            perm, pos = torch.randperm(len(images)), 0
        real = images[perm[pos : pos + batch]]
        pos += batch
        plain_gan_step(G, D, opt_g, opt_d, real, torch.randn(batch, zdim))
        steps += 1
    return steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=2000, help="generated samples per FID")
    parser.add_argument("--cache-dir", default=None)
    parser.add_argument("--runs-dir", default=None, help="keep normgan's run folder here (default: a temporary folder)")
    args = parser.parse_args()
    torch.manual_seed(0)
    cfg = load_config()
    train = load_dataset(name="mnist5k", resolution=32, split="train")
    test = load_dataset(name="mnist5k", resolution=32, split="test")
    cache = args.cache_dir or tempfile.mkdtemp()
    t0 = time.perf_counter()
    clf = load_or_train(train, heldout=test, cache_dir=cache)
    clf_time = time.perf_counter() - t0

    runs_dir = args.runs_dir or tempfile.mkdtemp()
    start = time.perf_counter()
    trainer = Trainer(cfg, runs_dir=runs_dir, progress=False)
    trainer.fit()
    wall = time.perf_counter() - start
    G_ours = trainer.G_ema.eval()

    torch.manual_seed(0)
    ex_G, ex_D = ExampleG(), ExampleD()
    ex_G.apply(init_weights)
    ex_D.apply(init_weights)
    imgs64 = F.interpolate(batch_to_float(train.images), size=64, mode="bilinear", antialias=True, align_corners=False)
    ex_steps = plain_loop(ex_G, ex_D, imgs64, batch=128, seconds=wall, zdim=100)
    ex_G.eval()

    torch.manual_seed(0)
    pl_G = build_generator(cfg.model.generator, resolution=32, channels=1)
    pl_D = build_discriminator(cfg.model.discriminator, resolution=32, channels=1)
    pl_steps = plain_loop(pl_G, pl_D, batch_to_float(train.images), batch=cfg.data.batch_size, seconds=wall, zdim=cfg.model.generator.z_dim)
    pl_G.eval()

    def sampler(G, zdim, down=False):
        def fn(b):
            x = G(torch.randn(b, zdim))
            return F.interpolate(x, size=32, mode="bilinear", antialias=True, align_corners=False) if down else x
        return fn

    torch.manual_seed(1)
    G_random = build_generator(cfg.model.generator, resolution=32, channels=1).eval()
    results = {}
    for name, fn in [("random_init_generator", sampler(G_random, cfg.model.generator.z_dim)),
                     ("normgan_default", sampler(G_ours, cfg.model.generator.z_dim)),
                     ("pytorch_example", sampler(ex_G, 100, down=True)),
                     ("plain_same_arch", sampler(pl_G, cfg.model.generator.z_dim))]:
        m = evaluate(sample_fn=fn, reference=test, extractor=clf, n=args.n, metrics=("fid", "kid", "pr"), seed=0)
        results[name] = {k: (round(v, 4) if isinstance(v, float) else v) for k, v in m.items()}
    out = {
        "benchmark": "default_quality",
        "wall_time_s": round(wall, 1),
        "normgan_run": str(trainer.run_dir),
        "steps": {"normgan_default": cfg.train.steps, "pytorch_example": ex_steps, "plain_same_arch": pl_steps},
        "classifier_heldout_accuracy": round(float(getattr(clf, "heldout_accuracy", float("nan"))), 4),
        "classifier_train_s": round(clf_time, 1),
        "results": results,
        "fid_ratio_example_over_normgan": round(results["pytorch_example"]["fid"] / results["normgan_default"]["fid"], 2),
        "fid_ratio_plain_over_normgan": round(results["plain_same_arch"]["fid"] / results["normgan_default"]["fid"], 2),
    }
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
