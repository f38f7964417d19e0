"""The term protocol, the registry, and building terms from the config."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Dict, Optional

import torch
from torch import Tensor, nn

from normgan.errors import ConfigError
from normgan.registry import Registry

TERMS = Registry("regularization term")

#: keys every term accepts; the rest go to the term's constructor
COMMON_KEYS = ("term", "net", "weight", "every")


@dataclass
class TermContext:
    """What a term may read during its network's phase. Fields a phase does not have are None.

    D phase: ``real`` (images), ``fake`` (detached generated images), ``d_real``/``d_fake`` (logits),
    ``D``, ``G``. G phase: ``z``, ``fake`` (with graph to G), ``d_fake`` (logits of D on it), ``G``,
    ``D``, ``real`` (the step's real batch, constant).

    ``z`` is G's input: noise in an unconditional run, the input image x in a paired one.
    ``critic`` is D as a function of the image alone, ``y ↦ D(y)`` or, for a conditional D,
    ``y ↦ D(cat(x, y))`` (the condition is a constant input, so input-gradient penalties are taken
    w.r.t. the image only); None means ``D`` itself. Paired runs add ``cond`` (x) and ``target`` (y).
    Class-conditional runs add ``labels`` (the real images' classes y), ``g_labels`` (the classes G
    was given) and ``fake_critic`` (``x ↦ D(x, g_labels)``, for G's images; ``critic`` is
    ``x ↦ D(x, labels)``); :attr:`D_of_fake` and :meth:`generate` use them.
    ``D`` and ``G`` are always the raw modules (weight norms read their parameters).
    """

    G: nn.Module
    D: nn.Module
    real: Optional[Tensor] = None
    fake: Optional[Tensor] = None
    z: Optional[Tensor] = None
    d_real: Optional[Tensor] = None
    d_fake: Optional[Tensor] = None
    cond: Optional[Tensor] = None
    target: Optional[Tensor] = None
    critic: Optional[Callable[[Tensor], Tensor]] = None
    fake_critic: Optional[Callable[[Tensor], Tensor]] = None
    labels: Optional[Tensor] = None
    g_labels: Optional[Tensor] = None

    @property
    def D_of(self) -> Callable[[Tensor], Tensor]:
        """D as a function of the image: ``critic`` when set, else ``D``."""
        return self.critic if self.critic is not None else self.D

    @property
    def D_of_fake(self) -> Callable[[Tensor], Tensor]:
        """D as a function of G's images: ``fake_critic`` when set (class-conditional), else :attr:`D_of`."""
        return self.fake_critic if self.fake_critic is not None else self.D_of

    def generate(self, z: Tensor) -> Tensor:
        """G(z), or G(z, g_labels[:n]) for the n rows of ``z`` when G is class-conditional."""
        return self.G(z) if self.g_labels is None else self.G(z, self.g_labels[: z.shape[0]])

    def d_input(self, y: Tensor) -> Tensor:
        """What D's layers see for image ``y``: ``cat(cond, y)`` along the channels in a paired run
        (its D is conditional), else ``y``."""
        return torch.cat([self.cond, y], dim=1) if self.cond is not None else y


class Term(nn.Module):
    """Base class of regularization terms.

    Subclasses set ``nets`` (the networks they can regularize), take their options as keyword-only
    constructor arguments and implement ``forward(ctx) -> Tensor`` returning the raw (unweighted)
    scalar. State (EMA targets, anchors) lives in buffers so it is checkpointed.

    What the loop and the config checks must know about a term is declared here, with these
    defaults, and overridden by the terms it concerns (a class attribute, or a property when it
    depends on the options); nothing outside probes for it:

    * ``paired_only``: the term needs a paired run's ``cond``/``target``;
    * ``per_sample_gradients`` (class level): the term differentiates D per sample, so a batch-mixing
      D norm (BatchNorm) is refused (``config.check_per_sample_penalties``);
    * ``shares_real_forward``: the term can reuse the D step's forward on the real batch (R1);
    * ``shares_fake_forward``: the term can reuse the D step's forward on the generated batch (R2);
    * ``needs_gates``: the generator must be built with hard-concrete gates (L0 weights term);
    * ``needs_class_head``: the discriminator must have an auxiliary classifier
      (``model.discriminator.conditioning: ac``, checked by :func:`validate_regularizers`).
    """

    nets: tuple[str, ...] = ("G", "D")
    paired_only: bool = False
    per_sample_gradients: bool = False
    shares_real_forward: bool = False
    shares_fake_forward: bool = False
    needs_gates: bool = False
    needs_class_head: bool = False

    def __init__(self, *, net: str) -> None:
        super().__init__()
        self.net = net

    def forward(self, ctx: TermContext) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError


class Regularizer(nn.Module):
    """A named term with its weight and interval, as the loop uses it."""

    def __init__(self, name: str, term: Term, weight, every: int) -> None:
        super().__init__()
        self.name, self.term, self.weight, self.every = name, term, weight, every

    @property
    def net(self) -> str:
        return self.term.net


def build_regularizers(specs: Dict[str, Any], *, paired: bool = False) -> list[Regularizer]:
    """Regularizer objects from the config's ``regularizers`` mapping; raises ConfigError naming the key."""
    from normgan.regularizers.weights import build_weight

    out = []
    for name, spec in (specs or {}).items():
        key = f"regularizers.{name}"
        term_name, cls = TERMS.lookup(spec, key=key, name_key="term")
        net = str(spec.get("net", cls.nets[0]))
        if net not in ("G", "D"):
            raise ConfigError(f"{key}.net: bad value {net!r}; use G or D")
        if net not in cls.nets:
            raise ConfigError(
                f"{key}.net: term '{term_name}' cannot regularize {net}; it applies to {' and '.join(cls.nets)}"
            )
        # task branch kept outside the tasks (tests/test_tasks.py): the requirement is the term's (a target y to
        # reconstruct), checked where terms are built; the caller passes the task's answer (``paired``)
        if cls.paired_only and not paired:
            raise ConfigError(
                f"{key}: term '{term_name}' needs a paired (image-to-image) run; remove it from this unconditional run"
            )
        every = spec.get("every", 1)
        if not isinstance(every, int) or isinstance(every, bool) or every < 1:
            raise ConfigError(f"{key}.every: bad value {every!r}; must be a positive integer interval")
        weight = build_weight(spec.get("weight", 1.0), key=f"{key}.weight")
        if net not in weight.nets:
            raise ConfigError(
                f"{key}.weight: this adaptive weight works on {' and '.join(weight.nets)} only, not on {net}"
            )
        params = {k: v for k, v in spec.items() if k not in COMMON_KEYS}
        term = TERMS.create(term_name, params, key=key, fixed={"net": net}, common=COMMON_KEYS)
        out.append(Regularizer(name, term, weight, every))
    lazy: Dict[str, set] = {}
    for r in out:
        if r.every > 1:
            lazy.setdefault(r.net, set()).add(r.every)
    for net, intervals in lazy.items():
        if len(intervals) > 1:
            raise ConfigError(
                f"regularizers: lazy terms on {net} use different intervals {sorted(intervals)}; give them one 'every' (the Adam correction is per network)"
            )
    return out


def validate_regularizers(cfg) -> None:
    """Build the terms once, and check the constraints, to validate them before training starts."""
    from normgan.regularizers.constraints import validate_constraints

    regs = build_regularizers(cfg.regularizers, paired=cfg.paired)
    validate_constraints(cfg.constraints)
    conditioning = cfg.model.discriminator.conditioning
    for r in regs:
        if r.term.needs_class_head and conditioning != "ac":
            raise ConfigError(
                f"regularizers.{r.name}: this term needs D's class head; set model.discriminator.conditioning: ac "
                f"(it is {conditioning!r}) on a labelled dataset"
            )
