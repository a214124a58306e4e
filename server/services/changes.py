"""The change log that devices pull from: every write is numbered in commit order.

Session events note which synced records a transaction inserted, updated or deleted. Just
before the transaction commits, it takes that many numbers from the one-row `sync_counter`
(UPDATE … RETURNING, whose row lock it holds until COMMIT) and upserts one `change_log` row
per record. Because the lock is held until commit, numbers become visible in commit order:
a device that pulled up to N can never later find a committed change numbered below N that
it did not see. See docs/sync-protocol.md.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

from sqlalchemy import event, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, sessionmaker

from server.db.models import (
    Campaign,
    ChangeLogEntry,
    Department,
    PortfolioEntry,
    Problem,
    SyncConflict,
    SyncCounter,
    Target,
    Visit,
    VisitAttachment,
)
from server.db.types import utcnow

PENDING = "pending_changes"
# Change-log rows that take a record away from one user: "revoked:<entity>" (see `revoke`).
REVOKED = "revoked:"
# A hook for tests: called inside the transaction after numbers are taken, before COMMIT.
AFTER_NUMBERING = "after_numbering"


@dataclass(frozen=True)
class Scope:
    """Who receives a record: everyone ('all'), its owner ('owner'), or owner + portfolio ('target')."""

    scope: str
    owner_id: uuid.UUID | None
    target_id: uuid.UUID | None


def _attachment_scope(a: VisitAttachment) -> Scope:
    visit = a.visit
    return Scope("target", visit.cadre_id if visit else None, visit.target_id if visit else None)


# entity name and scope of every model that devices receive.
SYNCED: dict[type, tuple[str, Callable[[Any], Scope]]] = {
    Department: ("department", lambda o: Scope("all", None, None)),
    Campaign: ("campaign", lambda o: Scope("all", None, None)),
    Target: ("target", lambda o: Scope("all", None, o.id)),
    PortfolioEntry: ("portfolio_entry", lambda o: Scope("owner", o.user_id, o.target_id)),
    Visit: ("visit", lambda o: Scope("target", o.cadre_id, o.target_id)),
    Problem: ("problem", lambda o: Scope("target", o.cadre_id, o.target_id)),
    VisitAttachment: ("attachment", _attachment_scope),
    SyncConflict: ("conflict", lambda o: Scope("owner", o.user_id, None)),
}


def register(entity_class: type, name: str, scope: Callable[[Any], Scope]) -> None:
    """Let another module's model be synced (e.g. follow-ups)."""
    SYNCED[entity_class] = (name, scope)


def revoke(session: Session, obj: Any, user_id: uuid.UUID) -> None:
    """`user_id` no longer receives `obj` (a follow-up given to someone else): their devices pull a
    tombstone of it, while the record's own row goes on to whoever receives it now.

    The change log keeps one row per record, owned by the current receiver, so the tombstone is a
    row of its own: entity "revoked:<entity>", keyed by the record and the user (a uuid5), owned by
    that user, with the record's id in `target_id` (a revocation row is never in a target's
    history). It is numbered before the record's row of the same transaction, so a record given
    back to the same user arrives after its tombstone, not before.
    """
    name, _scope = SYNCED[type(obj)]
    pending: dict[tuple[str, uuid.UUID], tuple[str, Scope]] = session.info.setdefault(PENDING, {})
    own = pending.pop((name, obj.id), None)
    pending[(REVOKED + name, uuid.uuid5(obj.id, str(user_id)))] = ("delete", Scope("owner", user_id, obj.id))
    if own is not None:
        pending[(name, obj.id)] = own


def note(session: Session, model: type, record_ids: Iterable[uuid.UUID], scope: Scope, op: str = "upsert") -> None:
    """Number these `model` records' change with the transaction's (see SYNCED)."""
    name = SYNCED[model][0]
    pending: dict[tuple[str, uuid.UUID], tuple[str, Scope]] = session.info.setdefault(PENDING, {})
    for record_id in record_ids:
        pending[(name, record_id)] = (op, scope)


def scope_of(model: type, row: Mapping[str, Any]) -> Scope:
    """Who receives a `model` record with these columns, as SYNCED says for its objects."""
    return SYNCED[model][1](SimpleNamespace(**row))


def note_rows(session: Session, model: type, rows: Iterable[Mapping[str, Any]]) -> None:
    """`note` for rows written without ORM objects (a bulk INSERT), which the flush events below
    do not see: each row's scope as SYNCED gives it."""
    for row in rows:
        note(session, model, [row["id"]], scope_of(model, row))


def _note(session: Session, obj: Any, op: str) -> None:
    spec = SYNCED.get(type(obj))
    if spec is None:
        return
    note(session, type(obj), [obj.id], spec[1](obj), op)


def _after_flush(session: Session, _context: Any) -> None:
    for obj in session.new:
        _note(session, obj, "upsert")
    for obj in session.dirty:
        if session.is_modified(obj, include_collections=False):
            _note(session, obj, "upsert")
    for obj in session.deleted:
        _note(session, obj, "delete")


def _before_commit(session: Session) -> None:
    if session.in_nested_transaction():
        # A savepoint's release: its changes stay noted and are numbered with the whole
        # transaction's, once, just before the real COMMIT (so the counter's lock is held only then).
        return
    session.flush()
    pending = session.info.pop(PENDING, None)
    if not pending:
        return
    last = session.execute(
        update(SyncCounter).where(SyncCounter.id == 1).values(value=SyncCounter.value + len(pending))
        .returning(SyncCounter.value)
    ).scalar_one()  # fmt: skip
    now = utcnow()
    rows = [
        {
            "entity": entity,
            "record_id": record_id,
            "change_no": number,
            "op": op,
            "scope": scope.scope,
            "owner_id": scope.owner_id,
            "target_id": scope.target_id,
            "changed_at": now,
        }
        for number, ((entity, record_id), (op, scope)) in enumerate(pending.items(), start=last - len(pending) + 1)
    ]
    # Core, not an ORM bulk insert: the session was just flushed.
    session.connection().execute(_upsert(session.get_bind().dialect.name), rows)
    hook = session.info.get(AFTER_NUMBERING)
    if hook is not None:
        hook(session)


@functools.cache
def _upsert(dialect: str) -> Any:
    """The change-log upsert, built once per dialect (every write transaction runs it)."""
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    stmt = insert(ChangeLogEntry)
    return stmt.on_conflict_do_update(
        index_elements=["entity", "record_id"],
        set_={c: stmt.excluded[c] for c in ("change_no", "op", "scope", "owner_id", "target_id", "changed_at")},
    )


def _after_rollback(session: Session) -> None:
    if not session.in_transaction():
        session.info.pop(PENDING, None)


def install(maker: sessionmaker[Session]) -> None:
    """Record changes for every session `maker` makes."""
    event.listen(maker, "after_flush", _after_flush)
    event.listen(maker, "before_commit", _before_commit)
    event.listen(maker, "after_soft_rollback", lambda s, _t: _after_rollback(s))


@contextmanager
def savepoint(session: Session) -> Iterator[None]:
    """A SAVEPOINT whose rollback also forgets the changes noted inside it."""
    noted = dict(session.info.get(PENDING, {}))
    try:
        with session.begin_nested():
            yield
            session.flush()
    except BaseException:
        session.info[PENDING] = noted
        raise
