"""The bare PyTorch GAN step that the benchmarks compare normgan with (as in the PyTorch DCGAN example)."""

import torch.nn.functional as F


def plain_gan_step(G, D, opt_g, opt_d, real, z) -> None:
    """One non-saturating D step and G step; the fake batch is reused for the G step."""
    fake = G(z)
    loss_d = F.softplus(-D(real)).mean() + F.softplus(D(fake.detach())).mean()
    opt_d.zero_grad()
    loss_d.backward()
    opt_d.step()
    loss_g = F.softplus(-D(fake)).mean()
    opt_g.zero_grad()
    loss_g.backward()
    opt_g.step()
