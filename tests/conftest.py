"""Fixtures: a fresh, migrated database per test on SQLite or PostgreSQL (TEST_DB selects).

TEST_DB=sqlite (default) or TEST_DB=postgresql. PostgreSQL is found at TEST_POSTGRES_URL
(default postgresql+psycopg://postgres@127.0.0.1:5432/test); when it is not reachable the
PostgreSQL tests skip with one line, unless REQUIRE_POSTGRES=1 (CI), where they fail.
Each test gets its own database: a copy of a migrated template (a file copy on SQLite,
CREATE DATABASE … TEMPLATE on PostgreSQL), so tests never share state or depend on order.
"""

from __future__ import annotations

import itertools
import os
import shutil
from collections.abc import Iterator
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
_counter = itertools.count()


def pytest_report_header() -> str:
    return f"database: {TEST_DB}" + (
        f" ({make_url(POSTGRES_URL).render_as_string()})" if TEST_DB == "postgresql" else ""
    )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # Tests that touch a database carry the `db` mark, so the PostgreSQL pass can run only them.
    for item in items:
        if {"db_url", "app"} & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.db)


def _admin_conninfo() -> str:
    url = make_url(POSTGRES_URL)
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


def _pg_url(name: str) -> str:
    return make_url(POSTGRES_URL).set(database=name).render_as_string(hide_password=False)


@pytest.fixture(scope="session")
def _template(tmp_path_factory: pytest.TempPathFactory, worker_id: str) -> Iterator[str]:
    """A migrated database to copy per test: a file path (SQLite) or a database name."""
    if TEST_DB == "sqlite":
        path = tmp_path_factory.mktemp("template") / "template.db"
        db.upgrade(f"sqlite:///{path}")
        yield str(path)
        return
    if TEST_DB != "postgresql":
        raise pytest.UsageError(f"TEST_DB must be sqlite or postgresql, not {TEST_DB!r}")
    try:
        admin = psycopg.connect(_admin_conninfo(), autocommit=True, connect_timeout=3)
    except psycopg.OperationalError as e:
        reason = (
            f"PostgreSQL not reachable at {make_url(POSTGRES_URL).render_as_string()}: {str(e).strip().splitlines()[0]}"
        )
        if REQUIRE_POSTGRES:
            pytest.fail(reason + " (REQUIRE_POSTGRES=1)", pytrace=False)
        pytest.skip(reason)
    prefix = f"fvt_{os.getpid()}_{worker_id}"
    template = f"{prefix}_tmpl"
    admin.execute(f'DROP DATABASE IF EXISTS "{template}"')
    admin.execute(f'CREATE DATABASE "{template}"')
    db.upgrade(_pg_url(template))
    yield template
    admin.execute(f'DROP DATABASE IF EXISTS "{template}" WITH (FORCE)')
    admin.close()


@pytest.fixture
def db_url(_template: str, tmp_path: Any) -> Iterator[str]:
    """The URL of a fresh, migrated database for this test."""
    if TEST_DB == "sqlite":
        path = tmp_path / "test.db"
        shutil.copyfile(_template, path)
        yield f"sqlite:///{path}"
        return
    name = f"{_template.removesuffix('_tmpl')}_t{next(_counter)}"
    with psycopg.connect(_admin_conninfo(), autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}" TEMPLATE "{_template}"')
    yield _pg_url(name)
    with psycopg.connect(_admin_conninfo(), autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


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
