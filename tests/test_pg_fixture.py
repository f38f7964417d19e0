"""The private PostgreSQL test server (tests/pg.py) works end to end with Optuna's RDBStorage:
two processes optimize one study concurrently, a fresh storage reads all trials back, and the
server is gone once the context ends. Never skipped: without PostgreSQL this fails (.ci/run
installs it)."""

import os
import subprocess
import sys
import textwrap

import optuna
import pytest
from pg import _port_open, pid_alive, postgres_server, postgres_url  # noqa: F401  (fixture)
from sqlalchemy.engine import make_url

STUDY = "pg-fixture-study"
N_PER_WORKER = 3

WORKER = textwrap.dedent(
    """
    import sys
    import optuna
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = optuna.storages.RDBStorage(sys.argv[1], heartbeat_interval=1)
    study = optuna.load_study(study_name=sys.argv[2], storage=storage)
    study.optimize(lambda t: (t.suggest_float("x", -10, 10) - 2) ** 2, n_trials=int(sys.argv[3]))
    """
)


@pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")  # heartbeat_interval
def test_optuna_two_processes_on_private_postgres():
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    with postgres_server() as url:
        assert make_url(url).drivername == "postgresql+psycopg"
        port, pid = url.port, url.pid
        assert _port_open(port) and pid_alive(pid)

        storage = optuna.storages.RDBStorage(url, heartbeat_interval=1)
        optuna.create_study(study_name=STUDY, storage=storage, direction="minimize")

        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        procs = [
            subprocess.Popen(
                [sys.executable, "-c", WORKER, url, STUDY, str(N_PER_WORKER)],
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                env=env,
            )
            for _ in range(2)
        ]
        outs = []
        try:
            for p in procs:
                outs.append(p.communicate(timeout=120)[0])
        finally:
            for p in procs:
                if p.poll() is None:
                    p.kill()
                    p.wait()
        for p, out in zip(procs, outs):
            assert p.returncode == 0, out

        storage.remove_session()
        storage.engine.dispose()
        fresh = optuna.storages.RDBStorage(url)  # a new engine, nothing cached
        study = optuna.load_study(study_name=STUDY, storage=fresh)
        trials = study.get_trials(deepcopy=False)
        assert len(trials) == 2 * N_PER_WORKER
        assert all(t.state == optuna.trial.TrialState.COMPLETE for t in trials)
        assert len({t.number for t in trials}) == 2 * N_PER_WORKER
        assert study.best_value >= 0
        fresh.engine.dispose()

    # the context has ended: the server is stopped and its folder removed
    assert not pid_alive(pid)
    assert not _port_open(port)
    assert not os.path.exists(url.base_dir)


def test_fixture_gives_empty_database(postgres_url):
    storage = optuna.storages.RDBStorage(postgres_url)
    assert storage.get_all_studies() == []
    storage.engine.dispose()


def test_server_stops_when_body_raises():
    class Boom(Exception):
        pass

    try:
        with postgres_server() as url:
            port, pid = url.port, url.pid
            raise Boom
    except Boom:
        pass
    assert not pid_alive(pid)
    assert not _port_open(port)
    assert not os.path.exists(url.base_dir)
