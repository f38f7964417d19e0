"""Pruning a generator trained with hard-concrete L0 gates into a smaller, gate-free generator.

    G_small = prune_generator(G)          # eval-mode outputs identical to G.eval()
    count_parameters(G_small) < count_parameters(G)

In eval mode each gate is a constant per channel, g_j = clamp(σ(log α_j)(ζ − γ) + γ, 0, 1), applied
after the block's [ConvT, norm, ReLU, (Dropout)]. A channel with g_j = 0 contributes nothing to the
next layer, so its output filter (ConvT weight column and bias), its norm entries and the next
layer's input filter are removed; an open channel's g_j (after ReLU, before a linear layer) is
folded exactly into the next layer's input weights: W_next[j] ← g_j·W_next[j].
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from normgan.functional.gates import HardConcreteGate

_CONVT = (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)
_CONV = (nn.Conv1d, nn.Conv2d, nn.Conv3d)


def count_parameters(module: nn.Module) -> int:
    """Number of parameter elements (trainable or not) of ``module``."""
    return sum(p.numel() for p in module.parameters())


def _slice_out(conv: nn.Module, keep: torch.Tensor) -> None:
    """Keep only the output channels ``keep`` of a conv / transposed conv / linear layer, in place."""
    dim = 1 if isinstance(conv, _CONVT) else 0
    conv.weight = nn.Parameter(conv.weight.detach().index_select(dim, keep).clone())
    if conv.bias is not None:
        conv.bias = nn.Parameter(conv.bias.detach()[keep].clone())
    if isinstance(conv, _CONVT + _CONV):
        conv.out_channels = int(keep.numel())
    else:
        conv.out_features = int(keep.numel())


def _slice_in_and_scale(conv: nn.Module, keep: torch.Tensor, scale: torch.Tensor) -> None:
    """Keep the input channels ``keep`` of the next layer and multiply their weights by ``scale``."""
    dim = 0 if isinstance(conv, _CONVT) else 1
    w = conv.weight.detach().index_select(dim, keep)
    shape = [1] * w.dim()
    shape[dim] = -1
    conv.weight = nn.Parameter((w * scale.to(w.dtype).reshape(shape)).clone())
    if isinstance(conv, _CONVT + _CONV):
        conv.in_channels = int(keep.numel())
    else:
        conv.in_features = int(keep.numel())


def _slice_norm(norm: nn.Module, keep: torch.Tensor) -> nn.Module:
    """The per-channel normalization restricted to ``keep`` (BatchNorm in eval mode, InstanceNorm, none)."""
    if isinstance(norm, nn.Identity):
        return norm
    if isinstance(
        norm, (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.InstanceNorm1d, nn.InstanceNorm2d, nn.InstanceNorm3d)
    ):
        ref = next((t for t in (norm.weight, norm.running_mean) if t is not None), None)
        where = {"device": ref.device, "dtype": ref.dtype} if ref is not None else {}
        new = type(norm)(
            int(keep.numel()),
            eps=norm.eps,
            momentum=norm.momentum,
            affine=norm.affine,
            track_running_stats=norm.track_running_stats,
            **where,
        )  # on the pruned model's device
        with torch.no_grad():
            if norm.affine:
                new.weight.copy_(norm.weight[keep])
                new.bias.copy_(norm.bias[keep])
            if norm.track_running_stats and norm.running_mean is not None:
                new.running_mean.copy_(norm.running_mean[keep])
                new.running_var.copy_(norm.running_var[keep])
                new.num_batches_tracked.copy_(norm.num_batches_tracked)
        return new
    raise NotImplementedError(
        f"prune_generator cannot remove channels under {type(norm).__name__}: its statistics mix channels; "
        "use batch, instance or no normalization in a gated generator"
    )


def prune_generator(G: nn.Module) -> nn.Module:
    """A gate-free copy of a gated DCGAN-style generator with closed channels removed (eval mode).

    Expects ``G.body`` to be a Sequential of blocks ``[Conv/ConvT, norm, activation, (Dropout), gate]``
    and ``G.to_image`` the output layer (as :class:`~normgan.models.dcgan.DCGANGenerator` with
    ``gates=True``). The result is in eval mode and gives the same outputs as ``G.eval()``; a layer
    whose gates are all closed keeps one (zero-weighted) channel so shapes stay valid. ``G`` itself
    is not modified. Raises NotImplementedError for norms that mix channels (layer/group norm).
    """
    P = copy.deepcopy(G).eval()
    layers = list(P.body)
    out: list[nn.Module] = []
    pending = None  # (keep, gate values) of the last gated block, folded into the next linear layer
    for layer in layers:
        if isinstance(layer, _CONVT + _CONV + (nn.Linear,)):
            if pending is not None:
                _slice_in_and_scale(layer, *pending)
                pending = None
            out.append(layer)
        elif isinstance(layer, HardConcreteGate):
            with torch.no_grad():
                g = layer.eval_gates().detach()
            keep = torch.nonzero(g > 0).flatten()
            if keep.numel() == 0:
                keep = torch.zeros(
                    1, dtype=torch.long, device=g.device
                )  # one channel with gate 0 → its weights become 0
            # find the block's conv and norm among the layers appended since the last conv
            conv_idx = max(i for i, m in enumerate(out) if isinstance(m, _CONVT + _CONV + (nn.Linear,)))
            _slice_out(out[conv_idx], keep)
            for i in range(conv_idx + 1, len(out)):
                if not isinstance(out[i], (nn.ReLU, nn.LeakyReLU, nn.Dropout, nn.Dropout2d)):
                    out[i] = _slice_norm(out[i], keep)
            pending = (keep, g[keep])
        else:
            out.append(layer)
    if pending is not None:
        _slice_in_and_scale(P.to_image, *pending)
    P.body = nn.Sequential(*out)
    return P.eval()


__all__ = ["prune_generator", "count_parameters"]
