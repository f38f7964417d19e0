"""The bare PyTorch GAN step that the benchmarks compare normgan with (as in the PyTorch DCGAN example)."""

import torch
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


def _half_sq_norm(grad) -> torch.Tensor:
    return 0.5 * grad.pow(2).flatten(1).sum(1).mean()


def plain_r1_r2_step(G, D, opt_g, opt_d, real, z, gamma: float = 1.0) -> None:
    """As :func:`plain_gan_step` plus R1 and R2 every step, written as R3GAN's code does: each
    penalty's input gradient comes from the D forward the loss already made (inputs requiring
    grad), ``gamma · ½ mean_b ‖∇ₓD(x_b)‖²`` at the real and at the (detached) fake batch."""
    fake = G(z)
    x_real, x_fake = real.detach().requires_grad_(True), fake.detach().requires_grad_(True)
    d_real, d_fake = D(x_real), D(x_fake)
    g_real, g_fake = torch.autograd.grad((d_real.sum(), d_fake.sum()), (x_real, x_fake), create_graph=True)
    loss_d = F.softplus(-d_real).mean() + F.softplus(d_fake).mean()
    loss_d = loss_d + gamma * (_half_sq_norm(g_real) + _half_sq_norm(g_fake))
    opt_d.zero_grad()
    loss_d.backward()
    opt_d.step()
    loss_g = F.softplus(-D(fake)).mean()
    opt_g.zero_grad()
    loss_g.backward()
    opt_g.step()
