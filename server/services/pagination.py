"""Keyset pagination: a stable order on (sort key, id) and an opaque cursor for the next page."""

from __future__ import annotations

import base64
import datetime as dt
import json
import uuid
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from sqlalchemy import Select, tuple_
from sqlalchemy.orm import InstrumentedAttribute, Session

from server.errors import ApiError

T = TypeVar("T")


@dataclass
class Page(Generic[T]):
    items: list[T]
    next_cursor: str | None


def _encode(values: list[Any]) -> str:
    def enc(v: Any) -> Any:
        if isinstance(v, dt.datetime):
            return {"t": v.astimezone(dt.UTC).isoformat()}
        if isinstance(v, uuid.UUID):
            return {"u": str(v)}
        if hasattr(v, "value"):
            return v.value
        return v

    raw = json.dumps([enc(v) for v in values], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode(cursor: str) -> list[Any]:
    def dec(v: Any) -> Any:
        if isinstance(v, dict) and "t" in v:
            return dt.datetime.fromisoformat(v["t"])
        if isinstance(v, dict) and "u" in v:
            return uuid.UUID(v["u"])
        return v

    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        values = json.loads(raw)
        if not isinstance(values, list):
            raise ValueError("cursor is not a list")
        return [dec(v) for v in values]
    except (ValueError, TypeError) as e:
        raise ApiError(400, "Invalid cursor.", code="invalid_cursor") from e


def limit_of(requested: int | None, default: int, maximum: int) -> int:
    if requested is None:
        return default
    if requested < 1 or requested > maximum:
        raise ApiError(422, errors={"limit": [f"Must be between 1 and {maximum}."]})
    return requested


def paginate(
    session: Session,
    query: Select[Any],
    keys: list[InstrumentedAttribute[Any]],
    *,
    cursor: str | None,
    limit: int,
    descending: bool = False,
) -> Page[Any]:
    """Run `query` ordered by `keys` (the last one unique) from `cursor`, `limit` rows at a time."""
    if cursor:
        values = _decode(cursor)
        if len(values) != len(keys) or not all(
            isinstance(v, k.type.python_type) for v, k in zip(values, keys, strict=True)
        ):
            raise ApiError(400, "Invalid cursor.", code="invalid_cursor")
        row, after = tuple_(*keys), tuple_(*values)
        query = query.where(row < after if descending else row > after)
    order = [k.desc() if descending else k.asc() for k in keys]
    rows = list(session.scalars(query.order_by(*order).limit(limit + 1)).unique())
    next_cursor = None
    if len(rows) > limit:
        rows = rows[:limit]
        last = rows[-1]
        next_cursor = _encode([getattr(last, k.key) for k in keys])
    return Page(rows, next_cursor)
