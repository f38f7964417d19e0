"""The registered regularization terms (thin wrappers over normgan.functional).

Each class is one config name in ``TERMS``; its keyword-only constructor arguments are the term's
options in the config. ``forward(ctx)`` returns the RAW scalar (the loop applies weight, interval
and gain). Lazy phases (``every > 1``) give a context without D's logits (and, for G, without
``fake``): terms then run the forward passes they need themselves.
"""

from __future__ import annotations

import fnmatch
import inspect
import math
from typing import Any, Iterator, Optional

import torch
from torch import Tensor, nn

from normgan.errors import ConfigError, UserError
from normgan.functional.augment import DIFFAUGMENT_OPS, diffaugment
from normgan.functional.gates import HardConcreteGate
from normgan.functional.norms import NORMS, sum_scale
from normgan.functional.penalties import (
    colour_stats,
    consistency_penalty,
    dragan_penalty,
    feature_matching,
    grad_penalty,
    lecam_anchor_update,
    lecam_penalty,
    path_length_penalty,
    path_length_target_update,
    r1_from_logits,
    r1_penalty,
    r2_penalty,
    recon_penalty,
    texture_stats,
    total_variation,
    weight_group_l21,
    weight_l1,
    weight_l2,
    weight_orthogonal,
    wgan_gp_penalty,
    zcr_generator_penalty,
)
from normgan.regularizers.base import TERMS, Term, TermContext
from normgan.regularizers.constraints import raw_weight


def _fake(ctx: TermContext) -> Tensor:
    """G's output in this phase (lazy G phases have none: generate it from G's input ``z``)."""
    if ctx.fake is not None:
        return ctx.fake
    return ctx.generate(ctx.z)


def _net(ctx: TermContext, net: str) -> nn.Module:
    return ctx.G if net == "G" else ctx.D


def _check_choice(option: str, value: Any, choices) -> None:
    if value not in choices:
        raise ConfigError(f"{option}: bad value {value!r}; choose one of: {', '.join(choices)}")


def _check_number(option: str, value: Any, *, positive: bool = False) -> float:
    """``value`` as a float, or a ConfigError naming ``option`` unless it is a number ≥ 0 (> 0 with ``positive``)."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    ok = ok and (value > 0 if positive else value >= 0) and math.isfinite(value)
    if not ok:
        raise ConfigError(f"{option}: bad value {value!r}; must be a number {'>' if positive else '>='} 0")
    return float(value)


# ----------------------------------------------------------------------------- weights


@TERMS.register("weights")
class WeightsTerm(Term):
    """A norm of a network's parameters.

    * ``l2``: Σθ² (no ½); ``l1``: Σ|θ|.
    * ``l21``: group lasso Σ_W Σ_g √p_g ‖W_g‖₂, one group per OUTPUT unit (ConvTranspose weights
      are transposed to (out, in, k, k) first).
    * ``ortho``: BigGAN's Σ_W ‖W Wᵀ ⊙ (1 − I)‖_F² with W as (out, −1); BigGAN's β = 1e-4 in its
      code equals weight 5e-5 here (its code adds the gradient of β/2 times this loss).
    * ``l0``: the expected number of open hard-concrete gates, Σ_j σ(log α_j − β log(−γ/ζ)), summed
      over every :class:`~normgan.functional.gates.HardConcreteGate` in G. The loop builds the
      generator with gates when this term is present (``needs_gates``); at test time the gates are
      deterministic and closed ones can be pruned (:func:`normgan.models.prune.prune_generator`).

    Parameters are selected by ``pattern`` (fnmatch on ``named_parameters`` names); by default
    every parameter with more than one dimension (conv and linear weights; not biases, norm scales
    or gate logits). ``l0`` ignores ``pattern``. Reduction: a SUM over all selected elements/groups/
    gates (it grows with the network, not with the batch). Cost: one pass over the parameters.
    """

    NORMS = ("l1", "l2", "l21", "ortho", "l0")

    def __init__(self, *, net: str, norm: str = "l2", pattern: Optional[str] = None) -> None:
        super().__init__(net=net)
        if norm not in self.NORMS:
            raise ConfigError(f"norm: unknown norm {norm!r} for term 'weights'; choose one of: {', '.join(self.NORMS)}")
        if norm == "l0" and net != "G":
            raise ConfigError("norm: 'l0' uses hard-concrete gates on the generator's channels; set net: G")
        self.norm, self.pattern = norm, pattern

    @property
    def needs_gates(self) -> bool:
        """True for ``norm: l0``: the loop then builds the generator with gates."""
        return self.norm == "l0"

    def select(self, module: nn.Module, *, output_first: bool = True) -> Iterator[Tensor]:
        """The selected parameters, output units first (ConvTranspose weights transposed) unless
        ``output_first`` is False (elementwise norms: the parameters themselves, no copy)."""
        transposed = {
            id(raw_weight(m))
            for m in module.modules()
            if output_first and isinstance(m, (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d))
        }
        for name, p in module.named_parameters():
            if not p.requires_grad:
                continue
            if (self.pattern is None and p.ndim > 1) or (
                self.pattern is not None and fnmatch.fnmatch(name, self.pattern)
            ):
                yield p.transpose(0, 1) if id(p) in transposed and p.ndim > 1 else p

    def forward(self, ctx: TermContext) -> Tensor:
        module = _net(ctx, self.net)
        if self.norm == "l0":
            gates = [m for m in module.modules() if isinstance(m, HardConcreteGate)]
            if not gates:
                raise UserError(
                    "term 'weights' with norm l0 needs a generator built with gates=True (the loop does this when needs_gates is set)"
                )
            return torch.stack([g.expected_l0() for g in gates]).sum()
        params = list(self.select(module, output_first=self.norm in ("l21", "ortho")))
        fn = {"l1": weight_l1, "l2": weight_l2, "l21": weight_group_l21, "ortho": weight_orthogonal}[self.norm]
        return fn(params)


# ----------------------------------------------------------------------------- gradient penalties


@TERMS.register("grad")
class GradTerm(Term):
    """A penalty on D's input gradient, trains D only (double backward; ~2-3× a D step).

    ``at``:
    * ``real`` — R1: mean_b ½Σ(∇ₓD(x_b))² (``half: false`` drops the ½, Mescheder's code).
    * ``fake`` — R2: the same on (detached) generated images.
    * ``interpolates`` — WGAN-GP: mean_b (‖∇D(x̂_b)‖₂ − center)², x̂ = x + ε(x̃ − x), one ε per sample;
      ``center: 1`` (default), ``center: 0`` zero-centred ‖∇‖², ``one_sided: true`` WGAN-LP.
    * ``perturbed`` — DRAGAN (reference-notebook variant): (‖∇D(x̂)‖₂ − center)² at
      x̂ = x + α(x + scale·std(x)·U[0,1) − x), α per sample; ``center`` 1, ``scale`` 0.5.

    ``center`` defaults to 0 at real/fake and 1 elsewhere; a non-zero centre at real/fake uses the
    generic (‖∇‖ − c)² penalty without the ½. Reduction: per-sample norm over C·H·W, batch mean
    (zero-centred penalties scale with C·H·W). Lazy phases use the step's real/fake batches.
    """

    nets = ("D",)
    per_sample_gradients = True  # ∇ₓD(x_b) per sample: refused with a batch-mixing D norm
    AT = ("real", "fake", "interpolates", "perturbed")

    def __init__(
        self,
        *,
        net: str,
        at: str = "real",
        center: Optional[float] = None,
        one_sided: bool = False,
        half: bool = True,
        scale: float = 0.5,
    ) -> None:
        super().__init__(net=net)
        _check_choice("at", at, self.AT)
        if center is not None and (isinstance(center, bool) or not isinstance(center, (int, float)) or center < 0):
            raise ConfigError(f"center: bad value {center!r}; use 0 (zero-centred) or 1 (WGAN-GP)")
        if not scale > 0:
            raise ConfigError(f"scale: bad value {scale!r}; must be > 0")
        self.at, self.one_sided, self.half, self.scale = at, bool(one_sided), bool(half), float(scale)
        self.center = float(center) if center is not None else (0.0 if at in ("real", "fake") else 1.0)

    @property
    def shares_real_forward(self) -> bool:
        """R1 can reuse the main D step's forward on real images (the loop then sets requires_grad)."""
        return self.at == "real" and self.center == 0

    @property
    def shares_fake_forward(self) -> bool:
        """R2 can reuse the main D step's forward on generated images (their detached copy then requires grad)."""
        return self.at == "fake" and self.center == 0

    def forward(self, ctx: TermContext) -> Tensor:
        D = ctx.D_of_fake if self.at == "fake" else ctx.D_of  # class-conditional: G's images with G's classes
        if self.shares_real_forward and ctx.d_real is not None and ctx.real.requires_grad:
            return r1_from_logits(ctx.d_real, ctx.real, half=self.half)
        if self.shares_fake_forward and ctx.d_fake is not None and ctx.fake.requires_grad:
            return r1_from_logits(ctx.d_fake, ctx.fake, half=self.half)
        if self.at in ("real", "fake"):
            x = ctx.real if self.at == "real" else ctx.fake.detach()
            if self.center == 0:
                return r1_penalty(D, x, half=self.half) if self.at == "real" else r2_penalty(D, x, half=self.half)
            return grad_penalty(D, x, center=self.center, one_sided=self.one_sided)
        if self.at == "interpolates":
            return wgan_gp_penalty(D, ctx.real, ctx.fake.detach(), center=self.center, one_sided=self.one_sided)
        return dragan_penalty(D, ctx.real, center=self.center, scale=self.scale)


# ----------------------------------------------------------------------------- path length


@TERMS.register("jacobian")
class JacobianTerm(Term):
    """StyleGAN2 path length of G w.r.t. z: mean_b (‖J_zᵀ y‖₂ − a)², y ~ N(0, I)/√(H·W).

    Runs its own G forward on the first ``batch_fraction`` of ``ctx.z`` (StyleGAN2: half the
    batch) and a double backward (~2-3× a G step). The target a is an EMA of the mean length,
    a ← a + decay·(mean − a), kept in the buffer ``target`` (checkpointed; starts at 0, decay 0.01).
    As in StyleGAN2's ``loss.py``, the target is updated with this batch's mean length first and the
    penalty is taken against the UPDATED target.
    Reduction: per-sample L2 norm of the gradient over z's dims, batch mean. G only.
    """

    nets = ("G",)

    def __init__(self, *, net: str, decay: float = 0.01, batch_fraction: float = 0.5) -> None:
        super().__init__(net=net)
        if not 0.0 <= decay <= 1.0:
            raise ConfigError(f"decay: bad value {decay!r}; must be in [0, 1]")
        if not 0.0 < batch_fraction <= 1.0:
            raise ConfigError(f"batch_fraction: bad value {batch_fraction!r}; must be in (0, 1]")
        self.decay, self.batch_fraction = float(decay), float(batch_fraction)
        self.register_buffer("target", torch.tensor(0.0))

    def forward(self, ctx: TermContext) -> Tensor:
        z = ctx.z.detach()
        z = z[: max(1, int(round(z.shape[0] * self.batch_fraction)))]
        penalty, mean_length = path_length_penalty(ctx.generate, z, target=self.target, decay=self.decay)
        self.target.copy_(path_length_target_update(self.target, mean_length, decay=self.decay))
        return penalty


# ----------------------------------------------------------------------------- statistics


def first_layer_features(D: nn.Module, x: Tensor) -> Tensor:
    """D's first-layer feature maps: the layers of ``D.body`` up to and including the first activation."""
    body = getattr(D, "body", None)
    if not isinstance(body, nn.Sequential):
        raise UserError(
            f"features kind texture needs a discriminator with a 'body' Sequential; {type(D).__name__} has none"
        )
    h = x
    for layer in body:
        h = layer(h)
        if isinstance(layer, (nn.ReLU, nn.LeakyReLU, nn.ELU, nn.GELU, nn.SiLU)):
            break
    return h


@TERMS.register("features")
class FeaturesTerm(Term):
    """Statistics of generated images matched to the real batch (real side constant). On G.

    * ``matching`` — feature matching (Salimans 2016): mean_k (mean_b f(x)_k − mean_b f(G(z))_k)²
      with f = ``D.features`` (D's last hidden map, flattened). One extra D forward per batch.
    * ``colour`` — Σ_c (μ_c(x) − μ_c(G(z)))² + Σ_c (σ_c(x) − σ_c(G(z)))², per-channel moments over
      batch and pixels, on the images. Cheap.
    * ``texture`` — mean_{ij} (mean_b Gram(x)_ij − mean_b Gram(G(z))_ij)² with Gram matrices of
      **D's first-layer features** (conv + activation; a 1-channel image's own Gram is a single
      number, so the image itself would carry no texture). One partial D forward.
    Reductions as in :mod:`normgan.functional.penalties` (means, independent of resolution).
    """

    nets = ("G",)
    KINDS = ("matching", "colour", "texture")

    def __init__(self, *, net: str, kind: str = "matching") -> None:
        super().__init__(net=net)
        _check_choice("kind", kind, self.KINDS)
        self.kind = kind

    def forward(self, ctx: TermContext) -> Tensor:
        fake, real, D = _fake(ctx), ctx.real, ctx.D
        if self.kind == "colour":
            return colour_stats(real, fake)
        if self.kind == "matching":
            if not hasattr(D, "features"):
                raise UserError(
                    f"features kind matching needs a discriminator with features(x); {type(D).__name__} has none"
                )
            with torch.no_grad():
                f_real = D.features(ctx.d_input(real))
            return feature_matching(f_real, D.features(ctx.d_input(fake)))
        with torch.no_grad():
            g_real = first_layer_features(D, ctx.d_input(real))
        return texture_stats(g_real, first_layer_features(D, ctx.d_input(fake)))


@TERMS.register("tv")
class TVTerm(Term):
    """Total variation of G's output: mean|∂_h G(z)| + mean|∂_w G(z)| (``l1``) or the squares (``l2``).

    Each mean runs over all elements of its difference map (independent of resolution). Cheap. On G.
    """

    nets = ("G",)

    def __init__(self, *, net: str, norm: str = "l1") -> None:
        super().__init__(net=net)
        if norm not in ("l1", "l2"):
            raise ConfigError(f"norm: unknown norm {norm!r} for term 'tv'; choose one of: l1, l2")
        self.norm = norm

    def forward(self, ctx: TermContext) -> Tensor:
        return total_variation(_fake(ctx), norm=self.norm)


# ----------------------------------------------------------------------------- LeCam


@TERMS.register("lecam")
class LeCamTerm(Term):
    """LeCam (Tseng 2021): mean relu(D(x) − α_F)² + mean relu(α_R − D(G(z)))² (``one_sided``, the
    reference code) or the two-sided squares. On D.

    α_R, α_F are bias-corrected EMAs of D's mean logit on real/fake (e ← decay·e + (1 − decay)·mean,
    α = e/(1 − decay^t) after t updates, so the first anchor is the first batch mean, as in the
    reference implementations), updated from the step's logits at each call BEFORE the penalty and
    kept in the buffers ``anchor_real``/``anchor_fake`` with the update count ``updates``
    (checkpointed). Uses the phase's logits; in a lazy phase it runs D on the real and fake batches
    itself. Reduction: mean over logits.
    """

    nets = ("D",)

    def __init__(self, *, net: str, decay: float = 0.99, one_sided: bool = True) -> None:
        super().__init__(net=net)
        if not 0.0 <= decay <= 1.0:
            raise ConfigError(f"decay: bad value {decay!r}; must be in [0, 1]")
        self.decay, self.one_sided = float(decay), bool(one_sided)
        self.register_buffer("anchor_real", torch.tensor(0.0))
        self.register_buffer("anchor_fake", torch.tensor(0.0))
        self.register_buffer("updates", torch.tensor(0, dtype=torch.long))

    def forward(self, ctx: TermContext) -> Tensor:
        d_real = ctx.d_real if ctx.d_real is not None else ctx.D_of(ctx.real)
        d_fake = ctx.d_fake if ctx.d_fake is not None else ctx.D_of_fake(ctx.fake.detach())
        t = int(self.updates)
        self.anchor_real.copy_(lecam_anchor_update(self.anchor_real, d_real, decay=self.decay, count=t))
        self.anchor_fake.copy_(lecam_anchor_update(self.anchor_fake, d_fake, decay=self.decay, count=t))
        self.updates += 1
        return lecam_penalty(
            d_real, d_fake, anchor_real=self.anchor_real, anchor_fake=self.anchor_fake, one_sided=self.one_sided
        )


# ----------------------------------------------------------------------------- consistency


@TERMS.register("bcr")
class BCRTerm(Term):
    """Balanced consistency regularization (bCR, Zhao et al. 2021), on D:

        λ_r · mean_b (D(x)_b − D(T(x))_b)² + λ_f · mean_b (D(G(z))_b − D(T(G(z)))_b)²

    T is a random DiffAugment (:func:`normgan.functional.augment.diffaugment`) with the ops ``ops``
    (default ``["xflip", "translation"]``, the paper's flip + translation), drawn anew for each call
    from torch's default generator. λ_r = ``real_weight``, λ_f = ``fake_weight`` (default 1 each;
    0 turns that side off; StudioGAN's λ_real = λ_fake = 10 is ``weight: 10`` with the defaults).
    D(x), D(G(z)) are the phase's logits when it has them (else one D forward each); D(T(·)) is one
    extra D forward per side. Gradients reach D through both logits (as in StudioGAN, neither is
    detached); G's images are detached. In a paired run T augments D's image input y only (the
    condition x is not augmented). Reduction: mean over the batch of the squared logit differences
    (over every logit when D gives several per sample, e.g. a PatchGAN).
    """

    nets = ("D",)

    def __init__(
        self, *, net: str, real_weight: float = 1.0, fake_weight: float = 1.0, ops=("xflip", "translation")
    ) -> None:
        super().__init__(net=net)
        self.real_weight = _check_number("real_weight", real_weight)
        self.fake_weight = _check_number("fake_weight", fake_weight)
        if self.real_weight == 0 and self.fake_weight == 0:
            raise ConfigError("real_weight: bad value 0 with fake_weight 0; give one of them a weight > 0")
        if isinstance(ops, str) or not isinstance(ops, (list, tuple)) or not ops:
            raise ConfigError(f"ops: bad value {ops!r}; give a non-empty list of: {', '.join(DIFFAUGMENT_OPS)}")
        for op in ops:
            _check_choice("ops", op, DIFFAUGMENT_OPS)
        self.ops = list(ops)

    def forward(self, ctx: TermContext) -> Tensor:
        D, total = ctx.D_of, None
        if self.real_weight > 0:
            real = ctx.real.detach()
            d_real = ctx.d_real if ctx.d_real is not None else D(real)
            total = self.real_weight * consistency_penalty(d_real, D(diffaugment(real, self.ops)))
        if self.fake_weight > 0:
            fake = ctx.fake.detach()
            D = ctx.D_of_fake
            d_fake = ctx.d_fake if ctx.d_fake is not None else D(fake)
            part = self.fake_weight * consistency_penalty(d_fake, D(diffaugment(fake, self.ops)))
            total = part if total is None else total + part
        return total


@TERMS.register("zcr")
class ZCRTerm(Term):
    """Latent consistency regularization (zCR, Zhao et al. 2021), Δz ~ N(0, σ²I), σ = ``sigma`` (0.05):

    * on D: mean_b (D(G(z))_b − D(G(z + Δz))_b)², G's outputs detached (no gradient to G);
    * on G: −mean (G(z) − G(z + Δz))² over all elements, the NEGATIVE (≤ 0): G is rewarded for
      mapping nearby latents to different images (StudioGAN's ``g_loss −= λ_gen · MSE``).

    z is G's input (``ctx.z``; the input image in a paired run, which is then the one perturbed).
    Δz is drawn first, as ``torch.randn(z.shape)`` from torch's default generator (checkpointed with
    the run, so a resumed run draws the same Δz). On D, D(G(z)) is the phase's ``d_fake`` when
    present; G(z + Δz) is one extra G forward (without graph) plus one D forward. On G, G(z) is the
    phase's ``fake`` (with graph) when present, else G(z); G(z + Δz) is one extra G forward with
    graph. StudioGAN's weights: 20 on D (λ_dis), 0.5 on G (λ_gen), σ = 0.05. Reductions: batch mean
    of the squared logit differences (D); mean over all B·C·H·W elements (G).
    """

    nets = ("D", "G")

    def __init__(self, *, net: str, sigma: float = 0.05) -> None:
        super().__init__(net=net)
        self.sigma = _check_number("sigma", sigma, positive=True)

    def forward(self, ctx: TermContext) -> Tensor:
        z = ctx.z.detach()
        z_eps = z + self.sigma * torch.randn(z.shape, dtype=z.dtype, device=z.device)
        if self.net == "G":
            fake = _fake(ctx)
            return zcr_generator_penalty(fake, ctx.generate(z_eps).to(fake.dtype))
        with torch.no_grad():
            fake_eps = ctx.generate(z_eps)
            fake = ctx.fake if ctx.fake is not None else ctx.generate(z)
        fake, fake_eps = fake.detach(), fake_eps.to(fake.dtype)
        d_fake = ctx.d_fake if ctx.d_fake is not None else ctx.D_of_fake(fake)
        return consistency_penalty(d_fake, ctx.D_of_fake(fake_eps))


# ----------------------------------------------------------------------------- class conditioning


@TERMS.register("ac")
class ACTerm(Term):
    """AC-GAN's auxiliary classification loss (Odena et al. 2017), with D's class logits
    c(x) = ``D.class_logits(x)`` (a discriminator with ``conditioning: ac``) and CE(c, y) =
    −mean_b log softmax(c_b)[y_b]:

    * on D: CE(c(x_real), y) + CE(c(x_fake), y_g), y the real images' classes, y_g the classes G was
      given, G's images detached;
    * on G: CE(c(G(z, y_g)), y_g) (the phase's ``fake``, or a new G forward in a lazy phase).

    Class-conditional runs only (``ctx.labels``/``g_labels``). One extra D forward per side (the
    adversarial logits do not share it), of the raw D: augmentation does not reach this term.
    Reduction: the batch mean of each cross-entropy (D: the sum of the two means).
    """

    nets = ("D", "G")
    needs_class_head = True  # validate_regularizers: model.discriminator.conditioning must be ac

    def forward(self, ctx: TermContext) -> Tensor:
        if ctx.g_labels is None:
            raise ConfigError("regularizers: term 'ac' needs a class-conditional run (model.*.conditioning set)")
        classify = getattr(ctx.D, "class_logits", None)
        if classify is None:
            raise ConfigError(f"regularizers: term 'ac' needs class logits; {type(ctx.D).__name__} has none")
        if self.net == "G":
            return nn.functional.cross_entropy(classify(_fake(ctx)).float(), ctx.g_labels)
        real = nn.functional.cross_entropy(classify(ctx.real.detach()).float(), ctx.labels)
        return real + nn.functional.cross_entropy(classify(ctx.fake.detach()).float(), ctx.g_labels)


# ----------------------------------------------------------------------------- reconstruction


@TERMS.register("recon")
class ReconTerm(Term):
    """Reconstruction ‖G(x) − y‖ with any registered norm (``normgan.functional.NORMS``). Paired runs only.

    ``reduction: mean`` (default): the norm's own reduction — ``l1`` is the mean over all B·C·H·W
    elements (pix2pix, weight 100). ``reduction: sum``: the sum over the batch, as the formulas
    λ·Σ_i |G(x_i) − y_i| (``norm: l1``: Σ over every element) and λ·Σ_i ‖G(x_i) − y_i‖²
    (``norm: sql2``) are written; its scale grows with the batch size (and, for l1, the image size).
    ``norm_params`` are the norm's options (e.g. ``{delta: 0.5}`` for huber).
    """

    nets = ("G",)
    paired_only = True

    def __init__(
        self, *, net: str, norm: str = "l1", norm_params: Optional[dict] = None, reduction: str = "mean"
    ) -> None:
        super().__init__(net=net)
        fn = NORMS.get(norm, key="norm")
        params = dict(norm_params or {})
        try:
            inspect.signature(fn).bind(torch.zeros(1), **params)
        except TypeError:
            allowed = [p for p in inspect.signature(fn).parameters if p != "residual"]
            raise ConfigError(
                f"norm_params: norm {norm!r} takes {', '.join(allowed) or 'no options'}; got {', '.join(sorted(params))}"
            ) from None
        try:
            fn(torch.zeros(1, 1, 1, 1), **params)  # bad values (huber delta <= 0) fail now, not in training
        except (TypeError, ValueError) as e:
            raise ConfigError(f"norm_params: {e}") from None
        _check_choice("reduction", reduction, ("mean", "sum"))
        self.norm, self.norm_params, self.reduction = norm, params, reduction

    def forward(self, ctx: TermContext) -> Tensor:
        fake = _fake(ctx)
        value = recon_penalty(fake, ctx.target, norm=self.norm, **self.norm_params)
        return value * sum_scale(self.norm, fake) if self.reduction == "sum" else value
