"""A plan of work shared by worker processes through an Optuna study: *tickets*.

A ticket is an enqueued trial: a grid point (``{"regularizers.l1.weight": 10}``, ``{"variant":
"r1", "seed": 0}``) or an empty slot a sampler fills. Workers pop tickets atomically from the
storage (a SQLite file or a database server), so several processes or machines never run one
twice. A worker killed mid-trial is failed by Optuna's heartbeat and its ticket is enqueued again
once (``retry_of``); an interrupted one (Ctrl-C) enqueues itself again. A trial that failed
because of its environment (a full disk, an unwritable folder, memory: :func:`environment_cause`)
stops the worker with one line; the next run enqueues it again (and says so). A trial that failed
for a reason of its own (a diverged run, a value the config refuses) is a result, never retried.
``normgan search`` and ``normgan study`` are both :class:`TicketWorker` subclasses: they differ in
what a trial does.

A folder holds one plan: ``FOLDER/.identity.json`` records its kind, name, storage and settings,
and another plan is refused in it before anything is written (:meth:`TicketWorker.open`). The
plan's folder name (:func:`check_name`) and the hash of its config (:func:`spec_hash`) are checked
and computed here for both kinds.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import os
import re
import sys
import time
import warnings
from pathlib import Path
from typing import Any, Callable, ContextManager, Dict, List, Optional

from normgan.errors import Diverged, UserError
from normgan.search.storage import default_url, mask_url, open_storage

#: seconds an idle worker waits between looks at a study whose last trials run elsewhere
POLL_SECONDS = 2.0
#: seconds a joining worker waits for the study's creator to enqueue the plan
PLAN_WAIT = 120.0


class TrialFailed(Exception):
    """A trial that cannot give a value (its training diverged, a value made the config invalid);
    Optuna records it as failed with the reason in the ``error`` user attribute, and goes on."""


class Surplus(TrialFailed):
    """A trial Optuna created without a ticket (two workers raced for the last one): not run."""


class EnvironmentFailed(TrialFailed):
    """A trial stopped by its environment (a full disk, an unwritable folder, memory): recorded as
    failed with ``env_error``, the worker stops, and the next run enqueues the trial again."""


#: errno values that say the machine, not the trial, is at fault (space, permissions, I/O, memory)
ENV_ERRNOS = {
    errno.ENOSPC,
    errno.EDQUOT,
    errno.EROFS,
    errno.EACCES,
    errno.EPERM,
    errno.EIO,
    errno.ENOMEM,
    errno.EMFILE,
    errno.ENFILE,
}
#: words of a one-line error that was raised for a full disk (the cause itself not chained)
ENV_WORDS = ("no space left", "disk is full", "disk full", "out of memory", "read-only file system")


def environment_cause(exc: BaseException) -> Optional[str]:
    """A short reason when ``exc`` (or an error it was raised from, ``from None`` included) was caused
    by the environment: an OSError of :data:`ENV_ERRNOS`, a failed file write of torch.save (a full
    disk), MemoryError; None for anything else (a diverged run, a bad value, a bug)."""
    seen = set()
    e: Optional[BaseException] = exc
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, Diverged):
            return None
        if isinstance(e, MemoryError):
            return "out of memory"
        if isinstance(e, OSError) and e.errno in ENV_ERRNOS:
            return os.strerror(e.errno)
        text = str(e).lower()
        if isinstance(e, RuntimeError) and ("file write failed" in text or "failed writing" in text):
            return "a file write failed (disk full?)"
        for w in ENV_WORDS:
            if w in text:
                return w
        e = e.__cause__ or e.__context__
    return None


def _one_line(text: str, n: int = 300) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= n else text[: n - 1] + "…"


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
        return bool(attrs.get("error")) and not attrs.get("env_error")
    return True


def retriable(trial) -> bool:
    """A failed trial to run again: interrupted, crashed, or stopped by its environment (not one that
    failed for a reason of its own, such as a diverged run)."""
    from optuna.trial import TrialState

    attrs = trial.user_attrs or {}
    return (
        trial.state == TrialState.FAIL
        and not attrs.get("surplus")
        and (not attrs.get("error") or bool(attrs.get("env_error")))
    )


def failure_reason(trial) -> str:
    attrs = trial.user_attrs or {}
    if attrs.get("env_error"):
        return str(attrs["env_error"])
    return "interrupted" if attrs.get("interrupted") else "crashed or killed"


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
    return {
        (t.user_attrs or {}).get("retry_of"): t.number
        for t in trials
        if (t.user_attrs or {}).get("retry_of") is not None
    }


def check_name(name: str, *, option: str = "--name", extra: str = "") -> str:
    """A folder name of letters, digits, '.', '_', '-' (and ``extra``), not '.' or '..' (that would be
    the parent folder itself, holding every other search)."""
    allowed = "".join(sorted(set("._-" + extra)))
    if not isinstance(name, str) or not re.fullmatch(f"[A-Za-z0-9{re.escape(allowed)}]+", name) or set(name) <= {"."}:
        shown = ", ".join(f"'{c}'" for c in allowed)
        raise UserError(
            f"{option} {name!r}: use letters, digits and {shown} only, with at least one letter or digit "
            "(the name of a new folder)"
        )
    return name


def spec_hash(obj: Any) -> str:
    """A short stable hash of ``obj`` (as sorted JSON): the config part of a plan's identity."""
    return hashlib.sha1(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:12]


#: the file of a plan folder that names the plan it holds
IDENTITY = ".identity.json"


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
    #: set by an objective whose trial the environment stopped: the worker raises it after the trial
    stopped: Optional[UserError] = None

    # ---------------------------------------------------------------- the study
    #: the command-line option that names the folder holding the plan folders (messages)
    dir_option = "--dir"

    def configure(self, study, *, worker_seed: int) -> None:
        """Set the study's sampler and pruner (tickets fix every value: a seeded random sampler)."""
        import optuna

        study.sampler = optuna.samplers.RandomSampler(seed=worker_seed)

    def open(self):
        """``(study, creator)``: the Optuna study, created here (``creator``) or joined.

        Before anything is written: the folder must be a writable folder, and one that holds
        another plan (another name or storage, or other settings) is refused with one line."""
        import optuna
        import sqlalchemy.exc

        optuna.logging.set_verbosity(optuna.logging.ERROR)  # failures are reported by us, in one line
        self._prepare_folder()
        self._check_identity()
        try:
            # one process of this machine at a time creates the tables and the study (workers on other
            # machines: open_storage retries a schema creation that raced)
            with file_lock(self.folder / ".plan.lock"):
                storage = open_storage(
                    self.storage_url, heartbeat=self.heartbeat, stale_trial_callback=retry_stale_trial
                )
                try:
                    study = optuna.create_study(
                        study_name=self.name, storage=storage, direction=self.direction, load_if_exists=False
                    )
                    creator = True
                    study.set_user_attr(self.kind, self.spec)
                except optuna.exceptions.DuplicatedStudyError:
                    study = optuna.load_study(study_name=self.name, storage=storage)
                    creator = False
        except (sqlalchemy.exc.SQLAlchemyError, optuna.exceptions.StorageInternalError) as e:
            raise self.storage_error(e) from None
        except OSError as e:
            raise self.folder_error(e) from None
        if not creator:
            self._check_same(study)
        self._write_identity()
        self.configure(study, worker_seed=self.seed if creator else self.seed + os.getpid())
        return study, creator

    # ---------------------------------------------------------------- the folder
    def folder_error(self, e: OSError, *, doing: str = "write to") -> UserError:
        """One line for an OSError on the plan folder: what, where, and the fix."""
        where = getattr(e, "filename", None) or self.folder
        reason = e.strerror or str(e)
        if e.errno in (errno.ENOSPC, errno.EDQUOT):
            err = UserError(
                f"cannot {doing} '{where}': no space left on the device; free some space and run the same "
                f"command again (what was written is kept, and failed {self.kind} runs are retried)"
            )
            err.exit_code = 1
            return err
        return UserError(
            f"cannot {doing} {self.kind} folder '{self.folder}' ({reason}: '{where}'); give a writable "
            f"{self.dir_option} or fix the folder's permissions"
        )

    def storage_error(self, e: BaseException) -> UserError:
        """One line for a database error (SQLite on a full disk or a read-only folder)."""
        cause = e.__cause__ or e  # optuna wraps SQLAlchemy's errors (StorageInternalError)
        text = _one_line(str(getattr(cause, "orig", None) or cause), 160)
        full = any(w in text.lower() for w in ("full", "no space"))
        err = UserError(
            f"{self.kind} '{self.name}': the study storage {mask_url(self.storage_url)} failed ({text}); "
            + (
                "free some space and run the same command again (finished runs are kept)"
                if full
                else f"check that its folder is writable (or give a writable {self.dir_option}) and run the same command again"
            )
        )
        if full:
            err.exit_code = 1
        return err

    def _prepare_folder(self) -> None:
        """Create the plan folder; a file where a folder should be, or a read-only place, is one line."""
        folder = Path(self.folder)
        for p in [folder, *folder.parents]:
            if p.exists() and not p.is_dir():
                what = (
                    "the " + self.kind + " folder"
                    if p == folder
                    else self.dir_option
                    if p == folder.parent
                    else "a folder above it"
                )
                raise UserError(
                    f"'{p}' is a file, but {what} should be a folder there; move the file away, or give "
                    f"another {self.dir_option}" + (" or --name" if p == folder else "")
                )
            if p.is_dir():
                break
        try:
            folder.mkdir(parents=True, exist_ok=True)
            with open(folder / ".plan.lock", "a"):
                pass
        except OSError as e:
            raise self.folder_error(e, doing="create" if not folder.is_dir() else "write to") from None

    def identity(self) -> Dict[str, Any]:
        """What ``.identity.json`` records (the default storage as ``study.db``: the folder may move)."""
        storage = "study.db" if self.storage_url == default_url(self.folder) else mask_url(self.storage_url)
        return {"kind": self.kind, "name": self.name, "storage": storage, "spec": self.spec}

    def _check_identity(self) -> None:
        """Refuse to work in a folder that holds another plan: the runs and outputs of two would mix."""
        path = self.folder / IDENTITY
        saved = None
        if path.is_file():
            with contextlib.suppress(OSError, ValueError):
                saved = json.loads(path.read_text())
        if isinstance(saved, dict):
            mine = self.identity()
            other = [k for k in ("kind", "name", "storage") if saved.get(k) != mine[k]]
            if other:
                raise UserError(
                    f"folder '{self.folder}' holds {saved.get('kind')} '{saved.get('name')}' (storage "
                    f"{saved.get('storage')}); {self.kind} '{self.name}' would overwrite its runs: give "
                    f"--name a new folder, or repeat that {saved.get('kind')}'s command to continue it"
                )
            self._refuse_difference(saved.get("spec") or {})
            return
        if (self.folder / "study.db").is_file() and self.storage_url == default_url(self.folder):
            names = self._study_names()
            others = [n for n in names if n != self.name]
            if others:
                raise UserError(
                    f"folder '{self.folder}' holds {self.kind} '{others[0]}' (its study.db); {self.kind} "
                    f"'{self.name}' would overwrite its runs: give --name a new folder, or --name "
                    f"{others[0]} to continue that one"
                )

    def _study_names(self) -> List[str]:
        import optuna
        import sqlalchemy.exc

        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                return list(optuna.get_all_study_names(storage=self.storage_url))
        except (sqlalchemy.exc.SQLAlchemyError, OSError, ValueError, RuntimeError):
            return []

    def _write_identity(self) -> None:
        from normgan.report.html import write_atomic

        path = self.folder / IDENTITY
        if path.is_file():
            return
        try:
            write_atomic(path, (json.dumps(self.identity(), indent=2, sort_keys=True, default=str) + "\n").encode())
        except OSError as e:
            raise self.folder_error(e) from None

    def describe_difference(self, key: str) -> str:
        """How a differing :attr:`spec` key is named in the refusal."""
        return key

    def describe_value(self, key: str, value: Any) -> str:
        """How a :attr:`spec` value is shown in the refusal."""
        return _one_line(repr(value), 160)

    def _refuse_difference(self, saved: Dict[str, Any]) -> None:
        diff = [k for k in self.spec if saved.get(k) != self.spec[k]]
        if diff:
            k = diff[0]
            raise UserError(
                f"{self.kind} '{self.name}' in '{self.folder}' exists with other settings "
                f"({self.describe_difference(k)} differ: {self.describe_value(k, saved.get(k))} there, "
                f"{self.describe_value(k, self.spec[k])} here); give the same ones to continue it, or "
                f"--name a new folder for this {self.kind}"
            )

    def _check_same(self, study) -> None:
        deadline = time.monotonic() + 60
        saved = study.user_attrs.get(self.kind)
        while saved is None and time.monotonic() < deadline:  # its creator is writing it
            time.sleep(0.2)
            saved = study.user_attrs.get(self.kind)
        if saved is None:
            return
        self._refuse_difference(saved)

    def _wait_for_plan(self, study) -> None:
        """A worker that joined a study waits until its creator has enqueued the plan (the
        ``planned`` attribute), so that two workers never plan the same tickets."""
        deadline = time.monotonic() + PLAN_WAIT
        while "planned" not in study.user_attrs and time.monotonic() < deadline:
            time.sleep(0.2)

    def plan(self, study) -> int:
        """Enqueue tickets up to the requested number of trials; returns how many were added.

        Failed trials to run again (:func:`retriable`: stopped by the environment, or interrupted
        and not yet enqueued again) get a ticket of their own first (``retry_of``). The creator of
        a study plans it; a later run tops it up (a larger request, or grid points whose ticket was
        lost). Two workers topping up one study at the same instant could both enqueue: the local
        file lock prevents it on one machine (docs/decisions.md)."""
        with file_lock(self.folder / ".plan.lock"):
            trials = study.get_trials(deepcopy=False)
            again = retried_by(trials)
            added = 0
            for t in trials:
                if retriable(t) and t.number not in again:
                    retry(study, t)
                    added += 1
            if added:
                trials = study.get_trials(deepcopy=False)
            counted = [t for t in trials if counts(t)]
            need = self.requested - len(counted)
            if need <= 0:
                return added
            if self.points is not None:
                covered = {point_key({**(ticket_params(t) or {}), **t.params}) for t in counted}
                points = [p for p in self.points if point_key(p) not in covered][:need]
            else:
                points = [{} for _ in range(need)]
            for p in points:
                study.enqueue_trial(p, user_attrs={"ticket": True}, skip_if_exists=False)
            study.set_user_attr("trials_requested", self.requested)
            return added + len(points)

    def retrying(self, study) -> List[str]:
        """``trial N (reason)`` of each failed trial whose retry ticket waits: what this run retries."""
        from optuna.trial import TrialState

        trials = study.get_trials(deepcopy=False)
        by_number = {t.number: t for t in trials}
        out = []
        for t in trials:
            of = (t.user_attrs or {}).get("retry_of")
            if t.state == TrialState.WAITING and of in by_number:
                out.append(f"{self.describe_trial(by_number[of])} ({_one_line(failure_reason(by_number[of]), 80)})")
        return out

    def describe_trial(self, trial) -> str:
        """How a trial is named in messages (a study names its variant and seed)."""
        return f"trial {trial.number}"

    def say(self, text: str) -> None:
        """One line on stderr (above any progress bar)."""
        try:
            from tqdm.auto import tqdm

            tqdm.write(text, file=sys.stderr)
        except Exception:  # noqa: BLE001
            print(text, file=sys.stderr)

    def plan_once(self, study, *, creator: bool) -> None:
        import optuna

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            optuna.storages.fail_stale_trials(study)  # a dead worker's trial: failed and queued again, said below
        if not creator:
            self._wait_for_plan(study)
        self.plan(study)
        if creator or "planned" not in study.user_attrs:
            study.set_user_attr("planned", True)
        again = self.retrying(study)
        if again:
            self.say(f"{self.kind} '{self.name}': retrying {len(again)} failed run(s): " + ", ".join(again))

    # ---------------------------------------------------------------- the worker loop
    def work(
        self,
        study,
        objective: Callable,
        *,
        bar=None,
        guard: Optional[ContextManager] = None,
        after_trial: Optional[Callable[[], None]] = None,
    ) -> None:
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
                    self.stopped = None
                    try:
                        study.optimize(objective, n_trials=1, catch=(TrialFailed,), gc_after_trial=True)
                    except Exception:
                        # a full disk may fail the storage too (SQLite beside the runs): the trial stays
                        # RUNNING until the heartbeat of the next run fails it and queues it again
                        if self.stopped is not None:
                            raise self.stopped from None
                        raise
                    if after_trial is not None:
                        after_trial()
                    if self.stopped is not None:  # the environment failed a trial: the next ones would fail too
                        raise self.stopped
                    continue
                if any(t.state == TrialState.RUNNING for t in trials):
                    time.sleep(min(POLL_SECONDS, self.heartbeat))
                    continue
                break


def environment_stop(worker: TicketWorker, trial, exc: BaseException, reason: str, *, what: str) -> EnvironmentFailed:
    """Record a trial stopped by its environment (``env_error``) and set the worker's one-line stop:
    the trial failed, nothing more runs now, and the same command retries it."""
    message = _one_line(str(exc))
    err = UserError(
        f"{worker.kind} '{worker.name}': {what} failed: {message}; the {worker.kind} stopped (finished runs are "
        f"kept in {worker.folder}); fix it and run the same command again: it retries this run"
    )
    full = any(w in (reason + message).lower() for w in ("space", "full", "write failed"))
    err.exit_code = 1 if full else 2
    worker.stopped = err
    with contextlib.suppress(Exception):  # the storage may be on the full disk too
        trial.set_user_attr("error", message)
        trial.set_user_attr("env_error", reason)
    return EnvironmentFailed(message)
