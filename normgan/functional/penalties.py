"""Penalties: gradient penalties on D, path length on G, statistics matching, TV, LeCam,
consistency (bCR, zCR), reconstruction and weight norms.

Every function is pure: it takes the callable network (``D`` / ``G``) or the tensors explicitly,
returns a scalar tensor (path length also returns its detached mean length), never counts steps,
never runs an optimizer and never applies the regularization weight (λ, γ) — the caller does.
Lazy regularization (every k steps, gain k) belongs to the training loop.

Discriminator callables: ``D(x)`` may return logits of shape (B,), (B, 1) or any (B, ...), or a
tuple/list whose FIRST element is the logits (e.g. ``(logits, features)``).  The gradient is the
gradient of ``sum(logits)`` with respect to a detached copy of ``x`` that requires grad, taken with
``create_graph=True`` so the penalty is differentiable w.r.t. D's parameters (double backward).
These penalties train D only; inputs are detached, so no gradient reaches G.
Note: ``torch.compile`` does not support the double backward — run penalties eagerly.
"""

from __future__ import annotations

import math
from typing import Callable, Iterable

import torch
from torch import Tensor

from normgan.functional.norms import residual_norm

# ----------------------------------------------------------------------------- helpers


def _logits(out) -> Tensor:
    if isinstance(out, (tuple, list)):
        out = out[0]
    return out


def _bshape(x: Tensor) -> tuple:
    """Shape (B, 1, 1, ...) broadcasting a per-sample value over ``x``."""
    return (x.shape[0],) + (1,) * (x.dim() - 1)


def input_gradient(D: Callable, x: Tensor, *, create_graph: bool = True) -> Tensor:
    """``∇ₓ Σ_b D(x)_b`` at a detached copy of ``x`` (same shape as ``x``).

    Since sample b's logit depends only on x_b (no batch statistics in D), row b of the result is
    ∇_{x_b} D(x_b).  ``create_graph=True`` keeps the graph for the double backward.  Works under
    ``torch.no_grad()`` (grad mode is enabled locally).  An x on which D does not depend gives 0.
    """
    with torch.enable_grad():
        x = x.detach().requires_grad_(True)
        logits = _logits(D(x))
        (grad,) = torch.autograd.grad(logits.sum(), x, create_graph=create_graph, allow_unused=True)
    if grad is None:
        grad = torch.zeros_like(x)
    return grad


def r1_from_logits(logits: Tensor, x: Tensor, *, half: bool = True) -> Tensor:
    """R1 from a forward pass D already made: ``scale · mean_b Σ (∂ Σ logits / ∂x_b)²``.

    ``x`` must have had ``requires_grad`` set before ``logits = D(x)`` was computed; the penalty then
    shares that forward pass with the adversarial loss (one D forward less than :func:`r1_penalty`).
    ``scale`` is ½ with ``half`` (StyleGAN2), 1 without (Mescheder's code). Equal to
    ``r1_penalty(D, x, half=half)`` for a D without batch statistics.
    """
    (grad,) = torch.autograd.grad(_logits(logits).sum(), x, create_graph=True)
    return (0.5 if half else 1.0) * grad.pow(2).flatten(1).sum(1).mean()


def grad_penalty(
    D: Callable,
    x: Tensor,
    *,
    center: float = 0.0,
    one_sided: bool = False,
    p: float = 2.0,
    half: bool = False,
    create_graph: bool = True,
) -> Tensor:
    """Core gradient-norm penalty at the points ``x``:

        ``scale · mean_b φ(‖∇ₓD(x_b)‖_p − center)``,  φ(t) = t²  (one-sided: max(0, t)²),

    with ``scale = ½`` if ``half`` else 1.  The norm is over ALL non-batch dims of the gradient
    (per sample), then the batch mean.  With ``center = 0`` and ``p = 2`` the squared norm is
    computed as the per-sample SUM of squared gradients (no square root, smooth at 0).
    Resolution: with center 0 the penalty is a sum over C·H·W and scales with resolution (hence
    γ ∝ res²); with center 1 the unit target is resolution-independent.
    """
    if p < 1:
        raise ValueError(f"gradient penalty norm order p must be >= 1, got {p!r}")
    g = input_gradient(D, x, create_graph=create_graph).flatten(1)
    if center == 0 and p == 2:
        per_sample = g.square().sum(dim=1)  # ‖g‖² ≥ 0, so one-sided changes nothing
    else:
        t = torch.linalg.vector_norm(g, ord=float(p), dim=1) - center
        if one_sided:
            t = torch.relu(t)
        per_sample = t.square()
    out = per_sample.mean()
    return 0.5 * out if half else out


def r1_penalty(D: Callable, real: Tensor, *, half: bool = True) -> Tensor:
    """R1 (Mescheder et al. 2018): ``mean_b [ ½ Σ_{c,h,w} (∇ₓD(x_b))² ]`` on REAL samples.

    ``half=True`` (default) is the StyleGAN2 / paper convention, so the full term is
    ``γ · r1_penalty`` = (γ/2)·E‖∇D‖².  ``half=False`` drops the ½, matching Mescheder's own code
    (``reg_param · mean(Σ grad²)``): the same "γ = 10" differs by 2× between the codebases.
    REDUCTION: per-sample sum of squared gradient over C·H·W, batch mean (scales with C·H·W).
    """
    return grad_penalty(D, real, center=0.0, half=half)


def r2_penalty(D: Callable, fake: Tensor, *, half: bool = True) -> Tensor:
    """R2: the R1 formula on GENERATED samples (``fake`` is detached: trains D only).

    ``mean_b [ ½ Σ (∇ₓD(x̃_b))² ]``; ``half`` as in :func:`r1_penalty`.
    """
    return grad_penalty(D, fake, center=0.0, half=half)


def wgan_gp_interpolates(real: Tensor, fake: Tensor, *, generator: torch.Generator | None = None) -> Tensor:
    """``x̂ = x + ε(x̃ − x)`` with ONE ``ε ~ U[0,1)`` PER SAMPLE, detached.

    ε is drawn as ``torch.rand(B, generator=generator)`` in ``real``'s dtype/device.
    """
    if real.shape != fake.shape:
        raise ValueError(f"real and fake shapes differ: {tuple(real.shape)} vs {tuple(fake.shape)}")
    eps = torch.rand(real.shape[0], generator=generator, dtype=real.dtype, device=real.device)
    eps = eps.reshape(_bshape(real))
    real, fake = real.detach(), fake.detach()
    return real + eps * (fake - real)


def wgan_gp_penalty(
    D: Callable,
    real: Tensor,
    fake: Tensor,
    *,
    center: float = 1.0,
    one_sided: bool = False,
    generator: torch.Generator | None = None,
) -> Tensor:
    """WGAN-GP (Gulrajani et al. 2017): ``mean_b (‖∇D(x̂_b)‖₂ − c)²`` at interpolates.

    ``x̂ = x + ε(x̃ − x)`` with one ε ~ U[0,1) per sample (:func:`wgan_gp_interpolates`);
    the L2 norm is over all non-batch dims.  ``center=1`` is WGAN-GP; ``one_sided=True`` gives
    WGAN-LP ``max(0, ‖∇‖ − 1)²``; ``center=0`` gives the zero-centred ``‖∇‖²``.
    The usual weight λ = 10 is applied by the caller.  REDUCTION: per-sample norm, batch mean.
    """
    x_hat = wgan_gp_interpolates(real, fake, generator=generator)
    return grad_penalty(D, x_hat, center=center, one_sided=one_sided)


#: Alias used in DESIGN.md: ``gradient_penalty(D, real, fake, center=1)``.
gradient_penalty = wgan_gp_penalty


def dragan_perturbed(real: Tensor, *, scale: float = 0.5, generator: torch.Generator | None = None) -> Tensor:
    """DRAGAN reference-notebook perturbation ``x̂ = x + α(x_p − x)``, detached.

    ``x_p = x + scale·std(x)·U[0,1)`` where std is the population std (ddof = 0, numpy's
    ``X.std()``) over the WHOLE batch; α ~ U[0,1) per sample.  Draw order (for reproducing with
    a generator): first the noise ``torch.rand(real.shape)``, then ``α = torch.rand(B)``.
    """
    real = real.detach()
    noise = torch.rand(real.shape, generator=generator, dtype=real.dtype, device=real.device)
    x_p = real + scale * real.std(correction=0) * noise
    alpha = torch.rand(real.shape[0], generator=generator, dtype=real.dtype, device=real.device)
    return real + alpha.reshape(_bshape(real)) * (x_p - real)


def dragan_penalty(
    D: Callable,
    real: Tensor,
    *,
    center: float = 1.0,
    scale: float = 0.5,
    generator: torch.Generator | None = None,
) -> Tensor:
    """DRAGAN (Kodali et al. 2017), REFERENCE-NOTEBOOK variant: ``mean_b (‖∇D(x̂_b)‖₂ − 1)²``.

    Perturbed points from :func:`dragan_perturbed` (uniform noise scaled by 0.5·std(batch), α per
    sample), NOT the paper's Gaussian δ ~ N(0, cI).  λ = 10 is applied by the caller.
    REDUCTION: per-sample L2 norm over non-batch dims, batch mean.
    """
    x_hat = dragan_perturbed(real, scale=scale, generator=generator)
    return grad_penalty(D, x_hat, center=center)


# ----------------------------------------------------------------------------- path length


def path_lengths(
    G: Callable,
    z: Tensor,
    *,
    y: Tensor | None = None,
    generator: torch.Generator | None = None,
    create_graph: bool = True,
) -> Tensor:
    """StyleGAN2's per-sample path lengths ``‖J_zᵀ y‖₂`` of shape (B,), differentiable w.r.t. G.

    ``out = G(z)``; ``y ~ N(0, I)/sqrt(H·W)`` with H·W the product of ``out.shape[2:]`` (1 for a
    (B, D) output); ``J_zᵀ y = ∇_z Σ(out · y)``.  A ``y`` passed explicitly is used AS IS (not
    rescaled).  The per-sample length is the L2 norm over all non-batch dims of the gradient
    (StyleGAN2 takes it w.r.t. w of shape (B, num_ws, w_dim) and averages over num_ws inside the
    root; pass z = w to get its gradient).  If ``z`` already requires grad it is used as is (so a
    mapping network upstream stays in the graph); otherwise a detached copy is made a leaf.
    """
    with torch.enable_grad():
        if not z.requires_grad:
            z = z.detach().requires_grad_(True)
        out = G(z)
        if y is None:
            spatial = math.prod(out.shape[2:]) if out.dim() > 2 else 1
            y = torch.randn(out.shape, generator=generator, dtype=out.dtype, device=out.device)
            y = y / math.sqrt(spatial)
        (grad,) = torch.autograd.grad((out * y).sum(), z, create_graph=create_graph)
    return torch.linalg.vector_norm(grad.flatten(1), ord=2, dim=1)


def path_length_penalty(
    G: Callable,
    z: Tensor,
    *,
    target: Tensor | float,
    decay: float | None = None,
    y: Tensor | None = None,
    generator: torch.Generator | None = None,
    create_graph: bool = True,
) -> tuple[Tensor, Tensor]:
    """StyleGAN2 path length: returns ``(mean_b (‖J_zᵀ y‖₂ − a)², mean_b ‖J_zᵀ y‖₂ detached)``.

    Lengths as in :func:`path_lengths`.  With ``decay`` None, ``a = target`` is a constant.  With a
    ``decay``, StyleGAN2's order: ``a`` is the target AFTER updating it with this batch's mean length,
    ``a = path_length_target_update(target, mean, decay=decay)`` (in ``target``'s dtype when it is a
    tensor, as a buffer holding it would be); the caller keeps that update as its new target (the
    ``jacobian`` term does).  The weight (2, every 4 steps on half the batch in StyleGAN2) is applied
    by the caller.
    """
    lengths = path_lengths(G, z, y=y, generator=generator, create_graph=create_graph)
    mean = lengths.mean().detach()
    if decay is not None:
        updated = path_length_target_update(target, mean, decay=decay)
        target = updated.to(target.dtype) if isinstance(target, Tensor) else updated
    if isinstance(target, Tensor):
        target = target.detach()
    penalty = (lengths - target).square().mean()
    return penalty, mean


def path_length_target_update(a: Tensor | float, mean_length: Tensor | float, *, decay: float = 0.01):
    """EMA of the path length target: ``a ← a + decay·(mean_length − a)`` (detached).

    Returns the same kind as ``a`` (float or tensor).  StyleGAN2 starts from a = 0, decay 0.01.
    """
    if not 0.0 <= decay <= 1.0:
        raise ValueError(f"path length decay must be in [0, 1], got {decay!r}")
    if isinstance(mean_length, Tensor):
        mean_length = mean_length.detach()
    if isinstance(a, Tensor):
        return (a.detach() + decay * (mean_length - a.detach())).detach()
    new = a + decay * (mean_length - a)
    return float(new) if isinstance(new, Tensor) else new


# ----------------------------------------------------------------------------- statistics


def _layers(f) -> list:
    return list(f) if isinstance(f, (list, tuple)) else [f]


def feature_matching(f_real, f_fake) -> Tensor:
    """Feature matching (Salimans et al. 2016): ``mean_k (mean_b f_real[b,k] − mean_b f_fake[b,k])²``.

    Features are flattened per sample (k runs over all non-batch dims).  Real features are treated
    as constants (detached inside).  REDUCTION: batch mean of features, then MEAN over features
    (independent of the feature map size).  Lists/tuples of layers are accepted: the per-layer
    values are SUMMED.
    """
    reals, fakes = _layers(f_real), _layers(f_fake)
    if len(reals) != len(fakes):
        raise ValueError(f"feature_matching got {len(reals)} real and {len(fakes)} fake layers")
    total = None
    for fr, ff in zip(reals, fakes):
        d = fr.detach().flatten(1).mean(0) - ff.flatten(1).mean(0)
        v = d.square().mean()
        total = v if total is None else total + v
    return total


def channel_moments(x: Tensor, *, eps: float = 1e-8) -> tuple[Tensor, Tensor]:
    """Per-channel mean and std over batch and pixels of ``x`` (B, C, ...).

    std = sqrt(population variance (ddof = 0) + eps); eps keeps the gradient finite for a
    constant channel.
    """
    flat = x.transpose(0, 1).reshape(x.shape[1], -1)  # (C, B*H*W)
    mu = flat.mean(dim=1)
    var = flat.var(dim=1, correction=0)
    return mu, torch.sqrt(var + eps)


def colour_stats(real: Tensor, fake: Tensor, *, eps: float = 1e-8) -> Tensor:
    """Colour statistics: ``Σ_c (μ_c(real) − μ_c(fake))² + Σ_c (σ_c(real) − σ_c(fake))²``.

    μ_c, σ_c are each channel's mean and std over batch AND pixels (:func:`channel_moments`,
    population std with eps inside the root).  Real statistics are constants (detached).
    REDUCTION: pooled moments over B·H·W, SUM over channels.  Independent of resolution and batch
    size (it does depend on the number of channels).
    """
    mu_r, sd_r = channel_moments(real.detach(), eps=eps)
    mu_f, sd_f = channel_moments(fake, eps=eps)
    return (mu_r - mu_f).square().sum() + (sd_r - sd_f).square().sum()


def gram_matrix(feat: Tensor) -> Tensor:
    """Gram matrices ``G_b = F_b F_bᵀ / (C·H·W)`` with ``F_b = feat[b].reshape(C, H·W)``.

    Input (B, C, ...) → output (B, C, C).  Normalized by C·H·W (independent of resolution).
    """
    b, c = feat.shape[0], feat.shape[1]
    f = feat.reshape(b, c, -1)
    n = c * f.shape[2]
    return torch.bmm(f, f.transpose(1, 2)) / n


def texture_stats(real_feat, fake_feat) -> Tensor:
    """Texture statistics: ``mean_{i,j} (mean_b G_real[b,i,j] − mean_b G_fake[b,i,j])²``.

    G = :func:`gram_matrix`.  Real features are constants (detached).  REDUCTION: batch-mean Gram
    matrices, mean over the C×C entries.  Lists/tuples of layers are accepted and SUMMED.
    """
    reals, fakes = _layers(real_feat), _layers(fake_feat)
    if len(reals) != len(fakes):
        raise ValueError(f"texture_stats got {len(reals)} real and {len(fakes)} fake layers")
    total = None
    for fr, ff in zip(reals, fakes):
        d = gram_matrix(fr.detach()).mean(0) - gram_matrix(ff).mean(0)
        v = d.square().mean()
        total = v if total is None else total + v
    return total


def total_variation(img: Tensor, *, norm: str = "l1") -> Tensor:
    """Total variation of images (B, C, H, W) (any (..., H, W)):

    ``l1``: ``mean|x[...,i+1,j] − x[...,i,j]| + mean|x[...,i,j+1] − x[...,i,j]|``;
    ``l2``: the same with squares.  Each mean runs over all elements of that difference map
    (B·C·(H−1)·W and B·C·H·(W−1)), i.e. per-sample mean then batch mean, and the two are ADDED.
    Normalized by element count (independent of resolution in scale).
    """
    if img.dim() < 2:
        raise ValueError(f"total_variation needs (..., H, W), got shape {tuple(img.shape)}")
    dh = img[..., 1:, :] - img[..., :-1, :]
    dw = img[..., :, 1:] - img[..., :, :-1]
    if norm == "l1":
        return dh.abs().mean() + dw.abs().mean()
    if norm == "l2":
        return dh.square().mean() + dw.square().mean()
    raise ValueError(f"total_variation norm must be 'l1' or 'l2', got {norm!r}")


# ----------------------------------------------------------------------------- LeCam


def lecam_penalty(
    d_real: Tensor,
    d_fake: Tensor,
    *,
    anchor_real: Tensor | float,
    anchor_fake: Tensor | float,
    one_sided: bool = True,
) -> Tensor:
    """LeCam (Tseng et al. 2021): ``mean relu(D(x) − α_F)² + mean relu(α_R − D(G(z)))²``.

    ``one_sided=True`` (default) is the reference code (relu inside); ``one_sided=False`` is the
    paper's two-sided ``mean (D(x) − α_F)² + mean (D(G(z)) − α_R)²``.  Anchors α_R, α_F are EMAs
    of D's mean output on real/fake (:func:`lecam_anchor_update`) and get no gradient.
    REDUCTION: mean over all logits.  λ (≈ 0.3 BigGAN/CIFAR) is applied by the caller.
    """
    if isinstance(anchor_real, Tensor):
        anchor_real = anchor_real.detach()
    if isinstance(anchor_fake, Tensor):
        anchor_fake = anchor_fake.detach()
    a = d_real - anchor_fake
    b = anchor_real - d_fake
    if one_sided:
        a, b = torch.relu(a), torch.relu(b)
    return a.square().mean() + b.square().mean()


def lecam_anchor_update(anchor: Tensor | float, logits: Tensor, *, decay: float = 0.99, count: int | None = None):
    """EMA anchor update from the batch mean ``m = mean(logits)`` (detached).

    ``count=None``: the plain EMA ``α ← decay·α + (1 − decay)·m``.
    ``count=t`` (the number of earlier updates): the bias-corrected EMA that the reference
    implementations use, so the anchor starts at the running mean rather than at 0.  ``anchor`` is
    then the corrected value α̂_t = e_t / (1 − decay^t) of the raw EMA e_t (e_0 = 0), and the result is
    α̂_{t+1} = (decay·α̂_t·(1 − decay^t) + (1 − decay)·m) / (1 − decay^{t+1}):
    after one update it is the batch mean, after t updates Σ_i decay^{t−i}(1 − decay)·m_i / (1 − decay^t).
    With ``decay = 1`` the corrected anchor is the first batch mean forever.

    Returns a float if ``anchor`` is a float, else a detached tensor.
    """
    if not 0.0 <= decay <= 1.0:
        raise ValueError(f"LeCam decay must be in [0, 1], got {decay!r}")
    m = logits.detach().mean()
    a = anchor.detach() if isinstance(anchor, Tensor) else anchor
    if count is None:
        new = decay * a + (1.0 - decay) * m
    elif count < 0:
        raise ValueError(f"LeCam anchor count must be >= 0, got {count!r}")
    elif decay == 1.0:
        new = m if count == 0 else a + 0.0 * m
    else:
        raw = decay * a * (1.0 - decay**count) + (1.0 - decay) * m
        new = raw / (1.0 - decay ** (count + 1))
    if isinstance(anchor, Tensor):
        return new.detach()
    return float(new)


# ----------------------------------------------------------------------------- consistency (bCR, zCR)


def consistency_penalty(logits_a, logits_b) -> Tensor:
    """Consistency regularization (Zhao et al. 2021): ``mean_b (a_b − b_b)²``, the mean squared
    difference of two sets of D logits for the same samples (clean vs augmented images in bCR,
    G(z) vs G(z + Δz) in zCR's D part).

    ``logits_a``/``logits_b`` are (B,), (B, 1) or any (B, ...) (or tuples/lists whose first element is
    the logits); both are viewed as (B, −1) and must then have the same shape.  REDUCTION: mean over
    all logits (the batch mean for one logit per sample), StudioGAN's ``F.mse_loss``.  Nothing is
    detached: the gradient reaches D through both sides.  λ is applied by the caller.
    """
    a, b = _logits(logits_a), _logits(logits_b)
    a, b = a.reshape(a.shape[0], -1), b.reshape(b.shape[0], -1)
    if a.shape != b.shape:
        raise ValueError(f"consistency_penalty: logit shapes differ: {tuple(a.shape)} vs {tuple(b.shape)}")
    return (a - b).square().mean()


def zcr_generator_penalty(fake: Tensor, fake_perturbed: Tensor) -> Tensor:
    """zCR's generator part (Zhao et al. 2021): ``−mean (G(z) − G(z + Δz))²`` over ALL elements.

    The NEGATIVE mean squared difference of two batches of generated images (StudioGAN:
    ``g_loss −= λ_gen · MSE``): minimizing it pushes the images of nearby latents apart, against mode
    collapse.  Always ≤ 0.  REDUCTION: mean over all B·C·H·W elements (resolution independent).
    Nothing is detached: both images carry G's graph.  λ (0.5 in StudioGAN) is applied by the caller.
    """
    if fake.shape != fake_perturbed.shape:
        raise ValueError(f"zcr_generator_penalty: shapes differ: {tuple(fake.shape)} vs {tuple(fake_perturbed.shape)}")
    return -(fake - fake_perturbed).square().mean()


# ----------------------------------------------------------------------------- reconstruction


def recon_penalty(fake: Tensor, target: Tensor, *, norm: str = "l1", **norm_params) -> Tensor:
    """Reconstruction penalty: the registered norm ``norm`` of ``fake − target``.

    Default ``l1`` = mean over all B·N elements (pix2pix, λ = 100).  See
    :mod:`normgan.functional.norms` for each norm's reduction.
    """
    if fake.shape != target.shape:
        raise ValueError(f"fake and target shapes differ: {tuple(fake.shape)} vs {tuple(target.shape)}")
    return residual_norm(fake - target, norm, **norm_params)


# ----------------------------------------------------------------------------- weight norms


def _zero_like_params(params: list) -> Tensor:
    if params:
        return params[0].new_zeros(())
    return torch.zeros(())


def _flat(params: list) -> Tensor:
    """Every element of ``params`` in one vector: a norm over it is a few kernels for the whole
    network instead of a few per tensor (what bounds small models on a GPU is kernel launches)."""
    if not params:
        return torch.zeros(0)
    return torch.cat([p.reshape(-1) for p in params])


def weight_l1(params: Iterable[Tensor]) -> Tensor:
    """``Σ_θ Σ |θ|`` over EVERY parameter given (biases included; select by name outside)."""
    return _flat(list(params)).abs().sum()


def weight_l2(params: Iterable[Tensor], *, half: bool = False) -> Tensor:
    """``Σ_θ Σ θ²`` (``half=True``: ``½ Σ θ²``) over EVERY parameter given.

    Default without ½.  With Adam this term is COUPLED weight decay; never combine it with
    AdamW's decay on the same parameters.
    """
    total = _flat(list(params)).square().sum()
    return 0.5 * total if half else total


def _matrices(params: Iterable[Tensor]) -> list:
    """Each parameter with ≥ 2 dims reshaped to (out, −1); 1-D/0-D params are skipped."""
    return [p.reshape(p.shape[0], -1) for p in params if p.dim() >= 2]


def weight_group_l21(params: Iterable[Tensor]) -> Tensor:
    """Group lasso ``Σ_W Σ_g √p_g ‖W_g‖₂`` with one group per OUTPUT channel (dim 0).

    W is reshaped to (out, −1); row g has p_g = numel/out elements.  1-D parameters (biases,
    norm affine) are SKIPPED.  For ConvTranspose weights (in, out, k, k) dim 0 is the input
    channel: permute before passing if output groups are wanted.
    """
    params = list(params)
    total = _zero_like_params(params)
    for w in _matrices(params):
        total = total + math.sqrt(w.shape[1]) * torch.linalg.vector_norm(w, ord=2, dim=1).sum()
    return total


def weight_orthogonal(params: Iterable[Tensor]) -> Tensor:
    """BigGAN orthogonal regularization ``Σ_W ‖W Wᵀ ⊙ (1 − I)‖_F²`` with W reshaped to (out, −1).

    W Wᵀ is the (out × out) Gram matrix of the filters (BigGAN's code ``mm(w, w.t())``; the
    paper's "WᵀW" with filters as columns).  1-D parameters are SKIPPED.  BigGAN's code adds
    the gradient ``2β (W Wᵀ ⊙ (1 − I)) W`` directly, which is the gradient of (β/2)·this loss:
    to reproduce BigGAN's β = 1e-4 use weight β/2 = 5e-5 on this function.
    """
    params = list(params)
    total = _zero_like_params(params)
    for w in _matrices(params):
        gram = w @ w.t()
        off = gram - torch.diag_embed(torch.diagonal(gram))
        total = total + off.square().sum()
    return total


__all__ = [
    "r1_from_logits",
    "input_gradient",
    "grad_penalty",
    "r1_penalty",
    "r2_penalty",
    "wgan_gp_interpolates",
    "wgan_gp_penalty",
    "gradient_penalty",
    "dragan_perturbed",
    "dragan_penalty",
    "path_length_penalty",
    "path_length_target_update",
    "feature_matching",
    "channel_moments",
    "colour_stats",
    "gram_matrix",
    "texture_stats",
    "total_variation",
    "lecam_penalty",
    "lecam_anchor_update",
    "consistency_penalty",
    "zcr_generator_penalty",
    "recon_penalty",
    "weight_l1",
    "weight_l2",
    "weight_group_l21",
    "weight_orthogonal",
]
