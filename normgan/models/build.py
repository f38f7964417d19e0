"""Build the networks a config describes, the same way for training, sampling and evaluation."""

from __future__ import annotations

from torch import nn

from normgan.models import build_discriminator, build_generator
from normgan.regularizers import build_constraints, build_regularizers


def build_networks(cfg, *, resolution: int, channels: int, in_channels: int | None = None, classes: int | None = None):
    """(G, D, regularizers, constraints) for ``cfg``.

    ``in_channels``: the input image's channels of a paired run; G then maps it to ``channels``
    and D is conditional, seeing ``in_channels + channels`` (the condition and the image).
    ``classes``: the number of classes of a class-conditional run (``model.*.conditioning``).

    G gets hard-concrete gates when an L0 weights term asks for them, and the constraints'
    parametrizations (spectral normalization) are applied, so state dict keys match checkpoints.
    """
    regs = build_regularizers(cfg.regularizers, paired=cfg.paired)
    gates = any(r.term.needs_gates for r in regs)
    G = build_generator(
        cfg.model.generator,
        resolution=resolution,
        channels=channels,
        in_channels=in_channels,
        gates=gates,
        classes=classes,
    )
    D = build_discriminator(
        cfg.model.discriminator, resolution=resolution, channels=channels + (in_channels or 0), classes=classes
    )
    constraints = build_constraints(cfg.constraints, G=G, D=D)
    return G, D, regs, constraints


def build_generator_for(
    cfg, *, resolution: int, channels: int, in_channels: int | None = None, classes: int | None = None
) -> nn.Module:
    """Only the generator of ``cfg`` (with its gates and G constraints), for loading checkpoints."""
    return build_networks(cfg, resolution=resolution, channels=channels, in_channels=in_channels, classes=classes)[0]


def _meta_size(module: nn.Module, x) -> tuple[int, int]:
    """(parameter bytes, bytes of every module's output in one forward of ``x``), on the meta device."""
    import torch

    params = sum(p.numel() * p.element_size() for p in module.parameters())
    acts = [0]

    def hook(_m, _inp, out):
        if isinstance(out, torch.Tensor):
            acts[0] += out.numel() * out.element_size()

    handles = [m.register_forward_hook(hook) for m in module.modules() if not list(m.children())]
    try:
        with torch.no_grad():
            module(x)
    except Exception:  # a layer without a meta kernel: count the parameters only
        acts[0] = 0
    finally:
        for h in handles:
            h.remove()
    return params, acts[0]


def estimate_training_bytes(
    cfg,
    *,
    resolution: int | None = None,
    channels: int | None = None,
    in_channels: int | None = None,
    classes: int | None = None,
) -> dict:
    """Bytes a training run of ``cfg`` needs at least, from its config alone (networks built on the
    ``meta`` device: no memory, no compute): G's weights, gradients, two Adam moments and EMA copy
    (5×), D's weights, gradients and Adam moments (4×), and the activations of a step (G's forward,
    D's on a real and a fake batch, each kept for backward and matched by its gradient: 2×)."""
    import torch

    from normgan.models import build_discriminator, build_generator

    res = resolution or cfg.data.resolution
    c = channels or cfg.data.channels or 3
    from normgan.tasks.info import TASK_INFO

    cin = in_channels if in_channels is not None else TASK_INFO.get(cfg.task).config_in_channels(c)
    b = cfg.data.batch_size
    with torch.device("meta"):
        k = classes or 1  # a conditional run's class count (its embeddings are small either way)
        G = build_generator(cfg.model.generator, resolution=res, channels=c, in_channels=cin, classes=k)
        D = build_discriminator(cfg.model.discriminator, resolution=res, channels=c + (cin or 0), classes=k)
        g_in = torch.empty(b, cin, res, res) if cin else torch.empty(b, cfg.model.generator.z_dim)
        g_params, g_acts = _meta_size(G, g_in)
        d_params, d_acts = _meta_size(D, torch.empty(b, c + (cin or 0), res, res))
    return {
        "generator": 5 * g_params,
        "discriminator": 4 * d_params,
        "activations": 2 * (g_acts + 2 * d_acts),
        "g_params": g_params // 4,
        "d_params": d_params // 4,
    }


def check_memory(
    cfg,
    *,
    device="cpu",
    resolution: int | None = None,
    channels: int | None = None,
    in_channels: int | None = None,
    classes: int | None = None,
) -> None:
    """A one-line ConfigError, before anything is allocated, when the estimated training memory
    (:func:`estimate_training_bytes`) exceeds what ``device`` has free, naming the key to lower."""
    from normgan.errors import ConfigError
    from normgan.runtime.device import resolve_device
    from normgan.runtime.resources import device_memory, format_bytes

    est = estimate_training_bytes(
        cfg, resolution=resolution, channels=channels, in_channels=in_channels, classes=classes
    )
    total = est["generator"] + est["discriminator"] + est["activations"]
    dev = resolve_device(device)
    avail, where = device_memory(dev)
    if avail is None or total <= avail:
        return
    g, d = cfg.model.generator, cfg.model.discriminator
    part = max(("generator", "discriminator", "activations"), key=lambda k: est[k])
    if part == "generator":
        key, fix = f"model.generator.width={g.width}", "use a smaller model.generator.width (default 32)"
    elif part == "discriminator":
        key, fix = f"model.discriminator.width={d.width}", "use a smaller model.discriminator.width (default 32)"
    else:
        key, fix = f"data.batch_size={cfg.data.batch_size}", "use a smaller data.batch_size"
    raise ConfigError(
        f"{key}: training needs about {format_bytes(total)} (generator {est['g_params']:.3g} parameters with "
        f"gradients, Adam state and EMA: {format_bytes(est['generator'])}; discriminator "
        f"{est['d_params']:.3g} parameters: {format_bytes(est['discriminator'])}; activations at batch "
        f"{cfg.data.batch_size}: {format_bytes(est['activations'])}), more than the "
        f"{format_bytes(avail)} {where}; {fix}"
    )
