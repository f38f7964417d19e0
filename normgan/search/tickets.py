"""A plan of work shared by worker processes through an Optuna study: *tickets*.

A ticket is an enqueued trial: a grid point (``{"regularizers.l1.weight": 10}``, ``{"variant":
"r1", "seed": 0}``) or an empty slot a sampler fills. Workers pop tickets atomically from the
storage (a SQLite file or a database server), so several processes or machines never run one
twice. A worker killed mid-trial is failed by Optuna's heartbeat and its ticket is enqueued again
once (``retry_of``); an interrupted one (Ctrl-C) enqueues itself again. ``normgan search`` and
``normgan study`` are both :class:`TicketWorker` subclasses: they differ in what a trial does.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
import warnings
from pathlib import Path
from typing import Any, Callable, ContextManager, Dict, List, Optional

from normgan.errors import UserError
from normgan.search.storage import open_storage

#: seconds an idle worker waits between looks at a study whose last trials run elsewhere
POLL_SECONDS = 2.0
#: seconds a joining worker waits for the study's creator to enqueue the plan
PLAN_WAIT = 120.0


class TrialFailed(Exception):
    """A trial that cannot give a value (its training diverged, a value made the config invalid);
    Optuna records it as failed with the reason in the ``error`` user attribute, and goes on."""


class Surplus(TrialFailed):
    """A trial Optuna created without a ticket (two workers raced for the last one): not run."""


@contextlib.contextmanager
def file_lock(path: Path):
    """An exclusive lock between the processes of this machine (plans, a search's final retrain)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def ticket_params(trial) -> Optional[dict]:
    """The fixed parameters of a stored trial that came from a ticket (``{}`` for an empty one)."""
    return (getattr(trial, "system_attrs", None) or {}).get("fixed_params")


def counts(trial) -> bool:
    """Whether a stored trial fills one of the requested trials: done, running or waiting, or failed
    with a reason of its own; interrupted/crashed ones are replaced by their retry tickets."""
    from optuna.trial import TrialState

    attrs = trial.user_attrs or {}
    if attrs.get("surplus"):
        return False
    if trial.state == TrialState.FAIL:
        return bool(attrs.get("error"))
    return True


def point_key(params: dict) -> str:
    return json.dumps(params, sort_keys=True, default=str)


def retry(study, trial) -> None:
    """Enqueue a crashed or interrupted trial's parameters again (``retry_of`` its number); the
    callers make it happen once per trial."""
    params = {**(ticket_params(trial) or {}), **(trial.params or {})}
    study.enqueue_trial(params, user_attrs={"ticket": True, "retry_of": trial.number}, skip_if_exists=False)


def retry_stale_trial(study, trial) -> None:
    """Optuna's ``heartbeat_stale_trial_callback``: runs once for each trial the heartbeat marked failed."""
    if not (trial.user_attrs or {}).get("surplus"):
        retry(study, trial)


def retried_by(trials) -> Dict[int, int]:
    """``{failed trial number: the number of the trial that retried it}``."""
    return {(t.user_attrs or {}).get("retry_of"): t.number for t in trials if (t.user_attrs or {}).get("retry_of") is not None}


class TicketWorker:
    """One worker of a ticket plan. Subclasses set, before :meth:`open`:

    ``kind`` (``"search"``/``"study"``: the user attribute holding :attr:`spec`, and the word in
    messages), ``name``, ``folder``, ``storage_url``, ``heartbeat`` (seconds), ``spec`` (settings
    that must match to join an existing plan), ``direction``, ``seed``, ``requested`` (how many
    trials in all) and ``points`` (the grid points, or None for empty slots).
    """

    kind = "plan"
    name: str
    folder: Path
    storage_url: str
    heartbeat: int
    spec: Dict[str, Any]
    direction: str = "minimize"
    seed: int = 0
    requested: int
    points: Optional[List[dict]] = None

    # ---------------------------------------------------------------- the study
    def configure(self, study, *, worker_seed: int) -> None:
        """Set the study's sampler and pruner (tickets fix every value: a seeded random sampler)."""
        import optuna

        study.sampler = optuna.samplers.RandomSampler(seed=worker_seed)

    def open(self):
        """``(study, creator)``: the Optuna study, created here (``creator``) or joined."""
        import optuna

        optuna.logging.set_verbosity(optuna.logging.ERROR)  # failures are reported by us, in one line
        self.folder.mkdir(parents=True, exist_ok=True)
        # one process of this machine at a time creates the tables and the study (workers on other
        # machines: open_storage retries a schema creation that raced)
        with file_lock(self.folder / ".plan.lock"):
            storage = open_storage(self.storage_url, heartbeat=self.heartbeat, stale_trial_callback=retry_stale_trial)
            try:
                study = optuna.create_study(study_name=self.name, storage=storage, direction=self.direction, load_if_exists=False)
                creator = True
                study.set_user_attr(self.kind, self.spec)
            except optuna.exceptions.DuplicatedStudyError:
                study = optuna.load_study(study_name=self.name, storage=storage)
                creator = False
        if not creator:
            self._check_same(study)
        self.configure(study, worker_seed=self.seed if creator else self.seed + os.getpid())
        return study, creator

    def describe_difference(self, key: str) -> str:
        """How a differing :attr:`spec` key is named in the refusal."""
        return key

    def _check_same(self, study) -> None:
        deadline = time.monotonic() + 60
        saved = study.user_attrs.get(self.kind)
        while saved is None and time.monotonic() < deadline:  # its creator is writing it
            time.sleep(0.2)
            saved = study.user_attrs.get(self.kind)
        if saved is None:
            return
        diff = [k for k in self.spec if saved.get(k) != self.spec[k]]
        if diff:
            k = diff[0]
            raise UserError(f"{self.kind} '{self.name}' exists with other settings ({self.describe_difference(k)} differ: "
                            f"{saved.get(k)!r} vs {self.spec[k]!r}); give the same ones to continue it, or a new --name")

    def _wait_for_plan(self, study) -> None:
        """A worker that joined a study waits until its creator has enqueued the plan (the
        ``planned`` attribute), so that two workers never plan the same tickets."""
        deadline = time.monotonic() + PLAN_WAIT
        while "planned" not in study.user_attrs and time.monotonic() < deadline:
            time.sleep(0.2)

    def plan(self, study) -> int:
        """Enqueue tickets up to the requested number of trials; returns how many were added.

        The creator of a study plans it; a later run tops it up (a larger request, or grid points
        whose ticket was lost). Two workers topping up one study at the same instant could both
        enqueue: the local file lock prevents it on one machine (docs/decisions.md)."""
        with file_lock(self.folder / ".plan.lock"):
            trials = study.get_trials(deepcopy=False)
            counted = [t for t in trials if counts(t)]
            need = self.requested - len(counted)
            if need <= 0:
                return 0
            if self.points is not None:
                covered = {point_key({**(ticket_params(t) or {}), **t.params}) for t in counted}
                points = [p for p in self.points if point_key(p) not in covered][:need]
            else:
                points = [{} for _ in range(need)]
            for p in points:
                study.enqueue_trial(p, user_attrs={"ticket": True}, skip_if_exists=False)
            study.set_user_attr("trials_requested", self.requested)
            return len(points)

    def plan_once(self, study, *, creator: bool) -> None:
        if not creator:
            self._wait_for_plan(study)
        self.plan(study)
        if creator or "planned" not in study.user_attrs:
            study.set_user_attr("planned", True)

    # ---------------------------------------------------------------- the worker loop
    def work(self, study, objective: Callable, *, bar=None, guard: Optional[ContextManager] = None,
             after_trial: Optional[Callable[[], None]] = None) -> None:
        """Run waiting tickets with ``objective`` until none is left and none runs elsewhere.
        ``bar`` (tqdm) counts finished trials; ``guard`` wraps the loop; ``after_trial`` runs after each trial."""
        import optuna
        from optuna.trial import TrialState

        with guard if guard is not None else contextlib.nullcontext(), warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            while True:
                optuna.storages.fail_stale_trials(study)
                trials = study.get_trials(deepcopy=False)
                if bar is not None:
                    bar.n = sum(1 for t in trials if counts(t) and t.state.is_finished())
                    bar.refresh()
                if any(t.state == TrialState.WAITING for t in trials):
                    study.optimize(objective, n_trials=1, catch=(TrialFailed,), gc_after_trial=True)
                    if after_trial is not None:
                        after_trial()
                    continue
                if any(t.state == TrialState.RUNNING for t in trials):
                    time.sleep(min(POLL_SECONDS, self.heartbeat))
                    continue
                break
