"""The append-only audit log: who changed what, when, from which device."""

from __future__ import annotations

import datetime as dt
import enum
import uuid
from typing import Any

from sqlalchemy.orm import Session

from server.db.models import AuditEntry
from server.services.actors import Actor


def jsonable(value: Any) -> Any:
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    return value


def snapshot(obj: Any, fields: list[str] | tuple[str, ...]) -> dict[str, Any]:
    return {f: jsonable(getattr(obj, f)) for f in fields}


def apply(obj: Any, data: dict[str, Any]) -> dict[str, list[Any]]:
    """Set the attributes in `data` that differ; return them as {field: [old, new]}."""
    changes: dict[str, list[Any]] = {}
    for field, new in data.items():
        old = getattr(obj, field)
        if old != new:
            changes[field] = [jsonable(old), jsonable(new)]
            setattr(obj, field, new)
    return changes


def row(
    actor: Actor,
    action: str,
    entity: str,
    entity_id: Any,
    changes: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The columns of one audit entry (for `record`, or for a bulk INSERT of many)."""
    return {
        "actor_id": actor.user_id,
        "device_id": actor.device_id,
        "action": action,
        "entity": entity,
        "entity_id": str(entity_id) if entity_id is not None else None,
        "changes": jsonable(changes) if changes else None,
        "request_id": actor.request_id,
        "remote_addr": actor.remote_addr,
    }


def record(
    session: Session,
    actor: Actor,
    action: str,
    entity: str,
    entity_id: Any,
    changes: dict[str, Any] | None = None,
) -> None:
    session.add(AuditEntry(**row(actor, action, entity, entity_id, changes)))
