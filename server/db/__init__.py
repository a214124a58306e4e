"""Engine, sessions and migrations of the server store (SQLite by default, PostgreSQL to scale out)."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config as AlembicConfig
from flask import Flask, current_app, g, has_request_context, request
from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

MIGRATIONS = Path(__file__).parent / "migrations"
MMAP_BYTES = 256 * 1024 * 1024  # address space, not memory: the OS pages it in and out


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # WAL lets readers run beside the writer; synchronous=FULL makes an acknowledged commit
    # survive power loss (NORMAL would only survive a process crash in WAL mode).
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=10000")
    # Reads through a memory map: when another worker process has written, this one's page cache
    # is dropped and read again, and a map makes that much cheaper than read() calls (a push
    # costs a sixth less CPU with two workers taking turns; docs/benchmarks.md, issue 3). Writes
    # still go through the WAL as before, so durability is unchanged.
    cursor.execute(f"PRAGMA mmap_size={MMAP_BYTES}")
    cursor.close()


def _sqlite_begin(conn: Any) -> None:
    # Writers take the write lock when their transaction starts (BEGIN IMMEDIATE), so two
    # writers queue on busy_timeout instead of one failing with SQLITE_BUSY when it upgrades
    # a read snapshot to a write. Readers stay DEFERRED and never wait for writers (WAL).
    mode = conn.get_execution_options().get("sqlite_begin", "DEFERRED")
    conn.exec_driver_sql(f"BEGIN {mode}")


def make_engine(url: str, **kwargs: Any) -> Engine:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": 10, "isolation_level": None}, **kwargs)
        event.listen(engine, "connect", _sqlite_pragmas)
        event.listen(engine, "begin", _sqlite_begin)
        return engine
    kwargs.setdefault("pool_pre_ping", True)
    kwargs.setdefault("pool_size", 5)
    kwargs.setdefault("max_overflow", 10)
    return create_engine(url, **kwargs)


def init_app(app: Flask) -> None:
    engine = make_engine(app.config["DATABASE_URL"])
    app.extensions["db_engine"] = engine
    app.extensions["db_sessionmaker"] = sessionmaker(engine, expire_on_commit=False)
    app.extensions["db_writer_sessionmaker"] = sessionmaker(
        engine.execution_options(sqlite_begin="IMMEDIATE"), expire_on_commit=False
    )
    app.teardown_appcontext(_close_session)


def engine() -> Engine:
    return current_app.extensions["db_engine"]


def request_reads() -> bool:
    """Whether this is a request that only reads (GET, HEAD, OPTIONS): its session is a reader."""
    return has_request_context() and request.method in ("GET", "HEAD", "OPTIONS")


def session() -> Session:
    """The session of the current request or app context, opened on first use.

    Requests that may write (anything but GET/HEAD/OPTIONS) get a writer session.
    """
    if "db_session" not in g:
        key = "db_sessionmaker" if request_reads() else "db_writer_sessionmaker"
        g.db_session = current_app.extensions[key]()
    return g.db_session


def _close_session(_exc: BaseException | None) -> None:
    s = g.pop("db_session", None)
    if s is not None:
        s.close()


def read_next(session: Session) -> None:
    """Begin `session`'s next transaction as a reader. A writer session's transactions otherwise
    begin with SQLite's write lock (BEGIN IMMEDIATE); what only reads (screening a note before it
    is stored, loading the answer after the commit) then leaves the lock to the other workers.
    No effect on PostgreSQL, where reading never locks out writers."""
    if session.in_transaction():
        raise RuntimeError("read_next() needs a session between transactions")
    session.connection(execution_options={"sqlite_begin": "DEFERRED"})


@contextlib.contextmanager
def read_session(app: Flask | None = None) -> Iterator[Session]:
    """A read-only transaction of its own (one snapshot on SQLite; never takes the write lock)."""
    maker = (app or current_app).extensions["db_sessionmaker"]
    with maker() as s:
        try:
            yield s
        finally:
            s.rollback()


@contextlib.contextmanager
def session_scope(app: Flask | None = None) -> Iterator[Session]:
    """A session outside requests (jobs, CLI): commits on success, rolls back on error."""
    maker = (app or current_app).extensions["db_writer_sessionmaker"]
    with maker() as s, s.begin():
        yield s


def alembic_config(url: str) -> AlembicConfig:
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def upgrade(url: str, revision: str = "head") -> None:
    """Bring the database at `url` to `revision` with Alembic (the only way the schema is made)."""
    command.upgrade(alembic_config(url), revision)


def ping(eng: Engine) -> bool:
    try:
        with eng.connect() as conn:
            conn.execute(text("SELECT 1"))
        return True
    except Exception:  # noqa: BLE001 - any failure means "not reachable" for a health check
        return False


def is_sqlite(eng: Engine) -> bool:
    return eng.dialect.name == "sqlite"


def default_sqlite_url(instance_path: str) -> str:
    return "sqlite:///" + os.path.join(instance_path, "fieldvisit.db")
