"""``normgan study``: train every (variant, seed) of a study and tabulate them at equal N.

The runs are tickets of the search's plan (:class:`normgan.search.tickets.TicketWorker`) in an
Optuna study stored beside them (``studies/NAME/study.db``, or ``--storage URL``), so any number of
worker processes, on one machine or several, share the work and a crashed worker's run is taken
up again. Each (variant, seed) trains in ``studies/NAME/runs/VARIANT/seedS``: an interrupted run
resumes from its last checkpoint, a finished one is not trained again. A run that diverges (NaN)
is a result (counted in the divergence rate), not retried; one stopped by its environment (a full
disk, an unwritable folder) stops the worker with one line, and the next run retries it.

The runs' seeds are ``train.seed + s`` for each ``s`` of the study's seeds (``train.seed`` is 0
unless the base config or the study's overrides set it), so ``overrides: {train.seed: 5}`` with
``seeds: 3`` trains seeds 5, 6 and 7.

After each run, ``study.json`` (settings and one row per run) is written and the outputs are
rebuilt from it and the run folders (:func:`normgan.report.study.write_study_outputs`): table.md,
results.csv, plots/ and report.html.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import subprocess
import sys
import time
import warnings
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

from normgan.errors import Diverged, UserError
from normgan.report.html import write_atomic
from normgan.search.storage import default_url, mask_url
from normgan.search.tickets import (
    Surplus,
    TicketWorker,
    TrialFailed,
    check_name,
    environment_cause,
    environment_stop,
    retried_by,
    retry,
    spec_hash,
    ticket_params,
)
from normgan.study.spec import StudySpec, load_study


def _overfitting(run_dir: Path, cfg) -> dict:
    """The overfitting scores of a finished run with its own eval settings: ``eval.features`` (named in
    the result's ``features``, which the study keeps), ``eval.n``, ``eval.seed``, ``eval.cache_dir``."""
    from normgan.runtime.device import resolve_device
    from normgan.study.overfit import overfitting_scores

    e = cfg.eval
    return overfitting_scores(
        run_dir,
        n=e.n,
        features=e.features,
        device=str(resolve_device(cfg.train.device)),
        seed=e.seed,
        cache_dir=e.cache_dir,
    )


#: measures computed on a finished run, added to its final scores
MEASURES: Dict[str, Callable] = {"overfitting": _overfitting}


def final_scores(run_dir: Path) -> dict:
    """The last evaluation row of a run's metrics.jsonl as ``{metric: value}`` (``eval/`` dropped)."""
    from normgan.report.folders import read_metrics_file

    rows = [r for r in read_metrics_file(Path(run_dir) / "metrics.jsonl").rows if any(k.startswith("eval/") for k in r)]
    if not rows:
        return {}
    last = max(rows, key=lambda r: r["step"])
    out = {k[len("eval/") :]: v for k, v in last.items() if k.startswith("eval/") and isinstance(v, (int, float))}
    out["step"] = int(last["step"])
    return out


def stored_scores(scores: dict) -> dict:
    """What a run's trial keeps of its final ``scores``: the numbers (``step`` an int, the others floats)
    and ``features``, the name of the extractor the overfitting measures used (a str)."""
    out = {
        k: (int(v) if k == "step" else float(v))
        for k, v in scores.items()
        if isinstance(v, (int, float)) and not isinstance(v, bool)
    }
    if isinstance(scores.get("features"), str):
        out["features"] = scores["features"]
    return out


def _last_step(run_dir: Path) -> Optional[int]:
    from normgan.eval.evaluation import checkpoint_step

    if not (run_dir / "checkpoints" / "last.pt").is_file():
        return None
    try:
        return checkpoint_step(run_dir)
    except UserError:
        return None


def train_run(cfg, *, run_dir: Path, progress: bool) -> None:
    """Train ``cfg`` into ``run_dir``; resume it if the folder holds an unfinished run; nothing if finished."""
    from normgan.train import Trainer

    run_dir = Path(run_dir)
    if (run_dir / "config.yaml").is_file():
        step = _last_step(run_dir)
        if step is not None and step >= cfg.train.steps:
            return
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "stopped before its first checkpoint": expected here
            trainer = Trainer.resume(run_dir, progress=progress)
    else:
        run_dir.mkdir(parents=True, exist_ok=True)
        trainer = Trainer(cfg, run_dir=run_dir, progress=progress)
    trainer.fit()


class Study(TicketWorker):
    """One worker of a study: :meth:`run` trains tickets until none is left and writes the outputs."""

    kind = "study"
    dir_option = "--studies-dir"

    def __init__(
        self,
        *,
        study: str,
        overrides: Sequence[str] = (),
        seeds: Optional[int] = None,
        name: Optional[str] = None,
        storage: Optional[str] = None,
        studies_dir: str | Path = "studies",
        heartbeat: int = 30,
        progress: bool = True,
        trainer: Callable = train_run,
        outputs: bool = True,
    ) -> None:
        self.spec_obj: StudySpec = load_study(study, overrides=overrides, seeds=seeds)
        s = self.spec_obj
        first = int(s.base.get("train", {}).get("seed", 0) or 0)
        if first:  # train.seed set in the base config or the overrides: the first seed of the runs
            s.seeds = [first + x for x in s.seeds]
        self.name = check_name(name or s.name, extra="+")
        if heartbeat < 1:
            raise UserError(f"--heartbeat {heartbeat!r}: give seconds >= 1")
        self.folder = Path(studies_dir) / self.name
        self.storage_url = storage or default_url(self.folder)
        self.heartbeat = int(heartbeat)
        self.direction = s.direction
        self.seed = 0
        self.points = [{"variant": v.name, "seed": seed} for v in s.variants for seed in s.seeds]
        self.requested = len(self.points)
        described = s.describe()
        self.spec = {k: spec_hash(v) if k == "config" else v for k, v in described.items()}
        self.progress, self.trainer, self.outputs_enabled = progress, trainer, outputs
        self.command = "normgan study " + " ".join(
            [study, *overrides] + ([f"--seeds {seeds}"] if seeds else []) + ([f"--name {name}"] if name else [])
        )

    def describe_difference(self, key: str) -> str:
        return "the base config or its overrides" if key == "config" else key

    def describe_trial(self, trial) -> str:
        params = {**(ticket_params(trial) or {}), **(trial.params or {})}
        if "variant" in params:
            return f"{params['variant']} seed {params.get('seed')}"
        return super().describe_trial(trial)

    def run_dir(self, variant: str, seed: int) -> Path:
        return self.folder / "runs" / variant / f"seed{seed}"

    # ---------------------------------------------------------------- one run
    def _objective(self, trial) -> float:
        from normgan.config import load_config

        if not trial.user_attrs.get("ticket"):
            trial.set_user_attr("surplus", True)
            raise Surplus("no ticket left: another worker took the last one")
        variant = trial.suggest_categorical("variant", [v.name for v in self.spec_obj.variants])
        seed = trial.suggest_categorical("seed", self.spec_obj.seeds)
        run_dir = self.run_dir(variant, seed)
        cfg = load_config(base=self.spec_obj.run_tree(variant, seed))
        try:
            self.trainer(cfg, run_dir=run_dir, progress=self.progress)
            scores = final_scores(run_dir)
            for m in self.spec_obj.measures:
                scores.update(MEASURES[m](run_dir, cfg))
        except Diverged as e:
            trial.set_user_attr("diverged", e.step)
            trial.set_user_attr("error", str(e))
            trial.set_user_attr("final", final_scores(run_dir))
            raise TrialFailed(str(e)) from None
        except (UserError, OSError, MemoryError, RuntimeError) as e:
            reason = environment_cause(e)
            if reason is not None:  # a full disk, an unwritable folder: the next runs would fail alike
                raise environment_stop(self, trial, e, reason, what=f"run {variant} seed {seed}") from None
            if not isinstance(e, UserError):  # a bug: kept with its traceback, the ticket queued again
                trial.set_user_attr("interrupted", True)
                with contextlib.suppress(Exception):
                    retry(trial.study, trial)
                raise
            trial.set_user_attr("error", str(e))
            warnings.warn(f"study {self.name}: run {variant} seed {seed} failed: {e}")
            raise TrialFailed(str(e)) from None
        except BaseException:  # Ctrl-C, SIGTERM, a bug: the ticket goes back to the queue once
            trial.set_user_attr("interrupted", True)
            with contextlib.suppress(Exception):
                retry(trial.study, trial)
            raise
        scores = stored_scores(scores)
        trial.set_user_attr("final", scores)
        value = scores.get(self.spec_obj.metric)
        if value is None or not math.isfinite(value):
            trial.set_user_attr("error", f"no finite {self.spec_obj.metric} in the run's last evaluation")
            raise TrialFailed(trial.user_attrs["error"])
        return value

    # ---------------------------------------------------------------- rows and outputs
    def rows(self, study) -> List[dict]:
        """One row per (variant, seed) from its latest trial: done, diverged, failed, running or waiting."""
        from optuna.trial import TrialState

        trials = study.get_trials(deepcopy=False)
        again = retried_by(trials)
        latest: Dict[tuple, dict] = {}
        for t in trials:
            attrs = t.user_attrs or {}
            if attrs.get("surplus") or (t.state == TrialState.FAIL and t.number in again):
                continue
            params = {**(ticket_params(t) or {}), **(t.params or {})}
            if "variant" not in params:
                continue
            key = (params["variant"], params["seed"])
            if t.state == TrialState.COMPLETE:
                state = "done"
            elif t.state == TrialState.FAIL:
                state = (
                    "diverged"
                    if attrs.get("diverged") is not None
                    else ("failed" if attrs.get("error") else "interrupted")
                )
            else:
                state = {TrialState.RUNNING: "running", TrialState.WAITING: "waiting"}.get(
                    t.state, t.state.name.lower()
                )
            run = self.run_dir(*key)
            latest[key] = {
                "variant": key[0],
                "seed": key[1],
                "run": str(run.relative_to(self.folder)),
                "state": state,
                "step": (attrs.get("final") or {}).get("step", attrs.get("diverged")),
                "error": attrs.get("error"),
                "seconds": t.duration.total_seconds()
                if t.duration is not None and state in ("done", "diverged", "failed")
                else None,
                "final": {k: v for k, v in (attrs.get("final") or {}).items() if k != "step"},
                "trial": t.number,
            }
        order = {(p["variant"], p["seed"]): i for i, p in enumerate(self.points)}
        return sorted(latest.values(), key=lambda r: order.get((r["variant"], r["seed"]), len(order)))

    def document(self, study) -> dict:
        s = self.spec_obj
        from normgan.tasks.info import TASK_INFO

        columns = list(TASK_INFO.get(s.task).study_columns)
        if "modes" in (s.base.get("eval") or {}).get("metrics", ()):  # Stacked MNIST: modes and KL first
            columns = ["modes", "mode_kl", *columns]
        if s.metric not in columns:
            columns.insert(0, s.metric)
        if "overfitting" in s.measures:
            columns += ["fid_train", "fid_heldout", "fid_gap", "fid_gap_real", "memorization", "memorization_real"]
        return {
            "name": self.name,
            "title": s.title,
            "description": s.description,
            "command": self.command,
            "metric": s.metric,
            "direction": s.direction,
            "threshold": s.threshold,
            "steps": s.steps,
            "seeds": s.seeds,
            "config": s.config,
            "overrides": s.overrides,
            "columns": columns,
            "measures": s.measures,
            "storage": mask_url(self.storage_url),
            "eval": s.base.get("eval", {}),
            "variants": [{"name": v.name, "values": v.values} for v in s.variants],
            "runs": self.rows(study),
        }

    def write(self, study, *, strict: bool = True) -> dict:
        """Write study.json and (unless ``outputs=False``) the table, plots and report built from it.
        ``strict=False`` (between runs): a report that cannot be built is a warning, the study goes on."""
        doc = self.document(study)
        write_atomic(self.folder / "study.json", (json.dumps(doc, indent=2, default=str) + "\n").encode())
        paths = {"study": self.folder / "study.json"}
        if self.outputs_enabled:
            from normgan.report.study import write_study_outputs

            try:
                paths.update(write_study_outputs(self.folder))
            except Exception as e:  # noqa: BLE001  (the final write raises it)
                if strict:
                    raise
                warnings.warn(
                    f"study {self.name}: the report was not updated ({type(e).__name__}: {e}); "
                    f"'normgan report {self.folder}' writes it again"
                )
        return {"folder": self.folder, "document": doc, "paths": paths}

    # ---------------------------------------------------------------- the worker loop
    def run(self) -> dict:
        """Join (or start) the study, train tickets until none is left, write the outputs."""
        import sqlalchemy.exc
        from optuna.exceptions import StorageInternalError
        from tqdm.auto import tqdm

        study, creator = self.open()
        try:
            self.plan_once(study, creator=creator)
            bar = tqdm(
                total=self.requested,
                desc=f"study {self.name}",
                unit="run",
                disable=not self.progress,
                dynamic_ncols=True,
            )
            try:
                self.work(study, self._objective, bar=bar, after_trial=lambda: self._write_between(study))
            except BaseException:
                with contextlib.suppress(Exception):  # the outputs so far; the error in flight is the one to show
                    self.write(study, strict=False)
                raise
            finally:
                bar.close()
            return self.write(study)
        except (sqlalchemy.exc.SQLAlchemyError, StorageInternalError) as e:
            raise self.storage_error(e) from None
        except OSError as e:
            raise self.folder_error(e) from None

    def _write_between(self, study) -> None:
        """The outputs after each run; a full disk here does not hide the run's own result."""
        try:
            self.write(study, strict=False)
        except OSError:
            if self.stopped is None:
                raise


def _threads_per_worker(workers: int) -> int:
    return max(1, (os.cpu_count() or 1) // workers)


def run_study(*, workers: int = 1, argv: Optional[List[str]] = None, **kwargs) -> dict:
    """Run a study with ``workers`` processes on this machine: this one and ``workers − 1`` copies of
    the command (``argv``, without ``--workers``) started beside it; each gets cpu_count/workers threads."""
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise UserError(f"--workers {workers!r}: give a number of processes >= 1")
    study = Study(**kwargs)
    children = []
    if workers > 1:
        import torch

        torch.set_num_threads(_threads_per_worker(workers))
        if argv is None:
            raise UserError("--workers > 1 needs the command line to start the other workers")
        env = {**os.environ, "OMP_NUM_THREADS": str(_threads_per_worker(workers))}
        study.folder.mkdir(parents=True, exist_ok=True)
        for i in range(workers - 1):
            with open(study.folder / f"worker-{i + 1}.log", "ab") as log:  # the child keeps its own handle
                children.append(
                    subprocess.Popen(
                        [sys.executable, "-m", "normgan", "study", *argv, "--no-progress", "--no-outputs"],
                        env=env,
                        stdout=log,
                        stderr=subprocess.STDOUT,
                    )
                )
            time.sleep(0.5)  # the first worker creates the study; the others join it
    try:
        result = study.run()
    finally:
        for c in children:
            with contextlib.suppress(Exception):
                c.wait()
    if children:  # every worker has stopped: the outputs see every run
        result = study.write(study.open()[0])
    failed = [c.returncode for c in children if c.returncode not in (0, None)]
    if failed:
        warnings.warn(f"{len(failed)} worker process(es) exited with an error; see {study.folder}/worker-*.log")
    return result
