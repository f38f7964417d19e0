"""``normgan search``: choose config values (a term's weight λ, its presence, a learning rate) by
grid, random or Bayesian (TPE) search on Optuna, scoring each trial by k-fold cross-validation.

One worker process runs :func:`run_search`. The study (Optuna's) holds the plan as *tickets*:
enqueued trials, each a grid point (grid) or an empty slot the sampler fills (random, TPE).
Workers pop tickets atomically from the storage, so several workers on one SQLite file or one
database server never run a ticket twice; a crashed worker's trial is failed by the heartbeat and
its ticket enqueued again once (``retry_of``). When no ticket is left and no trial runs, a worker
retrains the best config on the whole training split and evaluates it once on the test split.

During the trials the test split cannot be read (:func:`normgan.data.forbid_splits`): every
trial trains on K−1 folds of the training split and is scored on the held-out fold.
"""

from __future__ import annotations

import contextlib
import json
import math
import shutil
import statistics
import time
import warnings
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

from normgan.config import load_config, to_dict, to_yaml
from normgan.errors import ConfigError, Diverged, UserError
from normgan.eval.metric_info import metric_direction
from normgan.report.html import write_atomic
from normgan.search.outputs import best_row, write_outputs
from normgan.search.space import Param, apply_values, check_key, grid_points, parse_params
from normgan.search.storage import default_url, mask_url
from normgan.search.tickets import (
    Surplus,
    TicketWorker,
    TrialFailed,
    check_name,
    environment_cause,
    environment_stop,
    file_lock,
    retried_by,
    retry,
    spec_hash,
    ticket_params,
)
from normgan.search.trainers import resolve_trainer
from normgan.tasks.info import TASK_INFO

SAMPLERS = ("grid", "random", "tpe")
#: --keep: the trial runs' checkpoints kept (metrics, samples and configs are always kept)
KEEP = ("best", "all")
PRUNERS = ("none", "median", "halving")
DIRECTIONS = {"min": "minimize", "minimize": "minimize", "max": "maximize", "maximize": "maximize"}


# ------------------------------------------------------------------------------------------- helpers
def _direction(metric: str, direction: Optional[str]) -> str:
    if direction is None:
        return metric_direction(metric)
    if direction not in DIRECTIONS:
        raise UserError(f"--direction {direction!r}: use min or max")
    return DIRECTIONS[direction]


def _single_split_folds(cfg) -> Optional[int]:
    """--folds 1: the K whose fold 0 is held out (an unconditional run: one fixed fifth of the
    training split), or None for the task's validation split (a paired task)."""
    return TASK_INFO.get(cfg.task).single_split_folds


def _fold_plan(cfg, folds: int) -> List[tuple]:
    """(data.folds, data.fold) of each fold: K folds of the training split; --folds 1: the task's
    validation split, or fold 0 of its ``single_split_folds`` (:func:`_single_split_folds`)."""
    if folds >= 2:
        return [(folds, f) for f in range(folds)]
    return [(_single_split_folds(cfg) or 0, 0)]


def train_size(cfg) -> int:
    """The number of items in the config's training split (loads it; a streamed folder is only listed)."""
    from normgan.tasks.builtin import TASKS

    return TASKS.get(cfg.task).train_size(cfg)


def _check_folds(cfg, folds: int) -> None:
    from normgan.data import check_folds

    if isinstance(folds, bool) or not isinstance(folds, int) or folds < 1:
        raise UserError(f"--folds {folds!r}: give 1 (the validation split) or K >= 2 folds of the training split")
    k = folds if folds >= 2 else _single_split_folds(cfg)
    if k is None:
        return
    n = train_size(cfg)
    try:
        check_folds(n, folds=k)
    except ConfigError as e:
        raise UserError(f"--folds {folds}: {str(e).split(': ', 1)[-1]}") from None


def _trial_eval(cfg_dict: dict, *, metric: str, task: str, steps: int) -> dict:
    """The trials' eval settings: the searched score among the metrics (and best.pt by it), at
    least one evaluation (at the end), and the task's (:meth:`~normgan.tasks.info.TaskInfo.trial_eval`:
    the held-out reference of an unconditional run)."""
    info = TASK_INFO.get(task)
    e = cfg_dict.setdefault("eval", {})
    group = info.metric_group(metric)
    metrics = list(e.get("metrics") or [])
    if group is not None and group not in metrics:
        metrics.append(group)
    e["metrics"] = metrics
    e["best_metric"] = metric
    if not e.get("every") or e["every"] > steps:
        e["every"] = steps
    info.trial_eval(e)
    return cfg_dict


def _checked_metric(metric: str, *, task: str) -> str:
    """``metric``, refused unless the ``task`` computes it."""
    scores = TASK_INFO.get(task).scores
    if metric not in scores:
        raise UserError(f"--metric {metric}: the {task} task does not compute it; choose one of: {', '.join(scores)}")
    return metric


def _check_options(*, sampler: str, pruner: str, seeds: Any, heartbeat: int) -> None:
    """Refuse an unknown sampler or pruner, a seed count below 1 and a heartbeat below 1 s (in that order)."""
    if sampler not in SAMPLERS:
        raise UserError(f"--sampler {sampler!r}: choose one of: {', '.join(SAMPLERS)}")
    if pruner not in PRUNERS:
        raise UserError(f"--pruner {pruner!r}: choose one of: {', '.join(PRUNERS)}")
    if isinstance(seeds, bool) or not isinstance(seeds, int) or seeds < 1:
        raise UserError(f"--seeds {seeds!r}: give a number of seeds >= 1")
    if heartbeat < 1:
        raise UserError(f"--heartbeat {heartbeat!r}: give seconds >= 1")


def _load(tree: dict, *, what: str):
    try:
        return load_config(base=tree)
    except ConfigError as e:
        raise UserError(f"{what}: {e}") from None


# ------------------------------------------------------------------------------------------- the search
class Search(TicketWorker):
    """One worker of a search (see the module docstring); :meth:`run` does everything."""

    kind = "search"
    dir_option = "--searches-dir"

    def __init__(
        self,
        *,
        config: Optional[str],
        overrides: Sequence[str] = (),
        params: Sequence[str],
        trials: Optional[int] = None,
        folds: int = 3,
        metric: Optional[str] = None,
        direction: Optional[str] = None,
        sampler: Optional[str] = None,
        pruner: str = "none",
        seeds: int = 1,
        name: Optional[str] = None,
        storage: Optional[str] = None,
        searches_dir: str | Path = "searches",
        heartbeat: int = 30,
        trainer: str = "normgan",
        progress: bool = True,
        final: bool = True,
        keep: str = "best",
    ) -> None:
        if keep not in KEEP:
            raise UserError(f"--keep {keep!r}: best (the best trial's checkpoints only) or all (every trial's)")
        self.keep = keep
        if name is not None:  # before the data is read (a bad name is refused at once)
            check_name(name)
        self.params: List[Param] = parse_params(params)
        cfg = load_config(config, overrides=list(overrides))
        self.task = cfg.task
        self.metric = _checked_metric(metric or cfg.eval.best_metric, task=self.task)
        self.direction = _direction(self.metric, direction)
        if sampler is None:
            sampler = "grid" if all(p.discrete for p in self.params) else "tpe"
        _check_options(sampler=sampler, pruner=pruner, seeds=seeds, heartbeat=heartbeat)
        self.sampler, self.pruner, self.seeds, self.heartbeat = sampler, pruner, seeds, int(heartbeat)
        self.folds = folds
        self.trainer = resolve_trainer(trainer)
        self.trainer_name = trainer
        self.progress, self.final_enabled = progress, final
        self.config_name = str(config) if config else "default"
        self.overrides = list(overrides)
        self._set_base(cfg)
        self.points, self.requested = self._trial_plan(sampler=sampler, trials=trials, seed=cfg.train.seed)
        self.seed = cfg.train.seed
        self.fold_plan = _fold_plan(cfg, folds)
        _check_folds(cfg, folds)

        stem = Path(self.config_name).stem if config else "default"
        self.name = check_name(name or f"{stem}-{self.metric}")
        self.folder = Path(searches_dir) / self.name
        self.storage_url = storage or default_url(self.folder)
        self.spec = self._describe_spec()

    def _describe_spec(self) -> Dict[str, Any]:
        """What every worker of the search must agree on: params, metric, direction, folds, seeds,
        sampler, pruner and the hash of the base config."""
        return {
            "params": [p.describe() for p in self.params],
            "metric": self.metric,
            "direction": self.direction,
            "folds": self.folds,
            "seeds": self.seeds,
            "sampler": self.sampler,
            "pruner": self.pruner,
            "config": spec_hash(self.base),
        }

    def _set_base(self, cfg) -> None:
        """The base config tree of every trial (``self.base``, evaluating the metric) and
        ``self.steps``; refuses a param key the config lacks or a value it refuses."""
        base = to_dict(cfg)
        for p in self.params:
            check_key(base, p)
        self.steps = cfg.train.steps
        self.base = _trial_eval(base, metric=self.metric, task=self.task, steps=self.steps)
        self._check_values()

    def _trial_plan(self, *, sampler: str, trials: Optional[int], seed: int) -> Tuple[Optional[list], int]:
        """The grid points (None unless ``sampler`` is grid) and the number of trials requested
        (the grid's size, or ``trials``); refuses a missing or invalid ``trials``."""
        if sampler == "grid":
            points = grid_points(self.params, limit=trials, seed=seed)
            requested = len(points)
        else:
            if trials is None:
                raise UserError(f"--sampler {sampler} needs --trials N (how many trials in all)")
            points = None
            requested = trials
        if isinstance(requested, bool) or not isinstance(requested, int) or requested < 1:
            raise UserError(f"--trials {trials!r}: give a number of trials >= 1")
        return points, requested

    # ---------------------------------------------------------------- validation
    def _check_values(self) -> None:
        """Every grid/choice value and each range's bounds give a valid config (one line otherwise)."""
        probes: List[Dict[str, Any]] = []
        for p in self.params:
            if p.discrete:
                probes += [{p.key: p.decode(v)} for v in p.values]
            else:
                probes += [{p.key: int(b) if p.kind == "int" else b} for b in (p.lo, p.hi)]
        for values in probes:
            ((key, value),) = values.items()
            _load(apply_values(self.base, values), what=f"--param {key}={value!r}")

    # ---------------------------------------------------------------- the study
    def configure(self, study, *, worker_seed: int) -> None:
        import optuna

        if self.sampler == "tpe":
            n_startup = min(10, max(2, self.requested // 4))
            study.sampler = optuna.samplers.TPESampler(seed=worker_seed, n_startup_trials=n_startup, constant_liar=True)
        else:
            study.sampler = optuna.samplers.RandomSampler(seed=worker_seed)
        study.pruner = {
            "none": optuna.pruners.NopPruner,
            "median": lambda: optuna.pruners.MedianPruner(n_startup_trials=2),
            "halving": optuna.pruners.SuccessiveHalvingPruner,
        }[self.pruner]()

    def describe_difference(self, key: str) -> str:
        return (
            "the config or its overrides"
            if key == "config"
            else ("--" + key if key in ("metric", "direction", "folds", "seeds", "sampler", "pruner") else key)
        )

    def describe_value(self, key: str, value: Any) -> str:
        if key == "params" and isinstance(value, list):
            return " ".join(f"--param {p.get('key')}={p.get('spec')}" for p in value if isinstance(p, dict)) or "none"
        if key == "config":
            return f"config {value}"
        return super().describe_value(key, value)

    def _stage(self, text: str) -> None:
        """A progress line (stderr) for one fold: its training, evaluation and score; off with progress=False."""
        if self.progress:
            self.say(f"search {self.name}: {text}")

    # ---------------------------------------------------------------- one trial
    def _seed_score(
        self, trial, *, tree: dict, fold_index: int, fold: tuple, seed_index: int, seed: int, where: str
    ) -> float:
        """Train ``seed`` (the trial's ``seed_index``-th) on ``fold`` (``(folds, fold)``, at
        ``fold_index`` of the plan) of the trial's config ``tree``, reporting each evaluation to
        optuna (which may prune the trial); returns the final metric, or raises
        :class:`TrialFailed` when it is not a finite number."""
        import optuna

        k, f = fold
        run_tree = apply_values(tree, {"data.folds": k, "data.fold": f, "train.seed": seed})
        cfg = _load(run_tree, what="trial config")
        offset = (fold_index * self.seeds + seed_index) * self.steps

        def report(step: int, results: dict, offset=offset) -> None:
            v = results.get(self.metric)
            if isinstance(v, (int, float)) and math.isfinite(v):
                trial.report(float(v), offset + int(step))
                if trial.should_prune():
                    trial.set_user_attr("pruned_at", offset + int(step))
                    raise optuna.TrialPruned(f"pruned at step {offset + int(step)}")

        run_dir = self.folder / "trials" / f"{trial.number:04d}" / f"fold{f}-seed{seed}"
        self._stage(f"{where}: training {self.steps} steps")
        t0 = time.perf_counter()
        res = self.trainer(
            cfg,
            run_dir=run_dir,
            report=report,
            progress=self.progress,
            stage=lambda text, where=where: self._stage(f"{where}: {text}"),
        )
        v = (res or {}).get(self.metric)
        if not isinstance(v, (int, float)) or not math.isfinite(v):
            raise TrialFailed(f"fold {f} seed {seed} gave no finite {self.metric} ({v!r})")
        self._stage(f"{where}: {self.metric} {v:.4g} ({time.perf_counter() - t0:.1f} s)")
        return float(v)

    def _objective(self, trial) -> float:
        """The trial's score: the mean over folds of the mean over seeds of the metric (its folds,
        std and per-seed values kept as user attrs); a failure is recorded or sent back to the queue."""
        import optuna

        if not trial.user_attrs.get("ticket"):
            trial.set_user_attr("surplus", True)
            raise Surplus("no ticket left: another worker took the last one")
        values = {p.key: p.suggest(trial) for p in self.params}
        tree = apply_values(self.base, values)
        # the trial's own train.seed (a searched one included) is the first of its --seeds seeds
        first_seed = int((tree.get("train") or {}).get("seed", self.seed))
        fold_values: List[Optional[float]] = [None] * len(self.fold_plan)
        per_seed: List[List[float]] = []
        where = "trial"
        try:
            for fi, (k, f) in enumerate(self.fold_plan):
                vals = []
                for si in range(self.seeds):
                    seed = first_seed + si
                    where = f"trial {trial.number} fold {fi + 1}/{len(self.fold_plan)} seed {seed}"
                    vals.append(
                        self._seed_score(
                            trial, tree=tree, fold_index=fi, fold=(k, f), seed_index=si, seed=seed, where=where
                        )
                    )
                per_seed.append(vals)
                fold_values[fi] = statistics.fmean(vals)
                trial.set_user_attr("folds", fold_values)
        except TrialFailed as e:
            trial.set_user_attr("error", str(e))
            warnings.warn(f"trial {trial.number} failed: {e}")
            raise
        except optuna.TrialPruned:
            raise
        except (UserError, OSError, MemoryError, RuntimeError) as e:
            reason = None if isinstance(e, Diverged) else environment_cause(e)
            if reason is not None:  # a full disk, an unwritable folder: the next trials would fail alike
                raise environment_stop(self, trial, e, reason, what=where) from None
            if not isinstance(e, UserError):  # a bug: kept with its traceback, the ticket queued again
                self._interrupted(trial)
                raise
            # a diverged run (NaN), a value the config refuses: a result of the trial
            trial.set_user_attr("error", str(e))
            warnings.warn(f"trial {trial.number} failed: {e}")
            raise TrialFailed(str(e)) from None
        except BaseException:  # Ctrl-C, SIGTERM, a bug: the ticket goes back to the queue once
            self._interrupted(trial)
            raise
        done = [v for v in fold_values if v is not None]
        trial.set_user_attr("std", statistics.pstdev(done) if len(done) > 1 else 0.0)
        trial.set_user_attr("seed_values", per_seed)
        return statistics.fmean(done)

    @staticmethod
    def _interrupted(trial) -> None:
        """An interrupted trial (Ctrl-C, a signal, a bug): its ticket goes back to the queue once."""
        trial.set_user_attr("interrupted", True)
        with contextlib.suppress(Exception):
            retry(trial.study, trial)

    def prune_checkpoints(self, study) -> List[Path]:
        """``--keep best``: delete the checkpoints of every finished trial but the best one (their
        metrics, samples and configs stay). Running and waiting trials are not touched."""
        from optuna.trial import TrialState

        if self.keep == "all":
            return []
        best = self.best(study)
        removed = []
        for t in study.get_trials(deepcopy=False):
            if not t.state.is_finished() or (
                best is not None and t.number == best["number"] and t.state == TrialState.COMPLETE
            ):
                continue
            for ck in sorted((self.folder / "trials" / f"{t.number:04d}").glob("*/checkpoints")):
                shutil.rmtree(ck, ignore_errors=True)
                removed.append(ck)
        return removed

    # ---------------------------------------------------------------- the worker loop
    def run(self) -> dict:
        """Join (or start) the study, run tickets until none is left, then retrain the best config
        and evaluate it on the test split (once per search folder); write the outputs."""
        import sqlalchemy.exc
        from optuna.exceptions import StorageInternalError
        from tqdm.auto import tqdm

        from normgan.data import forbid_splits

        study, creator = self.open()
        try:
            self.plan_once(study, creator=creator)
            bar = tqdm(
                total=self.requested,
                desc=f"search {self.name}",
                unit="trial",
                disable=not self.progress,
                dynamic_ncols=True,
            )
            try:
                self.work(
                    study,
                    self._objective,
                    bar=bar,
                    guard=forbid_splits(("test", "all")),
                    after_trial=lambda: self.prune_checkpoints(study),
                )
            except BaseException:
                with contextlib.suppress(Exception):  # the outputs so far; the error in flight is the one to show
                    self._write(study)
                raise
            finally:
                bar.close()
            self.prune_checkpoints(study)  # trials other workers finished after this one's last
            self._write(study)
            final = self._final(study) if self.final_enabled else None
            return self._write(study, final=final)
        except (sqlalchemy.exc.SQLAlchemyError, StorageInternalError) as e:
            raise self.storage_error(e) from None
        except OSError as e:
            raise self.folder_error(e) from None

    # ---------------------------------------------------------------- results
    def rows(self, study) -> List[dict]:
        """One plain dict per trial (surplus ones left out) for the outputs."""
        from optuna.trial import TrialState

        rows = []
        trials = study.get_trials(deepcopy=False)
        again_as = retried_by(trials)
        for t in trials:
            attrs = t.user_attrs or {}
            if attrs.get("surplus"):
                continue
            folds = list(attrs.get("folds") or [None] * len(self.fold_plan))
            error = attrs.get("error")
            if t.state == TrialState.FAIL and not error:
                again = again_as.get(t.number)
                error = "interrupted or crashed" + (f"; run again as trial {again}" if again is not None else "")
            params = {p.key: (t.params if t.params else (ticket_params(t) or {})).get(p.key) for p in self.params}
            pruned_at = attrs.get("pruned_at")
            if t.state == TrialState.PRUNED and pruned_at is None and t.intermediate_values:
                pruned_at = max(t.intermediate_values)
            done = [v for v in folds if v is not None]
            rows.append(
                {
                    "number": t.number,
                    "state": t.state.name,
                    "params": params,
                    "folds": folds,
                    "mean": t.value if t.state == TrialState.COMPLETE else (statistics.fmean(done) if done else None),
                    "std": attrs.get("std")
                    if t.state == TrialState.COMPLETE
                    else (statistics.pstdev(done) if len(done) > 1 else None),
                    "seconds": t.duration.total_seconds() if t.duration is not None else None,
                    "pruned_at": pruned_at,
                    "error": error,
                }
            )
        return rows

    def best(self, study, rows: Optional[List[dict]] = None) -> Optional[dict]:
        """The COMPLETE trial with the best mean (ties: the earlier one), from ``rows`` when given."""
        b = best_row(rows if rows is not None else self.rows(study), self.direction)
        if b is None:
            return None
        return {"number": b["number"], "params": b["params"], "mean": b["mean"], "std": b["std"], "yaml": "best.yaml"}

    def best_config(self, best: dict) -> dict:
        """The base config with the best trial's values, folds off: what ``best.yaml`` holds."""
        values = {p.key: p.decode(best["params"][p.key]) for p in self.params}
        tree = apply_values(self.base, values)
        return apply_values(tree, {"data.folds": 0, "data.fold": 0})

    def _final(self, study) -> Optional[dict]:
        """Retrain the best config on the whole training split, evaluate it once on the test split."""
        best = self.best(study)
        if best is None:
            return None
        out = self.folder / "final"
        result = out / "test.json"
        with file_lock(self.folder / ".final.lock"):
            if result.is_file():
                saved = json.loads(result.read_text())
                if saved.get("trial") == best["number"]:
                    return saved
            tree = apply_values(self.best_config(best), {"eval.every": 0})
            cfg = _load(tree, what="best config")
            run_dir = out / "run"
            if run_dir.exists():
                import shutil

                shutil.rmtree(run_dir)
            t0 = time.perf_counter()
            self.trainer(cfg, run_dir=run_dir, report=lambda step, res: None, progress=self.progress)
            test = getattr(self.trainer, "test", None)
            metrics = test(cfg, run_dir=run_dir) if test is not None else {}
            value = metrics.get(self.metric)
            final = {
                "trial": best["number"],
                "metric": self.metric,
                "value": value,
                "split": "test",
                "metrics": {
                    k: v for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)
                },
                "run": str(run_dir),
                "seconds": time.perf_counter() - t0,
            }
            base = {k[len("baseline_") :]: v for k, v in final["metrics"].items() if k.startswith("baseline_")}
            if base:
                final["baseline"] = base
            write_atomic(result, (json.dumps(final, indent=2, sort_keys=True) + "\n").encode())
        with contextlib.suppress(Exception):
            study.set_user_attr("final", {k: final[k] for k in ("trial", "metric", "value", "split")})
        return final

    def _importances(self, study) -> Optional[Dict[str, float]]:
        import optuna
        from optuna.trial import TrialState

        complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        if len(self.params) < 2 or len(complete) < 4:
            return None
        try:
            return {k: float(v) for k, v in optuna.importance.get_param_importances(study).items()}
        except (RuntimeError, ValueError, ZeroDivisionError):
            return None

    def _write(self, study, *, final: Optional[dict] = None) -> dict:
        if final is None:
            path = self.folder / "final" / "test.json"
            final = json.loads(path.read_text()) if path.is_file() else None
        rows = self.rows(study)
        best = self.best(study, rows)
        if best is not None:
            cfg = _load(self.best_config(best), what="best config")
            header = (
                f"# normgan search '{self.name}': best trial {best['number']} of {len(rows)}, "
                f"{self.metric} = {best['mean']:.6g}"
                + (f" ± {best['std']:.3g}" if best.get("std") is not None else "")
                + f" over {len(self.fold_plan)} fold(s)\n# train it: normgan train {self.folder / 'best.yaml'}\n"
            )
            write_atomic(self.folder / "best.yaml", (header + to_yaml(cfg)).encode())
        meta = {
            "name": self.name,
            "metric": self.metric,
            "direction": self.direction,
            "folds": self.folds,
            "seeds": self.seeds,
            "sampler": self.sampler,
            "pruner": self.pruner,
            "config": self.config_name,
            "storage": mask_url(self.storage_url),
            "trials_requested": self.requested,
            "overrides": self.overrides,
        }
        paths = write_outputs(
            self.folder,
            meta=meta,
            params=[p.describe() for p in self.params],
            rows=rows,
            best=best,
            final=final,
            importances=self._importances(study),
        )
        return {"folder": self.folder, "rows": rows, "best": best, "final": final, "paths": paths}


def run_search(**kwargs) -> dict:
    """Run one search worker: ``Search(**kwargs).run()`` (see :class:`Search` for the arguments)."""
    return Search(**kwargs).run()
