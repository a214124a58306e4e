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


def insert_ignore_many(
    session: Session, model: Any, rows: Sequence[Mapping[str, Any]], keys: Sequence[str], *, chunk: int = 500
) -> set[tuple[Any, ...]]:
    """Insert the rows whose `keys` are not taken yet, in multi-row statements; the keys inserted.

    The same guarantee as `insert_ignore`, row by row, at the cost of one statement per `chunk`.
    """
    if not rows:
        return set()
    table = model.__table__
    inserted: set[tuple[Any, ...]] = set()
    for i in range(0, len(rows), chunk):
        stmt = (
            _insert(session, table)
            .values([dict(r) for r in rows[i : i + chunk]])
            .on_conflict_do_nothing(index_elements=list(keys))
            .returning(*(table.c[k] for k in keys))
        )
        inserted.update(tuple(r) for r in session.execute(stmt))
    return inserted


def upsert(
    session: Session, model: Any, values: Mapping[str, Any], keys: Sequence[str], update: Mapping[str, Any]
) -> None:
    """Insert a row, or update `update` on the existing one with the same `keys`."""
    stmt = _insert(session, model.__table__).values(**values)
    session.execute(stmt.on_conflict_do_update(index_elements=list(keys), set_=dict(update)))
