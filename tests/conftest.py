"""Fixtures: a fresh, migrated database per test, on SQLite, PostgreSQL or both (TEST_DB selects).

TEST_DB=sqlite (default), TEST_DB=postgresql, or TEST_DB=sqlite,postgresql: every test that uses
a database then runs once on each (its id ends in [sqlite] or [postgresql]), in one session, so
pytest-xdist spreads both halves over its workers. PostgreSQL is found at TEST_POSTGRES_URL
(default postgresql+psycopg://postgres@127.0.0.1:5432/test); when it is not reachable the
PostgreSQL tests skip with one line, unless REQUIRE_POSTGRES=1 (CI), where they fail.
Each test starts from a freshly migrated, empty database, so tests never share state or depend
on order: on SQLite a file copy of a migrated template; on PostgreSQL each worker migrates one
database and empties it before every test (every row deleted with triggers off, sequences and the
change counter reset), which costs 6 ms where CREATE DATABASE … TEMPLATE and DROP cost 200 ms.
Apps built on the same URL share one engine, so compiled statements are cached across tests.
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

DB_KINDS = [kind.strip() for kind in os.environ.get("TEST_DB", "sqlite").split(",") if kind.strip()]
POSTGRES_URL = os.environ.get("TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
REQUIRE_POSTGRES = os.environ.get("REQUIRE_POSTGRES") == "1"


def pytest_configure(config: pytest.Config) -> None:
    unknown = set(DB_KINDS) - {"sqlite", "postgresql"}
    if unknown or not DB_KINDS:
        raise pytest.UsageError(f"TEST_DB is a comma-separated list of sqlite and postgresql, not {unknown or ''}")


def pytest_report_header() -> str:
    where = f" (PostgreSQL at {make_url(POSTGRES_URL).render_as_string()})" if "postgresql" in DB_KINDS else ""
    return f"databases: {', '.join(DB_KINDS)}{where}"


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "db_kind" in metafunc.fixturenames and len(DB_KINDS) > 1:
        metafunc.parametrize("db_kind", DB_KINDS, indirect=True)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # Tests that touch a database carry the `db` mark.
    for item in items:
        if "db_url" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.db)
    # The longest first (the fault tests take a minute or two each), the rest in their order: with
    # pytest-xdist handing out one test at a time (Makefile: --maxschedchunk), they run side by
    # side from the start instead of leaving the last minutes to one worker.
    items.sort(key=lambda item: 0 if "test_sync_faults" in item.nodeid else 1 if item.get_closest_marker("slow") else 2)


@pytest.fixture
def db_kind(request: pytest.FixtureRequest) -> str:
    """The database this test runs on: sqlite or postgresql."""
    return str(getattr(request, "param", DB_KINDS[0]))


def _conninfo(database: str | None = None) -> str:
    """A libpq address: the server's own database, or `database` on it."""
    url = make_url(POSTGRES_URL).set(drivername="postgresql")
    return (url.set(database=database) if database else url).render_as_string(hide_password=False)


def _pg_url(name: str) -> str:
    return make_url(POSTGRES_URL).set(database=name).render_as_string(hide_password=False)


class _Stores:
    """This worker's databases, made on first use: a migrated SQLite template and the file each
    test gets a copy of; a migrated PostgreSQL database emptied before each test."""

    def __init__(self, tmp: pytest.TempPathFactory, worker_id: str) -> None:
        self._tmp = tmp
        self._worker_id = worker_id
        self._sqlite: tuple[Path, Path] | None = None
        self._postgres: str | None = None
        self._postgres_error: str | None = None
        self.postgres_emptying = ""

    def sqlite(self) -> tuple[Path, Path]:
        if self._sqlite is None:
            template = self._tmp.mktemp("template") / "template.db"
            db.upgrade(f"sqlite:///{template}")
            self._sqlite = template, self._tmp.mktemp("work") / "test.db"
        return self._sqlite

    def postgres(self) -> str:
        if self._postgres_error is None and self._postgres is None:
            try:
                with psycopg.connect(_conninfo(), autocommit=True, connect_timeout=3) as admin:
                    name = f"fvt_{os.getpid()}_{self._worker_id}"
                    admin.execute(f'DROP DATABASE IF EXISTS "{name}"')
                    admin.execute(f'CREATE DATABASE "{name}"')
                db.upgrade(_pg_url(name))
                self._postgres, self.postgres_emptying = name, _emptying_sql(name)
            except psycopg.OperationalError as e:
                where = make_url(POSTGRES_URL).render_as_string()
                self._postgres_error = f"PostgreSQL not reachable at {where}: {str(e).strip().splitlines()[0]}"
        if self._postgres_error is not None:
            if REQUIRE_POSTGRES:
                pytest.fail(self._postgres_error + " (REQUIRE_POSTGRES=1)", pytrace=False)
            pytest.skip(self._postgres_error)
        assert self._postgres is not None
        return self._postgres

    def close(self) -> None:
        if self._postgres is not None:
            _dispose(_pg_url(self._postgres))
            with psycopg.connect(_conninfo(), autocommit=True) as admin:
                admin.execute(f'DROP DATABASE IF EXISTS "{self._postgres}" WITH (FORCE)')


@pytest.fixture(scope="session")
def _stores(tmp_path_factory: pytest.TempPathFactory, worker_id: str) -> Iterator[_Stores]:
    stores = _Stores(tmp_path_factory, worker_id)
    yield stores
    stores.close()


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


def _emptying_sql(name: str) -> str:
    """The statements that take the migrated database back to empty (its tables read once)."""
    with psycopg.connect(_conninfo(name), autocommit=True) as conn:
        tables = conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public' AND tablename <> 'alembic_version'"
        ).fetchall()
        sequences = conn.execute("SELECT sequencename FROM pg_sequences WHERE schemaname = 'public'").fetchall()
    return "; ".join(
        # Replica mode skips triggers: the audit log's append-only guard and the foreign keys.
        ["SET LOCAL session_replication_role = replica"]
        + [f'DELETE FROM "{table}"' for (table,) in tables]
        + ["INSERT INTO sync_counter (id, value) VALUES (1, 0)"]
        + [f'ALTER SEQUENCE "{sequence}" RESTART' for (sequence,) in sequences]
    )


def _empty_postgres(name: str, emptying: str) -> None:
    """Back to the state the migrations leave: no rows but the change counter's, sequences at 1.

    Connections a test left behind (a killed server's, a scheduler's advisory lock) are ended first.
    """
    with psycopg.connect(_conninfo(name), autocommit=True) as conn:
        conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        with conn.transaction():
            conn.execute(emptying)  # type: ignore[arg-type]


@pytest.fixture
def db_url(db_kind: str, _stores: _Stores) -> Iterator[str]:
    """The URL of a fresh, migrated database for this test."""
    if db_kind == "sqlite":
        template, path = _stores.sqlite()
        url = f"sqlite:///{path}"
        _dispose(url)
        for leftover in (path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
            leftover.unlink(missing_ok=True)
        shutil.copyfile(template, path)
    else:
        name = _stores.postgres()
        _empty_postgres(name, _stores.postgres_emptying)
        url = _pg_url(name)
    yield url
    _dispose(url)


def _dispose(url: str) -> None:
    """Close the shared engine's pooled connections (the engine itself stays usable)."""
    db.make_engine(url).dispose()


@pytest.fixture
def app(db_url: str, tmp_path: Any) -> Flask:
    application = create_app(
        {
            "DATABASE_URL": db_url,
            "TESTING": True,
            "LOGIN_RATE_LIMIT": "1000 per minute",
            "SECRET_KEY": "test-secret",
        }
    )
    application.instance_path = str(tmp_path / "instance")
    return application  # its engine is disposed with the database (db_url)


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
