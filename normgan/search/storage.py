"""Where a search's Optuna study lives: a SQLite file in the search folder by default, or any
database URL Optuna's RDB storage accepts (PostgreSQL, MySQL) for workers on several machines.

SQLite rather than Optuna's journal file: only the RDB storage has heartbeats, which mark a
crashed worker's trial as failed so that the study goes on (docs/decisions.md).
"""

from __future__ import annotations

import re
import time
import warnings
from pathlib import Path
from typing import Callable, Optional

from normgan.errors import UserError

#: seconds a SQLite writer waits for another process's lock before giving up
SQLITE_BUSY_TIMEOUT = 120
#: seconds to wait for a database server before "unreachable"
CONNECT_TIMEOUT = 10


def default_url(folder: Path) -> str:
    return f"sqlite:///{Path(folder).resolve() / 'study.db'}"


def mask_url(url: str) -> str:
    """The URL with its password replaced by ``***`` (for logs, reports and the CSV)."""
    return re.sub(r"(://[^:/@]+:)[^@]*@", r"\1***@", url)


def _engine_kwargs(url: str) -> dict:
    if url.startswith("sqlite"):
        return {"connect_args": {"timeout": SQLITE_BUSY_TIMEOUT}}
    if url.startswith("postgresql"):
        return {"connect_args": {"connect_timeout": CONNECT_TIMEOUT}, "pool_pre_ping": True}
    if url.startswith("mysql"):
        return {"connect_args": {"connect_timeout": CONNECT_TIMEOUT}, "pool_pre_ping": True}
    return {}


def _driver_url(url: str) -> str:
    """``postgresql://`` with psycopg 3 when psycopg2 (SQLAlchemy's default driver) is missing."""
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        try:
            import psycopg2  # noqa: F401
        except ImportError:
            return "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


def open_storage(url: str, *, heartbeat: int, stale_trial_callback: Optional[Callable] = None):
    """An Optuna RDB storage on ``url`` with heartbeats every ``heartbeat`` seconds (a trial whose
    worker stopped beating for 2 × ``heartbeat`` is marked failed and ``stale_trial_callback``
    runs once for it). One-line :class:`UserError` when the URL is malformed or unreachable."""
    import optuna
    import sqlalchemy.exc

    if not isinstance(url, str) or "://" not in url:
        raise UserError(
            f"--storage {url!r}: not a database URL; use e.g. sqlite:///search.db or "
            "postgresql://user:password@host:5432/dbname"
        )
    shown = mask_url(url)
    try:
        for attempt in range(3):
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                    return optuna.storages.RDBStorage(
                        _driver_url(url),
                        engine_kwargs=_engine_kwargs(url),
                        heartbeat_interval=heartbeat,
                        grace_period=2 * heartbeat,
                        heartbeat_stale_trial_callback=stale_trial_callback,
                    )
            except sqlalchemy.exc.SQLAlchemyError as e:  # two workers created the tables at once
                if attempt == 2 or "already exists" not in str(e):
                    raise
                time.sleep(0.5 + attempt)
    except (ImportError, ModuleNotFoundError) as e:
        raise UserError(
            f"--storage {shown}: the database driver is not installed ({e}); "
            "pip install 'psycopg[binary]' for PostgreSQL or a MySQL driver"
        ) from None
    except sqlalchemy.exc.ArgumentError as e:
        raise UserError(
            f"--storage {shown}: malformed database URL ({_first_line(e)}); "
            "use e.g. postgresql://user:password@host:5432/dbname"
        ) from None
    except (sqlalchemy.exc.SQLAlchemyError, OSError) as e:
        if url.startswith("sqlite"):  # a file: its disk or folder is at fault, not a server
            raise sqlite_error(url, e) from None
        raise UserError(
            f"--storage {shown}: cannot connect ({_first_line(e)}); check the host, port, database "
            "name and credentials, and that the server runs"
        ) from None


def sqlite_error(url: str, e: BaseException) -> UserError:
    """One line for a SQLite study file that cannot be written: a full disk (exit 1) or a folder
    that is read-only or missing."""
    text = _first_line(e)
    path = url.split(":///", 1)[-1]
    if "full" in text.lower() or "no space" in text.lower():
        err = UserError(
            f"cannot write the study database '{path}': no space left ({text}); free some space and run "
            "the same command again (what was written is kept)"
        )
        err.exit_code = 1
        return err
    return UserError(
        f"cannot open the study database '{path}' ({text}); make its folder writable, or give a writable "
        "folder (--searches-dir, --studies-dir) or --storage URL"
    )


def _first_line(e: BaseException) -> str:
    text = str(getattr(e, "orig", None) or e).strip()
    return (text.splitlines() or [type(e).__name__])[0][:200]
