"""A throw-away PostgreSQL server for tests.

``postgres_server()`` runs ``initdb`` into a fresh temporary folder, starts ``postgres`` on
127.0.0.1 on a free TCP port (unix socket in the same folder, ``fsync=off``), creates a
database and yields its SQLAlchemy URL (``postgresql+psycopg://postgres@127.0.0.1:PORT/DB``).
On exit -- also when the body raises -- the server is stopped and the folder removed.

PostgreSQL refuses to run as root, so when the tests run as root the server binaries run as
the unprivileged ``postgres`` system user (``runuser``, else ``setpriv``, else ``su``) and the
temporary folder is handed to that user.

It never skips: without PostgreSQL it fails and says that ``.ci/run`` installs it.

Use from a test module in tests/ (tests/ is not a package; pytest puts it on sys.path)::

    from pg import postgres_server, postgres_url  # noqa: F401  (postgres_url is a fixture)
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import re
import shlex
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from typing import Iterator

import pytest

__all__ = ["PgURL", "PostgresUnavailable", "find_bindir", "postgres_server", "postgres_url"]

INSTALL_HINT = (
    "PostgreSQL server binaries (initdb, pg_ctl, postgres) were not found. The CI script .ci/run "
    "installs them (Debian: apt-get install postgresql); locally install the distribution's "
    "postgresql package or set PG_BINDIR to the folder holding initdb/pg_ctl."
)
START_TIMEOUT = 60  # seconds for pg_ctl -w start
STOP_TIMEOUT = 20  # seconds for pg_ctl -w stop
CMD_TIMEOUT = 120  # seconds for initdb / createdb
RUN_AS = "postgres"  # the unprivileged user the server runs as when we are root


class PostgresUnavailable(RuntimeError):
    """PostgreSQL is missing or could not be started."""


class PgURL(str):
    """The SQLAlchemy URL (a plain ``str``) plus facts about the server behind it."""

    port: int
    pid: int  # the postmaster's process id
    data_dir: str
    base_dir: str
    bindir: str
    dbname: str


# ---------------------------------------------------------------------------------- helpers
def _version_key(path: str) -> tuple:
    m = re.search(r"/postgresql/([0-9.]+)/bin", path)
    return tuple(int(p) for p in m.group(1).split(".") if p) if m else ()


def _has_server(bindir: str | None) -> bool:
    return bool(bindir) and all(
        os.access(os.path.join(bindir, exe), os.X_OK) for exe in ("initdb", "pg_ctl", "postgres")
    )


def find_bindir() -> str:
    """The folder holding initdb/pg_ctl/postgres: $PG_BINDIR, pg_config --bindir, the newest
    /usr/lib/postgresql/*/bin, then PATH. Raises PostgresUnavailable with an install hint."""
    candidates: list[str] = []
    if os.environ.get("PG_BINDIR"):
        candidates.append(os.environ["PG_BINDIR"])
    pg_config = shutil.which("pg_config")
    if pg_config:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, timeout=10)
            if out.returncode == 0 and out.stdout.strip():
                candidates.append(out.stdout.strip())
    candidates += sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=_version_key, reverse=True)
    candidates += sorted(glob.glob("/usr/pgsql-*/bin"), reverse=True)  # RPM layout
    initdb = shutil.which("initdb")
    if initdb:
        candidates.append(os.path.dirname(os.path.realpath(initdb)))
    for c in candidates:
        if _has_server(c):
            return c
    raise PostgresUnavailable(INSTALL_HINT + f" (looked in: {', '.join(candidates) or 'nothing found'})")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _port_open(port: int, timeout: float = 0.5) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        return s.connect_ex(("127.0.0.1", port)) == 0


def _clean_env() -> dict:
    """Our environment minus PG* variables (PGDATA, PGPORT, ... would redirect the tools) and with a
    C locale, so initdb does not depend on which locales the machine has generated."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env.update(LC_ALL="C", LANG="C")
    env.pop("LANGUAGE", None)
    return env


def _as_user_prefix(user: str | None) -> list[str]:
    """The command prefix that runs a program as ``user`` (empty when we are not root)."""
    if user is None:
        return []
    if shutil.which("runuser"):
        return ["runuser", "-u", user, "--"]
    if shutil.which("setpriv"):
        return ["setpriv", f"--reuid={user}", f"--regid={user}", "--init-groups", "--"]
    if shutil.which("su"):
        return ["SU"]  # marker: needs a shell command line, see _run
    raise PostgresUnavailable(
        f"running as root, but none of runuser/setpriv/su is available to run PostgreSQL as {user!r}"
    )


def _run(cmd: list[str], user: str | None, cwd: str, timeout: float, check: bool = True) -> subprocess.CompletedProcess:
    prefix = _as_user_prefix(user)
    if prefix == ["SU"]:
        full = ["su", "-s", "/bin/sh", user, "-c", shlex.join(cmd)]
    else:
        full = prefix + cmd
    try:
        res = subprocess.run(
            full,
            cwd=cwd,
            env=_clean_env(),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired as e:
        raise PostgresUnavailable(f"timed out after {timeout}s: {shlex.join(full)}") from e
    if check and res.returncode != 0:
        raise PostgresUnavailable(
            f"command failed (exit {res.returncode}): {shlex.join(full)}\n{res.stdout}{res.stderr}"
        )
    return res


def _tail(path: str, n: int = 40) -> str:
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-n:])
    except OSError as e:
        return f"<no server log: {e}>"


def _read_pid(data_dir: str) -> int | None:
    try:
        with open(os.path.join(data_dir, "postmaster.pid")) as f:
            return int(f.readline().strip())
    except (OSError, ValueError):
        return None


def pid_alive(pid: int | None) -> bool:
    """Whether ``pid`` is a live (not zombie) process."""
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except OSError:
        return True  # no /proc: trust kill(0)


def _make_base_dir(user: str | None) -> str:
    """A fresh temp folder the server user owns, in a location that user can traverse."""
    parents = [None] if user is None else [None, "/tmp", "/var/tmp", "/dev/shm"]
    errors = []
    for parent in parents:
        if parent is not None and not os.path.isdir(parent):
            continue
        base = tempfile.mkdtemp(prefix="normgan-pg-", dir=parent)
        if user is None:
            return base
        pw = pwd.getpwnam(user)
        os.chown(base, pw.pw_uid, pw.pw_gid)
        os.chmod(base, 0o700)
        # can the server user actually reach and write it (every parent must be traversable)?
        probe = _run(["test", "-w", base, "-a", "-x", base], user, cwd="/", timeout=30, check=False)
        if probe.returncode == 0:
            return base
        errors.append(base)
        shutil.rmtree(base, ignore_errors=True)
    raise PostgresUnavailable(f"user {user!r} cannot use a temp folder in any of: {', '.join(errors)}")


# ------------------------------------------------------------------------------ public API
@contextlib.contextmanager
def postgres_server(dbname: str = "normgan_test", *, settings: dict | None = None) -> Iterator[PgURL]:
    """Start a private PostgreSQL server; yield the SQLAlchemy URL of database ``dbname`` on it.

    ``settings`` adds/overrides server settings (``-c name=value``). The yielded value is a
    :class:`PgURL` (a ``str``) that also carries ``port``, ``pid``, ``data_dir``.
    """
    bindir = find_bindir()
    user = None
    if os.geteuid() == 0:
        user = RUN_AS
        try:
            pwd.getpwnam(user)
        except KeyError:
            raise PostgresUnavailable(
                f"running as root and there is no {user!r} system user to run PostgreSQL as; " + INSTALL_HINT
            ) from None
    exe = {name: os.path.join(bindir, name) for name in ("initdb", "pg_ctl", "createdb")}
    base = _make_base_dir(user)
    data_dir = os.path.join(base, "data")
    sock_dir = os.path.join(base, "sock")
    log = os.path.join(base, "postgres.log")
    started = yielded = False
    try:
        _run(["mkdir", "-m", "700", sock_dir], user, cwd=base, timeout=30)
        _run(
            [
                exe["initdb"],
                "-D",
                data_dir,
                "-A",
                "trust",
                "-U",
                "postgres",
                "-E",
                "UTF8",
                "--no-locale",
                "--no-sync",
                "--no-instructions",
            ],
            user,
            cwd=base,
            timeout=CMD_TIMEOUT,
        )
        opts = {
            "listen_addresses": "127.0.0.1",
            "unix_socket_directories": sock_dir,
            "fsync": "off",
            "synchronous_commit": "off",
            "full_page_writes": "off",
            "max_connections": "100",
            "shared_buffers": "32MB",
        }
        opts.update(settings or {})
        port = None
        for attempt in range(3):  # the free port may be taken between probing and binding
            port = _free_port()
            o = " ".join(f"-c {shlex.quote(f'{k}={v}')}" for k, v in opts.items()) + f" -p {port}"
            res = _run(
                [exe["pg_ctl"], "-D", data_dir, "-l", log, "-w", "-t", str(START_TIMEOUT), "-o", o, "start"],
                user,
                cwd=base,
                timeout=START_TIMEOUT + 30,
                check=False,
            )
            started = True  # from here on, always try to stop it
            if res.returncode == 0:
                break
            logtail = _tail(log)
            _stop(exe["pg_ctl"], data_dir, user, base)
            if attempt < 2 and "already in use" in logtail:
                continue
            raise PostgresUnavailable(
                f"PostgreSQL did not start (pg_ctl exit {res.returncode}):\n{res.stdout}{res.stderr}"
                f"--- tail of {log} ---\n{logtail}"
            )
        # clients may run as anyone: trust auth over TCP
        _run(
            [exe["createdb"], "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", dbname],
            None,
            cwd=base,
            timeout=CMD_TIMEOUT,
        )
        url = PgURL(f"postgresql+psycopg://postgres@127.0.0.1:{port}/{dbname}")
        url.port, url.pid, url.data_dir, url.base_dir = port, _read_pid(data_dir), data_dir, base
        url.bindir, url.dbname = bindir, dbname
        yielded = True
        yield url
    except PostgresUnavailable as e:
        if started and not yielded and "tail of" not in str(e):
            raise PostgresUnavailable(f"{e}\n--- tail of {log} ---\n{_tail(log)}") from None
        raise
    finally:
        try:
            if started:
                _stop(exe["pg_ctl"], data_dir, user, base)
        finally:
            shutil.rmtree(base, ignore_errors=True)


def _stop(pg_ctl: str, data_dir: str, user: str | None, base: str) -> None:
    """Stop the server: pg_ctl fast, then immediate, then SIGKILL the postmaster."""
    pid = _read_pid(data_dir)
    for mode in ("fast", "immediate"):
        if not os.path.exists(os.path.join(data_dir, "postmaster.pid")):
            break
        with contextlib.suppress(PostgresUnavailable):
            _run(
                [pg_ctl, "-D", data_dir, "-m", mode, "-w", "-t", str(STOP_TIMEOUT), "stop"],
                user,
                cwd=base,
                timeout=STOP_TIMEOUT + 15,
                check=False,
            )
    if pid_alive(pid):
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)


@pytest.fixture
def postgres_url() -> Iterator[PgURL]:
    """A fresh private PostgreSQL server per test; the SQLAlchemy URL of an empty database."""
    with postgres_server() as url:
        yield url
