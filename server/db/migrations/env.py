"""Alembic environment: the URL comes from server.db.alembic_config, never from a file."""

from __future__ import annotations

from alembic import context

from server.db import make_engine
from server.db.models import Base

config = context.config
target_metadata = Base.metadata


def include_object(obj: object, name: str | None, type_: str, reflected: bool, compare_to: object) -> bool:
    # The FTS5 tables and the tsvector column are made by hand in 0001, not from the models.
    return not (name or "").startswith("search_fts") and name != "tsv"


def run_migrations_online() -> None:
    url = config.get_main_option("sqlalchemy.url")
    assert url, "server.db.alembic_config sets the URL"
    engine = make_engine(url)
    with engine.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            render_as_batch=connection.dialect.name == "sqlite",
            compare_type=True,
            include_object=include_object,
        )
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


if context.is_offline_mode():
    raise SystemExit("offline migrations are not supported; run them against a database")
run_migrations_online()
