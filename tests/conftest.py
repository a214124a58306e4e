"""Fixtures: a fresh, migrated database per test on SQLite or PostgreSQL (TEST_DB selects).

TEST_DB=sqlite (default) or TEST_DB=postgresql. PostgreSQL is found at TEST_POSTGRES_URL
(default postgresql+psycopg://postgres@127.0.0.1:5432/test); when it is not reachable the
PostgreSQL tests skip with one line, unless REQUIRE_POSTGRES=1 (CI), where they fail.
Each test starts from a freshly migrated, empty database, so tests never share state or depend
on order: on SQLite a file copy of a migrated template; on PostgreSQL each worker migrates one
database and empties it before every test (every row deleted with triggers off, sequences and the
change counter reset), which costs 6 ms where CREATE DATABASE … TEMPLATE and DROP cost 200 ms.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy.engine import make_url

from server import create_app, db
from tests import factories

TEST_DB = os.environ.get("TEST_DB", "sqlite")
POSTGRES_URL = os.environ.get("TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
REQUIRE_POSTGRES = os.environ.get("REQUIRE_POSTGRES") == "1"


def pytest_report_header() -> str:
    return f"database: {TEST_DB}" + (
        f" ({make_url(POSTGRES_URL).render_as_string()})" if TEST_DB == "postgresql" else ""
    )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # Tests that touch a database carry the `db` mark, so the PostgreSQL pass can run only them.
    for item in items:
        if {"db_url", "app"} & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.db)


def _conninfo(database: str | None = None) -> str:
    """A libpq address: the server's own database, or `database` on it."""
    url = make_url(POSTGRES_URL).set(drivername="postgresql")
    return (url.set(database=database) if database else url).render_as_string(hide_password=False)


def _pg_url(name: str) -> str:
    return make_url(POSTGRES_URL).set(database=name).render_as_string(hide_password=False)


@pytest.fixture(scope="session")
def _template(tmp_path_factory: pytest.TempPathFactory, worker_id: str) -> Iterator[str]:
    """A migrated database: a file to copy per test (SQLite), or the worker's database (PostgreSQL)."""
    if TEST_DB == "sqlite":
        path = tmp_path_factory.mktemp("template") / "template.db"
        db.upgrade(f"sqlite:///{path}")
        yield str(path)
        return
    if TEST_DB != "postgresql":
        raise pytest.UsageError(f"TEST_DB must be sqlite or postgresql, not {TEST_DB!r}")
    try:
        admin = psycopg.connect(_conninfo(), autocommit=True, connect_timeout=3)
    except psycopg.OperationalError as e:
        reason = (
            f"PostgreSQL not reachable at {make_url(POSTGRES_URL).render_as_string()}: {str(e).strip().splitlines()[0]}"
        )
        if REQUIRE_POSTGRES:
            pytest.fail(reason + " (REQUIRE_POSTGRES=1)", pytrace=False)
        pytest.skip(reason)
    name = f"fvt_{os.getpid()}_{worker_id}"
    admin.execute(f'DROP DATABASE IF EXISTS "{name}"')
    admin.execute(f'CREATE DATABASE "{name}"')
    db.upgrade(_pg_url(name))
    yield name
    admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    admin.close()


def _empty_postgres(name: str) -> None:
    """Back to the state the migrations leave: no rows but the change counter's, sequences at 1.

    Connections a test left behind (a killed server's, a scheduler's advisory lock) are ended first.
    """
    with psycopg.connect(_conninfo(name), autocommit=True) as conn:
        conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        tables = [
            row[0]
            for row in conn.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public' AND tablename <> 'alembic_version'"
            )
        ]
        sequences = [
            row[0] for row in conn.execute("SELECT sequencename FROM pg_sequences WHERE schemaname = 'public'")
        ]
        with conn.transaction():
            # Replica mode skips triggers: the audit log's append-only guard and the foreign keys.
            conn.execute("SET LOCAL session_replication_role = replica")
            conn.execute("; ".join(f'DELETE FROM "{table}"' for table in tables))
            conn.execute("INSERT INTO sync_counter (id, value) VALUES (1, 0)")
            for sequence in sequences:
                conn.execute(f'ALTER SEQUENCE "{sequence}" RESTART')


@pytest.fixture(scope="session")
def _worker_sqlite(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The SQLite file every test of this worker gets, a fresh copy of the template each time."""
    return tmp_path_factory.mktemp("work") / "test.db"


@pytest.fixture(scope="session", autouse=True)
def _one_engine_per_database() -> Iterator[None]:
    """Apps built on the same URL share one SQLAlchemy engine (disposed after each test).

    Each test still gets a fresh database at the same URL, but the engine's compiled-statement
    cache lives on: building every statement's SQL again for each test's new engine was a third
    of the suite's time.
    """
    engines: dict[str, Any] = {}
    make_engine = db.make_engine

    def shared(url: str, **kwargs: Any) -> Any:
        if kwargs:
            return make_engine(url, **kwargs)
        if url not in engines:
            engines[url] = make_engine(url)
        return engines[url]

    db.make_engine = shared  # type: ignore[assignment]
    yield
    db.make_engine = make_engine  # type: ignore[assignment]
    for engine in engines.values():
        engine.dispose()


@pytest.fixture
def db_url(_template: str, request: pytest.FixtureRequest) -> Iterator[str]:
    """The URL of a fresh, migrated database for this test."""
    if TEST_DB == "sqlite":
        path: Path = request.getfixturevalue("_worker_sqlite")
        url = f"sqlite:///{path}"
        _dispose(url)
        for leftover in (path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
            leftover.unlink(missing_ok=True)
        shutil.copyfile(_template, path)
        yield url
        _dispose(url)
        return
    _empty_postgres(_template)
    url = _pg_url(_template)
    yield url
    _dispose(url)


def _dispose(url: str) -> None:
    """Close the shared engine's pooled connections (the engine itself stays usable)."""
    engine = db.make_engine(url)
    engine.dispose()


@pytest.fixture
def app(db_url: str, tmp_path: Any) -> Iterator[Flask]:
    application = create_app(
        {
            "DATABASE_URL": db_url,
            "TESTING": True,
            "LOGIN_RATE_LIMIT": "1000 per minute",
            "SECRET_KEY": "test-secret",
        }
    )
    application.instance_path = str(tmp_path / "instance")
    yield application
    application.extensions["db_engine"].dispose()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def world(app: Flask) -> factories.World:
    """A small bureau: departments, one user per role, targets, a campaign."""
    with app.app_context(), db.session_scope() as session:
        return factories.world(session)


@pytest.fixture(scope="session", autouse=True)
def _fast_password_hashing() -> None:
    factories.use_fast_password_hashing()
