"""The working-day calendar as the bureau uses it: China's calendar under the admins' override table.

A change here never moves a stored deadline: deadlines are computed when a referral is issued,
extended, sent back with a new allowance or reopened, and kept. Overrides apply from then on
(to new deadlines and to counting overdue days).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from schemas.enums import Role
from server.db.followup_models import CalendarOverride
from server.domain.workdays import WorkCalendar
from server.errors import not_found
from server.services import audit
from server.services.actors import Actor


def load_calendar(session: Session) -> WorkCalendar:
    """The calendar every deadline is counted on: chinese_calendar, with the override table on top."""
    return WorkCalendar({row.day: row.workday for row in session.scalars(select(CalendarOverride))})


def list_overrides(session: Session, year: int | None = None) -> list[CalendarOverride]:
    """The overrides in day order (everyone may read them), optionally of one year."""
    query = select(CalendarOverride).order_by(CalendarOverride.day)
    if year is not None:
        query = query.where(CalendarOverride.day >= dt.date(year, 1, 1), CalendarOverride.day <= dt.date(year, 12, 31))
    return list(session.scalars(query))


def set_override(session: Session, actor: Actor, data: dict[str, Any]) -> tuple[CalendarOverride, bool]:
    """Mark a day working or off (admins); replaces an override of the same day. Returns (row, created)."""
    actor.require(Role.admin)
    day = data["day"]
    fields = {"workday": data["workday"], "note": (data.get("note") or "").strip() or None}
    row = session.get(CalendarOverride, day)
    if row is None:
        row = CalendarOverride(day=day, updated_by_id=actor.user_id, **fields)
        session.add(row)
        session.flush()
        audit.record(session, actor, "create", "calendar_override", day, {"day": day, **fields})
        return row, True
    changes = audit.apply(row, fields)
    row.updated_by_id = actor.user_id
    audit.record(session, actor, "update", "calendar_override", day, changes)
    return row, False


def delete_override(session: Session, actor: Actor, day: dt.date) -> None:
    """Remove an override (admins): the day is again what China's calendar says."""
    actor.require(Role.admin)
    row = session.get(CalendarOverride, day)
    if row is None:
        raise not_found("Calendar override")
    audit.record(session, actor, "delete", "calendar_override", day, {"workday": row.workday, "note": row.note})
    session.delete(row)
