"""Metrics of paired image-to-image synthesis, as pure functions of image tensors.

A paired model maps an input ``x`` to an output ``G(x)`` that is compared with the known target
``y``.  Every image argument is a float tensor in ``[-1, 1]`` of shape ``(B, C, H, W)`` with
``C`` in ``{1, 3}``; outputs and targets have the same shape.

Conventions (stated once, used everywhere):

* PSNR, SSIM, sharpness and dropout diversity are measured on the ``[0, 1]`` scale,
  ``u = (x + 1) / 2``; the L1 error and LPIPS on the ``[-1, 1]`` scale the model produces.
  Values outside ``[-1, 1]`` are not clipped, except for LPIPS (whose network rejects them).
* Computations are done in float64 (LPIPS: float32, its network's dtype); per-image results are
  float64 tensors of shape ``(B,)``, dataset-level results Python floats.
* Per-image metrics are averaged over images (every image weighs the same, whatever the batch
  it came in): :class:`PairedScores` over several batches equals the per-image metrics over the
  concatenated batches.

LPIPS never downloads anything: :func:`make_lpips` builds torchmetrics'
``LearnedPerceptualImagePatchSimilarity`` only when the torchvision backbone weights are already
in ``$TORCH_HOME/hub/checkpoints`` (:func:`lpips_weights_path`), and raises a one-line
:class:`~normgan.errors.UserError` otherwise.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Optional

import torch
from torch import Tensor, nn

from normgan.errors import UserError

__all__ = [
    "psnr",
    "ssim",
    "l1_error",
    "sharpness",
    "sharpness_ratio",
    "dropout_diversity",
    "classifier_score",
    "PairedScores",
    "lpips_weights_path",
    "make_lpips",
    "lpips_or_none",
    "LPIPS_NETS",
    "CHUNK_VALUES",
    "chunk_size",
]

#: LPIPS backbones: ``net`` name -> the torchvision weights enum torchmetrics loads (``.DEFAULT``,
#: which is ``IMAGENET1K_V1`` for all three).
LPIPS_NETS = {"alex": "AlexNet_Weights", "vgg": "VGG16_Weights", "squeeze": "SqueezeNet1_1_Weights"}

#: SSIM parameters (Wang et al., 2004): Gaussian window of 11 taps, σ = 1.5, K1, K2, data range 1.
SSIM_SIGMA, SSIM_KERNEL, SSIM_K1, SSIM_K2 = 1.5, 11, 0.01, 0.03

#: Work bound of :class:`PairedScores`: each metric sees at most this many pixel values (B·C·H·W)
#: at a time (≈ 120 MB of float64 temporaries in :func:`ssim`), and never more than
#: :data:`CHUNK_MAX_IMAGES` images; a single larger image is scored alone.
CHUNK_VALUES = 2**20
CHUNK_MAX_IMAGES = 256


def chunk_size(image_shape) -> int:
    """Images per chunk for images of shape ``(C, H, W)``: ``CHUNK_VALUES // (C·H·W)``, clamped to
    ``[1, CHUNK_MAX_IMAGES]``."""
    per_image = max(1, math.prod(int(d) for d in image_shape))
    return max(1, min(CHUNK_MAX_IMAGES, CHUNK_VALUES // per_image))


# ----------------------------------------------------------------------------------------- helpers


def _check_images(x: Tensor, what: str) -> Tensor:
    x = torch.as_tensor(x)
    if x.ndim != 4 or x.shape[1] not in (1, 3):
        raise ValueError(f"{what} must have shape (B, C, H, W) with C in {{1, 3}}, got {tuple(x.shape)}")
    if not x.is_floating_point():
        raise ValueError(f"{what} must be a float tensor in [-1, 1], got dtype {x.dtype}")
    return x.detach()


def _check_pair(outputs: Tensor, targets: Tensor) -> tuple[Tensor, Tensor]:
    outputs, targets = _check_images(outputs, "outputs"), _check_images(targets, "targets")
    if outputs.shape != targets.shape:
        raise ValueError(
            f"outputs and targets must have the same shape, got {tuple(outputs.shape)} and {tuple(targets.shape)}"
        )
    return outputs, targets.to(outputs.device)


def _unit(x: Tensor) -> Tensor:
    """``[-1, 1]`` -> ``[0, 1]`` in float64."""
    return (x.double() + 1.0) / 2.0


# ------------------------------------------------------------------------------- per-image metrics


def psnr(outputs: Tensor, targets: Tensor) -> Tensor:
    r"""Per-image peak signal-to-noise ratio in dB on ``[0, 1]`` images.

    .. math:: \mathrm{PSNR}_b = 10 \log_{10} \frac{1}{\mathrm{MSE}_b}, \qquad
              \mathrm{MSE}_b = \operatorname{mean}_{c,h,w} (u^o_{bchw} - u^t_{bchw})^2

    with ``u = (x + 1) / 2`` (data range 1), in float64 (torchmetrics' ``peak_signal_noise_ratio``
    with ``dim=(1, 2, 3)``, ``reduction="none"`` computes the same, up to its float32 ``10 / ln 10``
    constant: a relative 5e-8; not importing it here saves its import, seconds and ~100 MB).  No
    reduction over the batch: returns ``(B,)`` float64; an image identical to its target
    (``MSE = 0``) gives ``+inf``.
    """
    outputs, targets = _check_pair(outputs, targets)
    mse = (_unit(outputs) - _unit(targets)).square_().flatten(1).mean(1)
    return -10.0 * torch.log10(mse)


def _gaussian_taps(sigma: float = SSIM_SIGMA, size: int = SSIM_KERNEL) -> list[float]:
    """The normalized 1-D Gaussian window (``size`` taps, centred): ``exp(-d²/2σ²) / Σ``."""
    d = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-((d / sigma) ** 2) / 2)
    return (g / g.sum()).tolist()


def _filter_valid(x: Tensor, taps: list[float]) -> Tensor:
    """Separable ``len(taps)`` × ``len(taps)`` correlation of ``x`` (..., H, W) with ``outer(taps, taps)``
    over the positions where the window fits ("valid"): ``(..., H - k + 1, W - k + 1)``.

    Done as two passes of in-place shifted multiply-adds, so it holds about two copies of ``x``
    (a 2-D convolution in float64 on CPU unfolds ``k²`` copies of it: 121 for the SSIM window)."""
    k = len(taps)
    h, w = x.shape[-2] - k + 1, x.shape[-1] - k + 1
    rows = x[..., :, 0:w] * taps[0]
    for i in range(1, k):
        rows.add_(x[..., :, i : i + w], alpha=taps[i])
    out = rows[..., 0:h, :] * taps[0]
    for i in range(1, k):
        out.add_(rows[..., i : i + h, :], alpha=taps[i])
    return out


def ssim(outputs: Tensor, targets: Tensor) -> Tensor:
    r"""Per-image structural similarity on ``[0, 1]`` images.

    .. math:: \mathrm{SSIM}(p) = \frac{(2\mu_o\mu_t + C_1)(2\sigma_{ot} + C_2)}
                                      {(\mu_o^2 + \mu_t^2 + C_1)(\sigma_o^2 + \sigma_t^2 + C_2)},
              \quad C_1 = (0.01)^2,\ C_2 = (0.03)^2

    where the local means, variances and covariance are Gaussian-weighted (11 × 11 window,
    σ = 1.5; population moments; the variances clamped at 0), per channel.  The image score is the
    mean of the SSIM map over channels and **all** pixels: the image is reflect-padded by 5 px
    (``torch`` ``"reflect"``, i.e. the edge pixel is not repeated) so that the map covers the whole
    image — the definition of ``torchmetrics``' ``structural_similarity_index_measure``
    (``gaussian_kernel=True, reduction="none"``), which this equals to float64 rounding (tests
    check 1e-12).  scikit-image instead averages only the interior (5-px border cropped); the
    two agree exactly on the interior.  Returns ``(B,)`` float64, no reduction over the batch;
    images must be at least 6 px high and wide.

    The Gaussian filter is separable and applied as two 1-D passes of shifted multiply-adds: the
    memory is a few float64 copies of the batch (76 MB for 64 RGB images of 64 px, where torchmetrics'
    grouped 2-D convolution in float64 unfolds 121 copies on CPU: 1.6 GB) and it runs 10–15× faster
    on CPU (0.35 s instead of 5.2 s for those 64 images, measured on a busy 2-core machine).
    Callers with many images still pass them in chunks (:class:`PairedScores` does).
    """
    outputs, targets = _check_pair(outputs, targets)
    if min(outputs.shape[-2:]) < 6:
        raise ValueError(f"ssim needs images of at least 6 x 6 pixels, got {tuple(outputs.shape)}")
    pad = SSIM_KERNEL // 2
    u = torch.nn.functional.pad(_unit(outputs), (pad,) * 4, mode="reflect")
    v = torch.nn.functional.pad(_unit(targets), (pad,) * 4, mode="reflect")
    taps = _gaussian_taps()
    mu_u, mu_v = _filter_valid(u, taps), _filter_valid(v, taps)
    uu, vv, uv = mu_u * mu_u, mu_v * mu_v, mu_u * mu_v
    del mu_u, mu_v
    var_u = _filter_valid(u * u, taps).sub_(uu).clamp_(min=0.0)
    var_v = _filter_valid(v * v, taps).sub_(vv).clamp_(min=0.0)
    cov = _filter_valid(u * v, taps).sub_(uv)
    del u, v
    c1, c2 = (SSIM_K1 * 1.0) ** 2, (SSIM_K2 * 1.0) ** 2  # data range 1
    num = uv.mul_(2).add_(c1).mul_(cov.mul_(2).add_(c2))
    den = uu.add_(vv).add_(c1).mul_(var_u.add_(var_v).add_(c2))
    return num.div_(den).flatten(1).mean(1)


def l1_error(outputs: Tensor, targets: Tensor) -> Tensor:
    r"""Per-image mean absolute error on the ``[-1, 1]`` scale:
    :math:`\operatorname{mean}_{c,h,w} |o_{bchw} - t_{bchw}|`.  Returns ``(B,)`` float64, no
    reduction over the batch (it is twice the error on the ``[0, 1]`` scale)."""
    outputs, targets = _check_pair(outputs, targets)
    return (outputs.double() - targets.double()).abs().flatten(1).mean(1)


def sharpness(images: Tensor) -> Tensor:
    r"""Per-image mean gradient magnitude on ``[0, 1]`` images.

    With forward differences ``dx = u[:, :, :-1, 1:] - u[:, :, :-1, :-1]`` and
    ``dy = u[:, :, 1:, :-1] - u[:, :, :-1, :-1]`` (both on the common ``(H-1, W-1)`` region):

    .. math:: S_b = \operatorname{mean}_{c,h,w} \sqrt{dx_{bchw}^2 + dy_{bchw}^2}

    Returns ``(B,)`` float64 (0 for a constant image); images need ``H, W >= 2``.
    """
    u = _unit(_check_images(images, "images"))
    if u.shape[-1] < 2 or u.shape[-2] < 2:
        raise ValueError(f"sharpness needs images of at least 2 x 2 pixels, got {tuple(u.shape)}")
    base = u[:, :, :-1, :-1]
    dx = u[:, :, :-1, 1:] - base
    dy = u[:, :, 1:, :-1] - base
    return (dx.square() + dy.square()).sqrt().flatten(1).mean(1)


def _ratio(num: float, den: float) -> float:
    if den == 0:
        return float("nan") if num == 0 else float("inf")
    return num / den


def sharpness_ratio(outputs: Tensor, targets: Tensor) -> float:
    r"""``mean_b sharpness(outputs) / mean_b sharpness(targets)``: 1 when the outputs are as
    sharp as the targets, below 1 for blurry outputs.  The means are over images, so the ratio over
    several batches is the ratio of the summed sharpness.  ``inf`` when the targets are constant
    and the outputs are not, NaN when both are constant."""
    outputs, targets = _check_pair(outputs, targets)
    return _ratio(float(sharpness(outputs).sum()), float(sharpness(targets).sum()))


def dropout_diversity(samples: Tensor) -> float:
    r"""Diversity of a stochastic generator (e.g. with dropout kept on at test time).

    ``samples`` has shape ``(K, B, C, H, W)``: ``K >= 1`` outputs for the same ``B`` inputs, each in
    ``[-1, 1]``, measured on the ``[0, 1]`` scale ``u = (x + 1) / 2``:

    .. math:: D = \operatorname{mean}_{b,c,h,w} \sqrt{\tfrac{1}{K}\textstyle\sum_k (u_{kbchw} - \bar u_{bchw})^2}

    (population std over ``K``, ``unbiased=False``).  0 for a deterministic generator; two
    samples ``m ± a`` (on the ``[0, 1]`` scale) give ``a``.
    """
    s = torch.as_tensor(samples).detach()
    if s.ndim != 5 or s.shape[2] not in (1, 3):
        raise ValueError(f"samples must have shape (K, B, C, H, W) with C in {{1, 3}}, got {tuple(s.shape)}")
    if not s.is_floating_point():
        raise ValueError(f"samples must be a float tensor in [-1, 1], got dtype {s.dtype}")
    return float(_unit(s).std(dim=0, unbiased=False).mean())


# ------------------------------------------------------------------------------------ classifier


def _logits(classifier, x: Tensor) -> Tensor:
    """Logits ``(B, K)``: ``classifier.logits(x)`` when it has that method (normgan's
    ``DomainClassifier``, whose ``forward`` returns features), else ``classifier(x)``; a
    ``(features, logits)`` pair is reduced to its logits."""
    fn = getattr(classifier, "logits", None)
    out = fn(x) if callable(fn) else classifier(x)
    if isinstance(out, (tuple, list)):
        out = out[-1]
    if out.ndim != 2 or out.shape[0] != x.shape[0]:
        raise ValueError(
            f"the classifier must return logits of shape (B, K), got {tuple(out.shape)} for B={x.shape[0]}"
        )
    return out


def _device_of(module) -> Optional[torch.device]:
    if isinstance(module, nn.Module):
        for t in module.parameters():
            return t.device
        for t in module.buffers():
            return t.device
    return None


def _as_float_batch(x: Tensor) -> Tensor:
    """A batch as float in ``[-1, 1]``: uint8 ``[0, 255]`` mapped by ``x / 127.5 - 1`` (as
    ``normgan.data.batch_to_float``), float passed through."""
    return x.to(torch.float32).div_(127.5).sub_(1.0) if x.dtype == torch.uint8 else x


def _count_correct(classifier, images: Tensor, labels: Tensor, batch_size: int) -> int:
    device = _device_of(classifier) or images.device
    was_training = isinstance(classifier, nn.Module) and classifier.training
    if was_training:
        classifier.eval()
    correct = 0
    try:
        with torch.no_grad():
            for s in range(0, images.shape[0], batch_size):
                pred = _logits(classifier, _as_float_batch(images[s : s + batch_size].to(device))).argmax(1).cpu()
                correct += int((pred == labels[s : s + batch_size].cpu()).sum())
    finally:
        if was_training:
            classifier.train(True)
    return correct


def _check_labels(images: Tensor, labels) -> Tensor:
    labels = torch.as_tensor(labels).detach().long().reshape(-1)
    if labels.shape[0] != images.shape[0]:
        raise ValueError(f"got {labels.shape[0]} labels for {images.shape[0]} images")
    return labels


def classifier_score(classifier, images: Tensor, labels: Tensor, *, batch_size: int = 500) -> float:
    r"""Accuracy of a classifier on generated images:
    :math:`\frac{1}{N}\sum_i [\operatorname{argmax}_k \mathrm{logits}_{ik} = y_i]`.

    ``classifier`` returns logits ``(B, K)`` for images in ``[-1, 1]``: its ``logits(x)`` method is
    used when it has one (normgan's :class:`~normgan.metrics.domain.DomainClassifier`), otherwise
    ``classifier(x)`` (a returned ``(features, logits)`` pair is reduced to the logits).  Run in
    ``batch_size`` chunks under ``torch.no_grad()`` on the classifier's device, in eval mode (a
    module in training mode is switched back afterwards).  Ties in the argmax go to the lowest
    class index (``torch.argmax``).

    ``images`` may also be uint8 in ``[0, 255]`` (a dataset split as stored): each batch is mapped
    to ``[-1, 1]`` (``x / 127.5 - 1``) and moved to the device on its own, so a whole split is never
    held as float (4× its size) nor copied to the device at once.
    """
    images = torch.as_tensor(images).detach()
    if images.dtype != torch.uint8:
        images = _check_images(images, "images")
    elif images.ndim != 4 or images.shape[1] not in (1, 3):
        raise ValueError(f"images must have shape (B, C, H, W) with C in {{1, 3}}, got {tuple(images.shape)}")
    labels = _check_labels(images, labels)
    if images.shape[0] == 0:
        raise ValueError("classifier_score needs at least one image")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    return _count_correct(classifier, images, labels, int(batch_size)) / images.shape[0]


# ------------------------------------------------------------------------------------------ LPIPS


def lpips_weights_path(net: str = "alex") -> Path:
    """Where torchvision keeps the backbone weights LPIPS ``net`` needs:
    ``torch.hub.get_dir()/checkpoints/<file name of the weights URL>``, i.e.
    ``$TORCH_HOME/hub/checkpoints/alexnet-owt-7be5be79.pth`` for ``"alex"``
    (``AlexNet_Weights.IMAGENET1K_V1``)."""
    if net not in LPIPS_NETS:
        raise UserError(f"unknown LPIPS network {net!r}; use one of {', '.join(LPIPS_NETS)}")
    from urllib.parse import urlparse

    import torchvision.models

    weights = getattr(torchvision.models, LPIPS_NETS[net]).DEFAULT  # what torchmetrics' LPIPS loads
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(urlparse(weights.url).path)


def _lpips_linear_path(net: str) -> Path:
    """The LPIPS linear-layer weights shipped inside the torchmetrics package."""
    import torchmetrics.functional.image.lpips as tm_lpips

    return Path(tm_lpips.__file__).resolve().parent / "lpips_models" / f"{net}.pth"


_TORCHVISION_CALL = {"alex": "alexnet", "vgg": "vgg16", "squeeze": "squeezenet1_1"}


def make_lpips(*, net: str = "alex", device="cpu") -> nn.Module:
    """torchmetrics' ``LearnedPerceptualImagePatchSimilarity(net_type=net, normalize=False,
    reduction="mean")`` on ``device``, in eval mode, for images in ``[-1, 1]`` with 3 channels
    (:class:`PairedScores` repeats grey images).  Calling it returns the mean LPIPS over the batch.

    Never downloads: it is built only when the torchvision backbone weights
    (:func:`lpips_weights_path`) and the LPIPS linear layers shipped with torchmetrics
    (``torchmetrics/functional/image/lpips_models/<net>.pth``) are on disk; otherwise a one-line
    :class:`~normgan.errors.UserError` names the missing file and how to provide it.  With the
    AlexNet backbone, images must be at least 32 px high and wide.
    """
    if net not in LPIPS_NETS:
        raise UserError(f"unknown LPIPS network {net!r}; use one of {', '.join(LPIPS_NETS)}")
    try:
        import torchvision  # noqa: F401
        from torchmetrics.image.lpip import LearnedPerceptualImagePatchSimilarity
    except ImportError as exc:
        raise UserError(f"LPIPS is unavailable: {exc}; pip install torchmetrics torchvision") from None
    path = lpips_weights_path(net)
    if not path.is_file():
        call = f'torchvision.models.{_TORCHVISION_CALL[net]}(weights="IMAGENET1K_V1")'
        raise UserError(
            f"LPIPS ({net}) is unavailable offline: the torchvision weights are missing at {path}; "
            f"copy {path.name} there (or point TORCH_HOME to a folder whose hub/checkpoints has it); on a machine "
            f"with network, python -c 'import torchvision; {call}' saves it in that machine's ~/.cache/torch/hub/checkpoints"
        )
    linear = _lpips_linear_path(net)
    if not linear.is_file():
        raise UserError(
            f"LPIPS ({net}) is unavailable: the linear-layer weights that ship with torchmetrics are missing at "
            f"{linear}; reinstall torchmetrics (pip install --force-reinstall torchmetrics)"
        )
    try:
        metric = LearnedPerceptualImagePatchSimilarity(net_type=net, normalize=False, reduction="mean")
    except Exception as exc:  # a truncated or corrupted weights file
        msg = (str(exc).strip().splitlines() or [""])[0][:200]
        raise UserError(
            f"LPIPS ({net}) could not load {path} ({type(exc).__name__}: {msg}); replace that file with a good copy"
        ) from None
    return metric.to(device).eval()


def lpips_or_none(*, net: str = "alex", device="cpu") -> tuple[Optional[nn.Module], Optional[str]]:
    """``(make_lpips(net=net, device=device), None)``, or ``(None, message)`` with the one-line
    reason when LPIPS is unavailable, for callers that continue without it."""
    try:
        return make_lpips(net=net, device=device), None
    except UserError as exc:
        return None, str(exc)


def _lpips_sum(lpips, outputs: Tensor, targets: Tensor) -> float:
    """Sum over the batch of the per-image LPIPS: grey images repeated to 3 channels, clipped to
    ``[-1, 1]``, float32 on the module's device.  ``lpips(o, t)`` may return the batch mean (a
    scalar, as :func:`make_lpips`'s module does) or per-image values."""
    device = _device_of(lpips) or outputs.device
    o = outputs.clamp(-1, 1).float().to(device)
    t = targets.clamp(-1, 1).float().to(device)
    if o.shape[1] == 1:
        o, t = o.expand(-1, 3, -1, -1), t.expand(-1, 3, -1, -1)
    with torch.no_grad():
        val = torch.as_tensor(lpips(o.contiguous(), t.contiguous())).double()
    if val.numel() == 1:
        return float(val.reshape(())) * o.shape[0]
    if val.numel() != o.shape[0]:
        raise ValueError(f"lpips returned {val.numel()} values for a batch of {o.shape[0]}")
    return float(val.sum())


# ------------------------------------------------------------------------------------- aggregator


class PairedScores:
    """Accumulates the paired metrics over batches; :meth:`compute` returns means over images.

    ``compute()`` returns a dict:

    * ``"psnr"``: mean of the **finite** per-image PSNRs; images identical to their target
      (``MSE = 0``, PSNR ``+inf``) are excluded from the mean (one such image would make the mean
      ``inf``); ``+inf`` if every image is identical to its target;
    * ``"ssim"`` (unless ``ssim=False``: it is the slow one on CPU), ``"l1"``: means of :func:`ssim`
      and :func:`l1_error` over all images;
    * ``"sharpness_ratio"``: :func:`sharpness_ratio` over all images;
    * ``"lpips"`` (only with ``lpips``): mean per-image LPIPS (``lpips`` is a module from
      :func:`make_lpips` or any callable ``(outputs, targets) -> batch mean or (B,)``; grey images
      are repeated to 3 channels);
    * ``"classifier_score"`` (only with ``classifier`` and once labels were passed): accuracy of
      the classifier on the *outputs* against ``labels`` (see :func:`classifier_score`), over the
      batches that came with labels;
    * ``"n"``: the number of images.
    """

    def __init__(self, *, lpips=None, classifier=None, ssim: bool = True) -> None:
        self.lpips = lpips
        self.classifier = classifier
        self.with_ssim = ssim
        self.reset()

    def reset(self) -> None:
        self.n = 0
        self._psnr_sum, self._psnr_count = 0.0, 0
        self._ssim_sum = self._l1_sum = 0.0
        self._sharp_out = self._sharp_tgt = 0.0
        self._lpips_sum = 0.0
        self._correct, self._labelled = 0, 0

    def update(self, outputs: Tensor, targets: Tensor, labels: Optional[Tensor] = None) -> None:
        """Add a batch of outputs and their targets (``(B, C, H, W)`` in ``[-1, 1]``), and the
        class labels ``(B,)`` of the targets when the classifier score is wanted.

        Any ``B`` is fine: the batch is scored in chunks of :func:`chunk_size` images (each
        metric sees at most :data:`CHUNK_VALUES` pixel values at a time, each chunk is moved to
        the device on its own), so the memory does not grow with ``B`` beyond the inputs
        themselves; the sums, hence :meth:`compute`, do not depend on the chunking."""
        outputs, targets = _check_images(outputs, "outputs"), _check_images(targets, "targets")
        if outputs.shape != targets.shape:
            raise ValueError(
                f"outputs and targets must have the same shape, got {tuple(outputs.shape)} and {tuple(targets.shape)}"
            )
        if outputs.shape[0] == 0:
            return
        if self.classifier is not None and labels is not None:
            labels = _check_labels(outputs, labels)
        else:
            labels = None
        step = chunk_size(outputs.shape[1:])
        for s in range(0, outputs.shape[0], step):
            self._update_chunk(
                outputs[s : s + step],
                targets[s : s + step].to(outputs.device),
                None if labels is None else labels[s : s + step],
            )

    def _update_chunk(self, outputs: Tensor, targets: Tensor, labels: Optional[Tensor]) -> None:
        p = psnr(outputs, targets)
        finite = torch.isfinite(p)
        self._psnr_sum += float(p[finite].sum())
        self._psnr_count += int(finite.sum())
        if self.with_ssim:
            self._ssim_sum += float(ssim(outputs, targets).sum())
        self._l1_sum += float(l1_error(outputs, targets).sum())
        self._sharp_out += float(sharpness(outputs).sum())
        self._sharp_tgt += float(sharpness(targets).sum())
        if self.lpips is not None:
            self._lpips_sum += _lpips_sum(self.lpips, outputs, targets)
        if labels is not None:
            self._correct += _count_correct(self.classifier, outputs, labels, 500)
            self._labelled += outputs.shape[0]
        self.n += outputs.shape[0]

    def compute(self) -> dict:
        """The means over all images added so far (see the class docstring)."""
        if self.n == 0:
            raise ValueError("PairedScores.compute() before any update(); add at least one batch")
        out = {
            "psnr": self._psnr_sum / self._psnr_count if self._psnr_count else math.inf,
            "l1": self._l1_sum / self.n,
            "sharpness_ratio": _ratio(self._sharp_out, self._sharp_tgt),
        }
        if self.with_ssim:
            out["ssim"] = self._ssim_sum / self.n
        if self.lpips is not None:
            out["lpips"] = self._lpips_sum / self.n
        if self.classifier is not None and self._labelled:
            out["classifier_score"] = self._correct / self._labelled
        out["n"] = self.n
        return out
