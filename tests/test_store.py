"""The store itself: SQLite settings, migrations, and the append-only audit log."""

from __future__ import annotations

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from server import db
from tests.factories import visit_note


def test_sqlite_is_durable_and_checked(app, db_kind):
    if db_kind != "sqlite":
        pytest.skip("SQLite settings")
    with app.app_context(), db.engine().connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL
        assert conn.exec_driver_sql("PRAGMA mmap_size").scalar() == db.MMAP_BYTES
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() >= 5000


def test_migrations_are_at_head_and_match_the_models(db_url):
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from server.db.models import Base

    engine = db.make_engine(db_url)
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    engine.dispose()
    # The search index's extras (FTS5 table, tsvector column) are made by hand in the migration.
    diff = [d for d in diff if "search_fts" not in str(d) and "tsv" not in str(d)]
    assert diff == []


def test_audit_log_is_append_only(app, client, world):
    client.post("/api/v1/visits", json=visit_note(world), headers=world.headers("cadre"))
    for statement in ("UPDATE audit_log SET action = 'forged'", "DELETE FROM audit_log"):
        with app.app_context(), db.engine().connect() as conn, pytest.raises(DBAPIError, match="append-only"):
            conn.execute(text(statement))
    with app.app_context(), db.engine().connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM audit_log WHERE action = 'create'")).scalar() >= 1


def test_every_change_names_who_when_and_the_device(app, client, world):
    from sqlalchemy import select

    from server.db.models import AuditEntry

    visit = client.post("/api/v1/visits", json=visit_note(world), headers=world.headers("cadre")).json
    with app.app_context():
        entry = db.session().scalars(select(AuditEntry).where(AuditEntry.entity_id == visit["id"])).one()
    assert entry.actor_id == world.users["cadre"]
    assert entry.device_id is not None
    assert entry.at is not None
    assert entry.request_id
    assert entry.changes["summary"] == visit["summary"]
