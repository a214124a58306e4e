"""INSERT … ON CONFLICT on both databases: the way a job records "done" exactly once."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session


def _insert(session: Session, model: Any) -> Any:
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        return postgresql.insert(model)
    if dialect == "sqlite":
        return sqlite.insert(model)
    raise NotImplementedError(f"no upsert for {dialect}")  # pragma: no cover - two databases only


def insert_ignore(session: Session, model: Any, values: Mapping[str, Any], keys: Sequence[str]) -> bool:
    """Insert a row unless one with the same `keys` exists; True when this call inserted it.

    On PostgreSQL a concurrent transaction inserting the same key makes this one wait for it and
    then do nothing, so of two racing writers exactly one sees True.
    """
    table = model.__table__
    stmt = (
        _insert(session, table)
        .values(**values)
        .on_conflict_do_nothing(index_elements=list(keys))
        .returning(table.c[keys[0]])
    )
    # RETURNING rather than rowcount: both drivers report the row only when it was inserted.
    return session.execute(stmt).first() is not None


def upsert(
    session: Session, model: Any, values: Mapping[str, Any], keys: Sequence[str], update: Mapping[str, Any]
) -> None:
    """Insert a row, or update `update` on the existing one with the same `keys`."""
    stmt = _insert(session, model.__table__).values(**values)
    session.execute(stmt.on_conflict_do_update(index_elements=list(keys), set_=dict(update)))
