"""The objective: every forward, adversarial loss and regularization term of the step, phase by phase
(StyleGAN2-ADA's ``Loss.accumulate_gradients(phase)``, R3GAN's ``Trainer.py``). The loop owns the
schedule (which phases are due, gains, updates); this file owns what each phase computes:

* D: x_r, G's input ← task batch; x_f = G(input); L_D = loss.d(D(x_r), D(x_f)) + Σ λ_t·raw_t (D's
  terms with ``every: 1``). The last of the ``d_steps`` D phases keeps x_f's graph: the G phase
  reuses it (one G forward per step).
* Dreg: Σ k·λ_t·raw_t over D's lazy terms, on the D phase's batch.
* G: L_G = loss.g(D(x_f)) + Σ λ_t·raw_t (G's terms with ``every: 1``); with ``loss.g_real`` the
  loss also gets D(x_r), D on the step's real batch (relativistic losses).
* Greg: Σ k·λ_t·raw_t over G's lazy terms, on new noise (or the same input image).

What one phase hands to the next is one explicit :class:`Carry`. D sees its inputs through
:meth:`Objective.critics` and G through :meth:`Objective.generate`: the one place where an
augmentation of D's inputs or class labels enter.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Dict, Optional

import torch
from torch import Tensor
from torch.nn.utils import parametrize

from normgan.regularizers import TermContext, WeightContext
from normgan.tasks.builtin import Batch, Critics
from normgan.train.phases import Phase, frozen


@dataclass
class Carry:
    """What the D phase hands on: its batch, the real images (detached), G's output (with its graph
    after the last D phase), D's detached real logits, and D as a function of the image (``critics``:
    of real and of G's images, eager for terms and maybe compiled for the adversarial forwards)."""

    batch: Batch
    real: Tensor
    fake: Tensor
    d_real: Tensor
    critics: Critics

    @property
    def target(self) -> Optional[Tensor]:  # G's reconstruction target y (paired), constant; None unconditional
        return None if self.batch.target is None else self.real


class Objective:
    """The losses of the four phases (see the module docstring); ``run(phase, step, carry)`` returns
    the phase's total loss (float32, a scalar) and the carry for the next phase.

    ``stats`` holds the last adversarial losses and logits (``loss/D``, ``loss/G``, ``d_real``,
    ``d_fake``), ``term_log`` each term's last ``reg/<name>/raw|weight|loss``.

    Args:
        G, D: the raw modules (terms and weight rules read them); G_fwd, D_fwd: the same modules
            for the adversarial forwards, maybe compiled.
        share_real_forward: R1 reuses D's forward on the real batch (the real images then require
            gradients); share_fake_forward: R2 reuses D's forward on the generated batch (its
            detached copy then requires gradients).
        precision: the forwards' autocast dtype (None: fp32); under fp16 terms run in fp32.
        task: the run's task (batches, G's input, D as a function of the image); loss: an
            :class:`~normgan.functional.losses.AdversarialLoss`; regs: the run's regularizers.
        augment: the run's :class:`~normgan.train.augment.Augment` (None: none): D sees T(·) via :meth:`critics`.
    """

    def __init__(
        self,
        *,
        task,
        G,
        D,
        G_fwd,
        D_fwd,
        loss,
        regs,
        precision,
        device_type,
        share_real_forward,
        share_fake_forward=False,
        augment=None,
    ) -> None:
        self.task, self.G, self.D, self.G_fwd, self.D_fwd, self.loss, self.regs = task, G, D, G_fwd, D_fwd, loss, regs
        self.precision, self.device_type, self.share_real_forward = precision, device_type, share_real_forward
        self.share_fake_forward, self.augment = share_fake_forward, augment
        self.nets = {"G": G, "D": D}
        self.stats: Dict[str, Tensor] = {}
        self.term_log: Dict[str, Tensor | float] = {}
        self._phases = {"D": self.d_main, "Dreg": self.d_lazy, "G": self.g_main, "Greg": self.g_lazy}

    def run(self, phase: Phase, step: int, carry: Optional[Carry], *, keep_graph: bool = True):
        """The phase's loss and carry; ``phase.freeze``'s parameters need no gradient meanwhile."""
        with frozen(self.nets.get(phase.freeze)):
            return self._phases[phase.name](step, carry, keep_graph)

    # ---------------------------------------------------------------- inputs of G and D
    def generate(self, batch: Batch, *, keep_graph: bool) -> Tensor:
        """G's output for the batch (float32), with its graph only when ``keep_graph``."""
        with contextlib.nullcontext() if keep_graph else torch.no_grad():
            return self.G_fwd(*batch.g_args).float()

    def critics(self, batch: Batch, *, augment: bool = True) -> Critics:
        """D as a function of the image for this batch's real and G's images, of T(·) if augmenting."""
        crit = [self.task.critic(D, batch, fake=f) for f in (False, True) for D in (self.D, self.D_fwd)]
        return Critics(*map(self.augment.critic, crit)) if self.augment is not None and augment else Critics(*crit)

    # ---------------------------------------------------------------- the phases
    def d_main(self, step: int, carry: Optional[Carry], keep_graph: bool):
        b = self.task.next_batch()
        pre = self.augment is not None and self.augment.before_d  # penalties' inputs are T(x): augment here
        augmented = self.critics(b)
        crit = self.critics(b, augment=False) if pre else augmented
        real = self.augment.penalty_input(b.real) if pre else b.real
        real = real.requires_grad_(True) if self.share_real_forward else real  # R1 reuses D(real)
        with self.autocast():
            fake = self.generate(b, keep_graph=keep_graph)
            fake_d = self.augment.penalty_input(fake.detach()) if pre else fake.detach()
            fake_d = fake_d.requires_grad_(True) if self.share_fake_forward else fake_d  # R2 reuses D(fake)
            # parametrized weights (spectral norm) are computed once per D step: one power iteration
            # per update, and the same normalized weights for real, fake and penalty forwards
            with parametrize.cached():
                d_real, d_fake = crit.real_fwd(real), crit.fake_fwd(fake_d)
                loss = self.loss.d(d_real, d_fake)
                ctx = self.context(
                    b, crit, real=real, fake=fake_d, z=b.g_in, d_real=d_real, d_fake=d_fake, target=b.target
                )
                extra = self.terms("D", ctx, step, lazy=False, adv_loss=loss)
        self.stats.update({"loss/D": loss.detach(), "d_real": d_real.detach(), "d_fake": d_fake.detach()})
        return total(loss, extra), Carry(b, b.real.detach(), fake, d_real.detach(), augmented)  # G sees T(·) too

    def d_lazy(self, step: int, c: Carry, keep_graph: bool):
        b = c.batch
        real, fake, crit = c.real, c.fake.detach(), c.critics
        if self.augment is not None and self.augment.before_d:  # the penalties' inputs are T(x)
            real, fake, crit = *map(self.augment.penalty_input, (real, fake)), self.critics(b, augment=False)
        ctx = self.context(b, crit, real=real, fake=fake, z=b.g_in, target=b.target)
        with self.autocast():
            return self.terms("D", ctx, step, lazy=True, d_real=c.d_real).float(), c

    def g_main(self, step: int, c: Carry, keep_graph: bool):
        b = c.batch
        with self.autocast():
            d_fake = c.critics.fake_fwd(c.fake)
            loss = self.loss.g(d_fake, c.critics.real_fwd(c.real)) if self.loss.g_real else self.loss.g(d_fake)
            ctx = self.context(b, c.critics, real=c.real, fake=c.fake, z=b.g_in, d_fake=d_fake, target=c.target)
            extra = self.terms("G", ctx, step, lazy=False, adv_loss=loss)
        self.stats["loss/G"] = loss.detach()
        return total(loss, extra), c

    def g_lazy(self, step: int, c: Carry, keep_graph: bool):
        b = c.batch
        ctx = self.context(b, c.critics, real=c.real, z=self.task.fresh_input(b), target=c.target)
        with self.autocast():
            return self.terms("G", ctx, step, lazy=True).float(), c

    # ---------------------------------------------------------------- terms and precision
    def context(self, b: Batch, crit: Critics, **fields) -> TermContext:
        """What the terms see in a phase: G and D (raw modules), the batch's condition and classes, D
        as a function of real and of G's images (eager), and the phase's ``fields`` (real, fake, z, logits, target)."""
        labels = {"labels": b.labels, "g_labels": b.g_labels}
        return TermContext(G=self.G, D=self.D, cond=b.cond, critic=crit.real, fake_critic=crit.fake, **labels, **fields)

    def terms(
        self, net: str, ctx: TermContext, step: int, *, lazy: bool, adv_loss=None, d_real=None
    ) -> Optional[Tensor]:
        """Σ gain·λ_t·raw_t over the terms of ``net`` due at ``step`` (its lazy phase, or its main one);
        None when there are none. The gain is the term's interval k (a lazy term runs every k-th step
        with k times its weight). ``d_real`` gives weight rules D's real logits in lazy phases."""
        out = None
        module = self.nets[net]
        for r in self.regs:
            if r.net != net or (r.every > 1) != lazy or step % r.every:
                continue
            with self.term_precision():
                raw = r.term(ctx).float()
            d_real = ctx.d_real if ctx.d_real is not None else d_real
            rule_ctx = WeightContext(step=step, module=module, adv_loss=adv_loss, d_real=d_real)
            weighted, w = r.weight.apply(raw, rule_ctx)
            gained = weighted * r.every if r.every > 1 else weighted  # no kernel for a gain of 1
            out = gained if out is None else out + gained
            self.term_log.update({f"reg/{r.name}/{k}": v for k, v in (("raw", raw.detach()), ("weight", w))})
            self.term_log[f"reg/{r.name}/loss"] = weighted.detach()
        return out

    def autocast(self):
        """Forwards in ``train.precision`` (bf16/fp16 autocast; fp32: nothing changes)."""
        on = self.precision is not None
        return torch.autocast(device_type=self.device_type, dtype=self.precision) if on else contextlib.nullcontext()

    def term_precision(self):
        """Terms run in fp32 under fp16 (an fp16 input gradient underflows), in the forwards' dtype otherwise."""
        fp16 = self.precision == torch.float16
        return torch.autocast(device_type=self.device_type, enabled=False) if fp16 else contextlib.nullcontext()


def total(loss: Tensor, extra: Optional[Tensor]) -> Tensor:
    """The phase's loss in float32: the adversarial part plus the terms (if any)."""
    return (loss if extra is None else loss + extra).float()
