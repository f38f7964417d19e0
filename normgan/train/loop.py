"""The training loop. It owns the schedule: D steps per G step, lazy regularization intervals with
their gain and Adam correction, EMA, logging, samples, checkpoints, interrupts and NaN stops.

    from normgan import load_config, Trainer
    run_dir = Trainer(load_config(overrides=["train.steps=200"])).fit()
"""

from __future__ import annotations

import contextlib
import functools
import math
import operator
import platform
import shutil
import signal
import threading
import time
import warnings
from pathlib import Path
from typing import Callable, Dict, List, Optional

import torch
from torch import Tensor, nn
from torchvision.utils import save_image
from tqdm.auto import tqdm

from normgan.config import Config, flatten, to_dict, to_yaml
from normgan.errors import ConfigError, Diverged, Interrupted, SignalExit, TrainingDiverged, UserError
from normgan.functional.losses import LOSSES, d_accuracy
from normgan.models.build import build_networks, check_memory
from normgan.models.checkpoint import (
    find_checkpoint,
    load_checkpoint,
    load_module_state,
    nonfinite_entries,
    remove_stale_temporaries,
    require_keys,
    save_checkpoint,
)
from normgan.regularizers import Regularizer
from normgan.runtime.device import resolve_device
from normgan.runtime.distributed import Dist
from normgan.runtime.version import __version__
from normgan.tasks.builtin import TASKS
from normgan.train.augment import build_augment
from normgan.train.compiled import compile_module
from normgan.train.ema import make_ema, update_ema
from normgan.train.hyper import OptimSchedule
from normgan.train.logger import MetricsLogger, read_metrics, truncate_metrics
from normgan.train.objective import Objective
from normgan.train.phases import Phase, build_phases
from normgan.train.run_dir import RunLock, new_run_dir

CHECKPOINT_FORMAT = 1

#: config keys that ``--resume`` may change (a prefix ending in "." covers a section); optimizer
#: settings are applied to the restored Adam state. Everything else must match the saved run.
RESUMABLE_KEYS = (
    "train.steps",
    "train.log_every",
    "train.sample_every",
    "train.checkpoint_every",
    "train.tensorboard",
    "train.device",
    "train.threads",
    "train.precision",
    "train.report",
    "train.compile",
    "train.num_samples",
    "data.stream",
    "data.workers",
    "eval.",
    "optim.g.lr",
    "optim.d.lr",
    "optim.g.lr.",  # a schedule mapping
    "optim.d.lr.",
    "optim.g.betas",
    "optim.d.betas",
    "optim.gate_lr",
)
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
#: ``train.precision``: the autocast dtype of the forwards (None: fp32, no autocast)
PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


class NullLogger:
    """The metrics logger of the ranks that do not write (all but the main one)."""

    def log(self, step, values) -> None:
        pass

    def image(self, tag, image, step) -> None:
        pass

    def close(self) -> None:
        pass


def check_resume_overrides(saved, new) -> None:
    """A one-line ConfigError naming the first key that differs between the saved run's config and
    the resumed one, unless ``RESUMABLE_KEYS`` allows it."""
    a, b = flatten(to_dict(saved)), flatten(to_dict(new))
    for key in sorted(set(a) | set(b)):
        if a.get(key) == b.get(key) or any(key == r or (r.endswith(".") and key.startswith(r)) for r in RESUMABLE_KEYS):
            continue
        raise ConfigError(
            f"--resume cannot change {key} (the run has {a.get(key)!r}, the override gives {b.get(key)!r}); "
            "only train.steps, the log/sample/checkpoint intervals, device, threads, eval.* and optim lr/betas "
            "may change on resume; start a new run for anything else"
        )


def check_same_run(folder_cfg, ckpt_cfg, *, ckpt_path, cfg_file) -> None:
    """A one-line UserError when the checkpoint was written by another config than the run folder's
    (a ``last.pt`` copied from another run): the keys that differ, outside :data:`RESUMABLE_KEYS`."""
    a, b = flatten(to_dict(folder_cfg)), flatten(to_dict(ckpt_cfg))
    diff = [
        k
        for k in sorted(set(a) | set(b))
        if a.get(k) != b.get(k) and not any(k == r or (r.endswith(".") and k.startswith(r)) for r in RESUMABLE_KEYS)
    ]
    if diff:
        shown = ", ".join(f"{k} ({a.get(k)!r} in config.yaml, {b.get(k)!r} in the checkpoint)" for k in diff[:3])
        more = f" and {len(diff) - 3} more" if len(diff) > 3 else ""
        raise UserError(
            f"checkpoint '{ckpt_path}' was written by another config than '{cfg_file}': {shown}{more}; "
            "resume with the run's own checkpoint, or start a new run; nothing was written"
        )


def read_run_config(cfg_file: Path) -> Optional[dict]:
    """A run folder's config.yaml as a mapping; None when it cannot be read or is not a mapping."""
    from normgan.config import read_yaml_file

    try:
        saved = read_yaml_file(cfg_file, what="run config")
    except ConfigError:
        return None
    return saved if isinstance(saved, dict) else None


def saved_config(state: dict, *, run_dir: Path, ckpt_path: Path) -> dict:
    """The config a resumed run continues with: the checkpoint's own (checked against the folder's
    config.yaml, which must describe the same run), else the folder's; a UserError when neither has one."""
    from normgan.config import load_config

    cfg_file = run_dir / "config.yaml"
    saved = state.get("config")
    folder_saved = read_run_config(cfg_file) if cfg_file.is_file() else None
    if not isinstance(saved, dict):
        saved = folder_saved
    elif folder_saved is not None:
        try:
            folder_cfg = load_config(base=folder_saved)
        except ConfigError:  # a config.yaml that no longer loads: the checkpoint's own config decides
            folder_cfg = None
        if folder_cfg is not None:
            check_same_run(folder_cfg, load_config(base=saved), ckpt_path=ckpt_path, cfg_file=cfg_file)
    if not isinstance(saved, dict):
        raise UserError(f"run folder '{run_dir}' has no config; it was not made by normgan train")
    return saved


def grad_norm(params) -> float:
    """Global L2 norm of the gradients of ``params`` (those that have one)."""
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return 0.0
    return float(torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads])))


class Trainer:
    """Builds data, models, optimizers and terms from a config and trains them.

    Args:
        cfg: a validated :class:`~normgan.config.Config`.
        runs_dir, name: where the run folder goes (``runs_dir/name``, or a numbered name).
        run_dir: an existing run folder (used by :meth:`resume`).
        device: overrides ``cfg.train.device``.
        progress: show a tqdm progress bar.
        on_eval: called as ``on_eval(step, results)`` after each evaluation (the search's pruner
            hook); an exception it raises stops the run, with the run folder lock released.
    """

    def __init__(
        self,
        cfg: Config,
        *,
        runs_dir: str | Path = "runs",
        name: Optional[str] = None,
        run_dir: Optional[Path] = None,
        device: Optional[str] = None,
        progress: bool = True,
        label: Optional[str] = None,
        on_eval: Optional[Callable[[int, dict], None]] = None,
    ) -> None:
        self.cfg = cfg
        self.on_eval = on_eval
        self._setup_runtime(device or cfg.train.device)
        # what differs between unconditional and paired training: data, G's input, D's condition, grids
        self.task = TASKS.get(cfg.task, key="task")(
            cfg, device=self.device, dist=self.dist
        )  # gives this rank's batches
        self._build_step()
        self.step = 0
        self.progress = progress
        self._stop_requested = False
        self._grad_log: Dict[str, float] = {}  # grad_norm/G and /D of the last main phases, read at log steps
        if run_dir is None:  # the main rank claims the folder and tells the others
            made = (
                new_run_dir(runs_dir, label=label or f"{cfg.data.name}-{cfg.loss}", name=name)
                if self.dist.main
                else None
            )
            run_dir = self.dist.broadcast_object(str(made) if made is not None else None)
        self.run_dir = Path(run_dir)
        self.last_checkpoint: Optional[Path] = None
        self.last_checkpoint_step: Optional[int] = None
        self.evaluator = None  # built at the first evaluation (the domain classifier may need training)
        self.best_score: Optional[float] = None
        self.best_step: Optional[int] = None
        self.diverged: Optional[dict] = None  # the divergence found in the log at the end of fit()

    # ------------------------------------------------------------------ construction helpers
    def _setup_runtime(self, device: str) -> None:
        """Device, ranks (torchrun: one process per device; every rank draws the same streams and
        computes its shard), precision, CPU threads and the seeds."""
        t = self.cfg.train
        self.device = resolve_device(device)
        self.dist = Dist.from_env(device_type=self.device.type)
        if self.dist.enabled and self.device.type == "cuda":
            self.device = torch.device("cuda", self.dist.local_rank)
            torch.cuda.set_device(self.device)
        self.dist.check_batch(self.cfg.data.batch_size)
        self.precision = PRECISIONS[t.precision]
        if t.threads:
            torch.set_num_threads(t.threads)
        elif (
            self.device.type == "cpu"
        ):  # 0: as many threads as cores are free at the start (normgan/runtime/threads.py)
            from normgan.runtime.threads import apply_auto_threads

            apply_auto_threads()
        torch.manual_seed(t.seed)
        if self.device.type == "cuda":
            torch.cuda.manual_seed_all(t.seed)

    def _build_step(self) -> None:
        """Networks, terms, optimizers (with their lr/β2/EMA schedules), the step's phases and its objective."""
        cfg, t = self.cfg, self.cfg.train
        # sizes against free memory before allocating (one line naming the key, not the allocator's message)
        task = self.task
        shapes = {"resolution": task.resolution, "channels": task.channels, "in_channels": task.in_channels}
        shapes["classes"] = task.classes
        check_memory(cfg, device=self.device, **shapes)
        G, D, regs, self.constraints = build_networks(cfg, **shapes)
        self.regs: List[Regularizer] = regs
        self.G, self.D = G.to(self.device), D.to(self.device)
        self.G_ema = make_ema(self.G)
        for r in self.regs:
            r.to(self.device)
        self.lazy_every = {net: max([r.every for r in self.regs if r.net == net], default=1) for net in ("G", "D")}
        self.hyper = OptimSchedule(cfg.optim, batch_size=cfg.data.batch_size, lazy_every=self.lazy_every)
        self.augment = build_augment(cfg.augment, batch_size=cfg.data.batch_size, dist=self.dist)
        share_real_forward, share_fake_forward = self._shared_forwards()
        # train.compile: the adversarial forwards go through compiled modules (sharing the parameters);
        # terms, EMA, weight rules and checkpoints see the eager ones, so penalties' double backward
        # (R1, WGAN-GP, path length) runs eagerly
        self.G_fwd, self.D_fwd = (
            (compile_module(self.G, device_type=self.device.type), compile_module(self.D, device_type=self.device.type))
            if t.compile
            else (self.G, self.D)
        )
        # fp16: one loss scaler per network (disabled, they pass everything through unchanged)
        self.scalers = {
            net: torch.amp.GradScaler(self.device.type, enabled=self.precision == torch.float16) for net in ("G", "D")
        }
        self.opt_g = self._adam("G", self.G)
        self.opt_d = self._adam("D", self.D)
        self.opts = {"G": self.opt_g, "D": self.opt_d}
        # backward passes stop at these: no gradients into real images, z or interpolates (penalty leaves)
        self._params = {net: [p for g in opt.param_groups for p in g["params"]] for net, opt in self.opts.items()}
        # the step: its phases (built once) and what each computes (forwards, losses, terms)
        self.phases = build_phases(d_steps=cfg.optim.d_steps, lazy_every=self.lazy_every)
        self.objective = Objective(
            task=self.task,
            G=self.G,
            D=self.D,
            G_fwd=self.G_fwd,
            D_fwd=self.D_fwd,
            loss=LOSSES.get(cfg.loss, key="loss"),
            regs=self.regs,
            precision=self.precision,
            device_type=self.device.type,
            share_real_forward=share_real_forward,
            share_fake_forward=share_fake_forward,
            augment=self.augment,
        )

    def _shared_forwards(self) -> tuple[bool, bool]:
        """Whether R1 / R2 reuse the D step's forward on the real / generated batch. Not under fp16:
        terms run in fp32 on their own forwards (PyTorch's recipe for gradient penalties under AMP
        needs unscaled input gradients; an fp16 forward's input gradient underflows); not under
        train.compile (double backward through a compiled graph is not supported)."""
        if self.precision == torch.float16 or self.cfg.train.compile:
            return False, False
        shared = [r.term for r in self.regs if r.net == "D" and r.every == 1]
        return any(term.shares_real_forward for term in shared), any(term.shares_fake_forward for term in shared)

    def _adam(self, which: str, net: nn.Module) -> torch.optim.Adam:
        """Adam over the network's parameters and its terms' learned weights; gates (log α) get
        ``optim.gate_lr``. Its lr and betas are those of step 0 (:mod:`normgan.train.hyper`)."""
        lr, betas, gate_lr = self.hyper.adam(which, 0)
        gates = [p for n, p in net.named_parameters() if n.endswith("log_alpha")]
        params = [p for n, p in net.named_parameters() if not n.endswith("log_alpha")]
        params += [p for r in self.regs if r.net == which for p in r.weight.parameters()]
        groups = [{"params": params}] + ([{"params": gates, "lr": gate_lr}] if gates else [])
        # the fused kernel (one op for all tensors) is the fastest Adam on CPU and CUDA
        return torch.optim.Adam(groups, lr=lr, betas=betas, fused=self.device.type in ("cpu", "cuda"))

    @classmethod
    def resume(
        cls,
        run_dir: str | Path,
        *,
        overrides: Optional[List[str]] = None,
        device: Optional[str] = None,
        progress: bool = True,
    ) -> "Trainer":
        """Continue a run from ``run_dir/checkpoints/last.pt``.

        Overrides may change the keys in :data:`RESUMABLE_KEYS` (``train.steps``, intervals, device,
        ``eval.*``, optimizer lr/betas, which are applied to the restored optimizers); any other
        change is refused. A run stopped before its first checkpoint (config.yaml but no last.pt)
        starts again from step 0 with its saved config.
        """
        from normgan.config import load_config

        run_dir = Path(run_dir)
        if not run_dir.is_dir():
            raise UserError(
                f"run folder '{run_dir}' does not exist; give a folder made by 'normgan train' (see --runs-dir)"
            )
        cfg_file = run_dir / "config.yaml"
        if not (run_dir / "checkpoints" / "last.pt").is_file() and cfg_file.is_file():
            saved = read_run_config(cfg_file)
            if saved is None:
                raise UserError(
                    f"run folder '{run_dir}' has no checkpoint and an unreadable config.yaml; start a new run"
                )
            cfg = load_config(base=saved, overrides=overrides)
            check_resume_overrides(load_config(base=saved), cfg)
            warnings.warn(f"run folder '{run_dir}' stopped before its first checkpoint; training it again from step 0")
            return cls(cfg, run_dir=run_dir, device=device, progress=progress)
        ckpt_path = find_checkpoint(run_dir)
        state = load_checkpoint(ckpt_path)
        require_keys(
            state, ("step", "generator", "discriminator", "generator_ema", "opt_g", "opt_d", "rng"), path=ckpt_path
        )
        saved = saved_config(state, run_dir=run_dir, ckpt_path=ckpt_path)
        cfg = load_config(base=saved, overrides=overrides)
        check_resume_overrides(load_config(base=saved), cfg)
        trainer = cls(cfg, run_dir=run_dir, device=device, progress=progress)
        trainer.load_state_dict(state, path=ckpt_path)
        trainer.last_checkpoint, trainer.last_checkpoint_step = ckpt_path, trainer.step
        return trainer

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict:
        rng = {"torch": torch.get_rng_state(), "batches": self.task.state_dict()}
        if self.device.type == "cuda":
            rng["cuda"] = torch.cuda.get_rng_state(self.device)
        return {
            "format": CHECKPOINT_FORMAT,
            "step": self.step,
            "generator": self.G.state_dict(),
            "discriminator": self.D.state_dict(),
            "generator_ema": self.G_ema.state_dict(),
            "opt_g": self.opt_g.state_dict(),
            "opt_d": self.opt_d.state_dict(),
            "regularizers": {r.name: r.state_dict() for r in self.regs},
            "augment": self.augment.state_dict() if self.augment is not None else None,
            "scalers": {net: sc.state_dict() for net, sc in self.scalers.items()},
            "rng": rng,
            **self.task.checkpoint_entries(),  # image_shape (and a paired run's input_shape)
            "best": {"score": self.best_score, "step": self.best_step},
            "config": to_dict(self.cfg),
            "versions": {"normgan": __version__, "torch": str(torch.__version__)},
        }

    def load_state_dict(self, state: dict, *, path: str | Path = "checkpoint") -> None:
        fix = "resume with the run's own model and regularizer options"
        load_module_state(self.G, state["generator"], what="generator", path=path, fix=fix)
        load_module_state(self.D, state["discriminator"], what="discriminator", path=path, fix=fix)
        load_module_state(self.G_ema, state["generator_ema"], what="EMA generator", path=path, fix=fix)
        for r in self.regs:
            saved = (state.get("regularizers") or {}).get(r.name)
            if saved is not None:
                load_module_state(r, saved, what=f"regularizer '{r.name}'", path=path, fix=fix)
        try:
            self.opt_g.load_state_dict(state["opt_g"])
            self.opt_d.load_state_dict(state["opt_d"])
        except (RuntimeError, KeyError, ValueError, TypeError) as e:
            first = (str(e).strip().splitlines() or [type(e).__name__])[0]
            raise UserError(f"checkpoint '{path}' does not match the config's optimizers ({first}); {fix}") from None
        self._apply_optim_settings(int(state["step"]))
        if self.augment is not None and state.get("augment") is not None:
            self.augment.load_state_dict(state["augment"])
        for net, saved in (state.get("scalers") or {}).items():
            if saved and net in self.scalers and self.scalers[net].is_enabled():
                self.scalers[net].load_state_dict(saved)
        self.step = int(state["step"])
        rng = state["rng"]
        torch.set_rng_state(rng["torch"])
        if "cuda" in rng and self.device.type == "cuda":
            torch.cuda.set_rng_state(rng["cuda"], self.device)
        self.task.load_state_dict(rng["batches"])
        best = state.get("best") or {}
        self.best_score, self.best_step = best.get("score"), best.get("step")

    def _apply_optim_settings(self, step: int) -> None:
        """Set lr and betas of the optimizers to the config's values at ``step``, with the lazy
        correction (:meth:`OptimSchedule.adam`): on restoring a checkpoint, and before each step
        when some of them follow a schedule."""
        for which, opt in self.opts.items():
            lr, betas, gate_lr = self.hyper.adam(which, step)
            for i, group in enumerate(opt.param_groups):
                group["lr"], group["betas"] = (lr if i == 0 else gate_lr), betas

    def save(self, name: str = "last.pt") -> Path:
        """Write ``checkpoints/<name>`` atomically, only when every tensor in it is finite.

        A state with NaN/inf (a divergence in the last step) raises TrainingDiverged and leaves the
        previous checkpoint in place, so "last good checkpoint" is always true.
        """
        if not self.dist.main:  # one writer; every rank holds the same state
            return self.run_dir / "checkpoints" / name
        state = self.state_dict()
        bad = nonfinite_entries(state)
        if bad:
            raise TrainingDiverged(f"{len(bad)} tensors of the training state (first: {bad[0]})")
        path = save_checkpoint(state, self.run_dir / "checkpoints" / name)
        if name == "last.pt":
            self.last_checkpoint, self.last_checkpoint_step = path, self.step
        return path

    # ------------------------------------------------------------------ one step
    def train_step(self, step: int, *, log: bool = False) -> Dict[str, Tensor]:
        """One step: the due phases in order (:mod:`normgan.train.phases`), each a loss from the
        objective (:mod:`normgan.train.objective`) and an update; then buffers averaged over ranks
        and the EMA. Returns the last adversarial losses and D's logits (``loss/D``, ``loss/G``,
        ``d_real``, ``d_fake``)."""
        carry, pending = None, []  # pending: the losses since the last finite check
        if self.hyper.adam_scheduled:  # lr / β2 schedules: this step's values (constants stay as set)
            self._apply_optim_settings(step)
        if self.augment is not None:
            self.augment.set_step(step)  # a scheduled p: this step's value
        for phase in self.phases:
            if not phase.due(step):
                continue
            for i in range(phase.repeat):  # the last D phase keeps G's graph for the G phase
                loss, carry = self.objective.run(phase, step, carry, keep_graph=i == phase.repeat - 1)
                pending.append(loss.detach())
                self._update(phase, loss, log=log, pending=pending)
        # BatchNorm statistics, EMAs and controllers of terms: the mean over ranks (one process: nothing)
        self.dist.average_([*self.G.buffers(), *self.D.buffers(), *(b for r in self.regs for b in r.buffers())])
        update_ema(self.G_ema, self.G, beta=self.hyper.ema_beta(step))
        if self.augment is not None:  # an adaptive p: r_t of the D step's real logits, and its update
            self.augment.observe(self.objective.stats["d_real"])
            self.augment.adapt(step)
        return dict(self.objective.stats)

    def _update(self, phase: Phase, loss: Tensor, *, log: bool, pending: List[Tensor]) -> None:
        """``phase.net``'s update: zero_grad → backward of ``loss`` (scaled under fp16) into its
        parameters → gradients averaged over ranks → (a checking phase: the step's host sync, the
        ``pending`` losses since the last check must be finite; then none are pending) → optimizer step
        (fp16: skipped on inf/NaN gradients) → projections. A main phase logs its gradient norm at log steps."""
        net, opt, scaler = phase.net, self.opts[phase.net], self.scalers[phase.net]
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward(inputs=self._params[net])
        self.dist.average_gradients(self._params[net])
        if log and not phase.lazy:
            self._grad_log[f"grad_norm/{net}"] = grad_norm(self.objective.nets[net].parameters())
        if phase.checks:
            check = functools.reduce(operator.add, pending)
            pending.clear()
            if not torch.isfinite(self.dist.sum(check)):  # on every rank alike
                raise TrainingDiverged(self._nonfinite_part())
        scaler.step(opt)
        scaler.update()
        self._project(net)

    def _nonfinite_part(self) -> str:
        """Which part of the losses is NaN/inf, in words: the D or G loss, else the first term."""
        stats = self.objective.stats
        for net in ("D", "G"):
            if f"loss/{net}" in stats and not torch.isfinite(stats[f"loss/{net}"]):
                return f"{net} loss"
        for key, v in self.objective.term_log.items():
            if key.endswith("/loss") and not math.isfinite(float(v)):
                return f"regularization term '{key.split('/')[1]}'"
        return "a regularization term"

    def _project(self, net: str) -> None:
        """Apply the projection constraints (max-norm, clipping) of ``net`` after its optimizer step."""
        for c in self.constraints:
            if c.net == net:
                c.project(self.objective.nets[net])

    # ------------------------------------------------------------------ outputs
    def sample_grid(self) -> Tensor:
        """The EMA generator's images for the task's fixed batch, as one grid in [0, 1]
        (unconditional: fixed noise; paired: validation input | output | target rows). It runs under a
        forked RNG: G's dropout (pix2pix keeps it on) must not consume the training stream, or a run
        would depend on ``train.sample_every`` and only the main rank, which samples, would move on."""
        with self._forked_rng():
            return self.task.sample_grid(self.G_ema)

    def _forked_rng(self):
        """The global CPU (and this device's CUDA) RNG saved and restored around a block: samples and
        evaluations run on the main rank only and at steps that depend on where a run was stopped."""
        cuda = (
            [self.device.index if self.device.index is not None else torch.cuda.current_device()]
            if self.device.type == "cuda"
            else []
        )
        return torch.random.fork_rng(devices=cuda)

    def write_samples(self, logger: MetricsLogger) -> Optional[Path]:
        if not self.dist.main:
            return None
        grid = self.sample_grid()
        path = self.run_dir / "samples" / f"step-{self.step:06d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)  # the folder may have been deleted during the run
        save_image(grid, path)
        logger.image("samples/ema", grid, self.step)
        return path

    def evaluate(self, logger: MetricsLogger) -> Dict[str, float]:
        """Evaluate the EMA generator (cfg.eval), log ``eval/<metric>`` and keep best.pt by the main metric."""
        from normgan.eval.metric_info import is_better
        from normgan.eval.paired import task_evaluation

        e = self.cfg.eval
        if not self.dist.main:  # the main rank evaluates; the others wait at the next all-reduce
            return {}
        with self._forked_rng():  # building the evaluator may train a classifier; neither may move the training RNG
            if self.evaluator is None:
                self.evaluator = task_evaluation(self.cfg.task).periodic(
                    self.cfg, device=self.device, progress=self.progress
                )
            res = self.evaluator(self.G_ema)
        values = {f"eval/{k}": v for k, v in res.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
        logger.log(self.step, values)
        score = res.get(e.best_metric)
        if isinstance(score, (int, float)):
            if is_better(metric=e.best_metric, value=float(score), best=self.best_score):
                self.best_score, self.best_step = float(score), self.step
                self.save("best.pt")
        if self.on_eval is not None:
            self.on_eval(self.step, res)
        return values

    def _request_stop(self, signum, frame) -> None:
        """First Ctrl-C/SIGTERM: finish the step, checkpoint, exit. A second one: stop at once."""
        if self._stop_requested:
            last = (
                f"last checkpoint: {self.last_checkpoint} (step {self.last_checkpoint_step})"
                if self.last_checkpoint
                else "no checkpoint was written"
            )
            raise SignalExit(
                signum, f"stopped at once by a second {signal.Signals(signum).name} at step {self.step}; {last}"
            )
        self._stop_requested = signum

    # ------------------------------------------------------------------ the loop
    def fit(self) -> Path:
        """Train until ``cfg.train.steps`` generator steps; returns the run folder.

        Holds the run folder's lock for its whole life. Ctrl-C or SIGTERM finishes the step, saves a
        checkpoint and raises :class:`Interrupted` (exit 130 or 143); a second signal stops at once.
        """
        t = self.cfg.train
        main_thread = threading.current_thread() is threading.main_thread()
        old_handlers = {sig: signal.signal(sig, self._request_stop) for sig in STOP_SIGNALS} if main_thread else {}
        try:
            with RunLock(self.run_dir) if self.dist.main else contextlib.nullcontext():
                if self.step >= t.steps:  # only a resumed run can be there (train.steps >= 1)
                    warnings.warn(
                        f"run '{self.run_dir}' is already at step {self.step} (train.steps={t.steps}); "
                        f"nothing to train: raise train.steps above {self.step} to continue"
                    )
                    return self.run_dir
                if self.dist.main:
                    remove_stale_temporaries(self.run_dir / "checkpoints")
                try:
                    self._fit()
                except OSError as e:
                    raise UserError(
                        f"cannot write to run folder '{self.run_dir}': {e.strerror or e}; "
                        "free some space or fix its permissions, then resume"
                    ) from None
        finally:
            for sig, handler in old_handlers.items():
                signal.signal(sig, handler)
            self.task.close()  # a streaming task's decoding workers
        if self.dist.main:
            self._summarize()
            if self.cfg.train.report:  # normgan report RUN, at the end of a finished run
                from normgan.report import write_run_report

                write_run_report(self.run_dir, progress=self.progress)
        return self.run_dir

    def _fit(self) -> None:
        cfg, t = self.cfg, self.cfg.train
        header = f"# normgan {__version__}, torch {torch.__version__}, python {platform.python_version()}\n"
        main = self.dist.main
        if main and self.step == 0:  # a fresh start (or a run stopped before its first checkpoint): no stale outputs
            shutil.rmtree(self.run_dir / "tb", ignore_errors=True)
        if main:
            (self.run_dir / "config.yaml").write_text(header + to_yaml(cfg))
            truncate_metrics(self.run_dir / "metrics.jsonl", after_step=self.step)
        logger = MetricsLogger(self.run_dir, tensorboard=t.tensorboard) if main else NullLogger()
        bar = tqdm(
            total=t.steps,
            initial=self.step,
            disable=not (self.progress and main),
            dynamic_ncols=True,
            desc="train",
            unit="step",
        )
        sums: Dict[str, Tensor] = {}
        count, t0, images = 0, time.perf_counter(), 0
        try:
            if self.step == 0:
                self.write_samples(logger)
            while self.step < t.steps and not self._agreed_stop():
                is_log = (self.step + 1) % t.log_every == 0 or self.step + 1 == t.steps
                out = self.train_step(self.step, log=is_log)
                self.step += 1
                count += 1
                images += cfg.data.batch_size * cfg.optim.d_steps
                for k in ("loss/D", "loss/G"):
                    sums[k] = sums[k] + out[k] if k in sums else out[k]
                bar.update(1)
                if is_log:
                    row = self._log_row(out, sums=sums, count=count, images_per_s=images / (time.perf_counter() - t0))
                    logger.log(self.step, row)
                    postfix = {"D": f"{row['loss/D']:.3g}", "G": f"{row['loss/G']:.3g}"}
                    bar.set_postfix({**postfix, "img/s": f"{row['images_per_s']:.0f}"}, refresh=False)
                    sums, count, images, t0 = {}, 0, 0, time.perf_counter()
                self._periodic_outputs(logger)
            interrupted = self._stop_requested
            self.write_samples(logger)
            if cfg.eval.every and not interrupted:
                self.evaluate(logger)
            self.save()
        except TrainingDiverged as e:
            raise self._diverged(str(e)) from None
        finally:
            bar.close()
            logger.close()
        if interrupted:
            raise Interrupted(self.run_dir, self.step, signum=int(interrupted))

    def _log_row(self, out: Dict[str, Tensor], *, sums: Dict[str, Tensor], count: int, images_per_s: float) -> dict:
        """One metrics row: the mean losses since the last row, D's accuracy and logits of the last
        step, throughput, every term's raw/weight/loss and the gradient norms."""
        row = {k: float(v) / count for k, v in sums.items()}
        acc_r, acc_f = d_accuracy(out["d_real"], out["d_fake"])
        row.update({"d/real_acc": float(acc_r), "d/fake_acc": float(acc_f)})
        row.update({"d/real_logit": float(out["d_real"].mean()), "d/fake_logit": float(out["d_fake"].mean())})
        row["images_per_s"] = images_per_s
        row.update({k: float(v) for k, v in self.objective.term_log.items()})
        row.update(self._grad_log)
        row.update(self.hyper.log(self.step - 1))  # the scheduled lr/β2/EMA β of the step just taken
        if self.augment is not None:
            row.update(self.augment.log())
        return row

    def _periodic_outputs(self, logger) -> None:
        """Samples, evaluation and checkpoint when their interval ends at this step (not at the last
        step, whose outputs ``_fit`` writes once)."""
        t, every = self.cfg.train, self.cfg.eval.every
        if self.step >= t.steps:
            return
        if self.step % t.sample_every == 0:
            self.write_samples(logger)
        if every and self.step % every == 0:
            self.evaluate(logger)
        if self.step % t.checkpoint_every == 0:
            self.save()

    def _agreed_stop(self) -> bool:
        """Whether to stop now: a Ctrl-C/SIGTERM seen by this process or, with several, by any."""
        if self.dist.enabled and self.dist.any(bool(self._stop_requested)) and not self._stop_requested:
            self._stop_requested = signal.SIGTERM  # another rank was signalled (torchrun forwards to all)
        return bool(self._stop_requested)

    def _summarize(self) -> None:
        """Warn (one line) when the logged losses show a divergence that stayed finite (e.g. lr = 1e6)."""
        from normgan.eval.diagnostics import divergence

        found = divergence(read_metrics(self.run_dir / "metrics.jsonl"))
        if found and found.get("detected"):
            self.diverged = found
            warnings.warn(
                f"the run diverged: {found['reason']}; its samples are not meaningful, "
                "lower the learning rates or add a gradient penalty (normgan diagnose shows details)"
            )

    def _diverged(self, which: str) -> Diverged:
        if self.last_checkpoint is not None:
            last = f"last good checkpoint: {self.last_checkpoint} (step {self.last_checkpoint_step})"
        else:
            last = "no checkpoint was written yet"
        return Diverged(
            f"{which} became NaN/inf at step {self.step}; stopped without saving, {last}; lower the learning rates "
            "or add a gradient penalty",
            step=self.step,
        )
