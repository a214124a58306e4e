"""The supervisor dashboard's figures: the article's numbers, referrals, coverage, devices, sync trouble."""

from __future__ import annotations

import datetime as dt
import uuid
from collections import defaultdict
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from schemas.enums import Role
from server.db.followup_models import FollowUp, Referral
from server.db.models import Device, PortfolioEntry, SyncChange, SyncConflict, Target, User, Visit
from server.db.types import utcnow
from server.domain.periods import day_bounds
from server.services import reports
from server.services.actors import Actor

STALE_DAYS = 3
OPEN_REFERRAL = ("issued", "return_requested", "signed", "extension_requested", "responded")


def _ratio(part: int, whole: int) -> float | None:
    return round(100.0 * part / whole, 1) if whole else None


def referral_figures(session: Session, first: dt.date | None, last: dt.date | None) -> dict[str, Any]:
    """Referrals issued in the period: 办结率, 按时办结率, 满意率 (revisits done in the period)."""
    start, end = day_bounds(first, last)
    # Counted by the database: a year of referrals is thousands of rows, the answer a few groups.
    query = select(Referral.status, Referral.on_time, func.count()).group_by(Referral.status, Referral.on_time)
    revisits = (
        select(FollowUp.satisfaction, func.count())
        .where(FollowUp.kind == "revisit", FollowUp.status == "done")
        .group_by(FollowUp.satisfaction)
    )
    if start is not None:
        query = query.where(Referral.issued_at >= start)
        revisits = revisits.where(FollowUp.completed_at >= start)
    if end is not None:
        query = query.where(Referral.issued_at < end)
        revisits = revisits.where(FollowUp.completed_at < end)
    rows = session.execute(query).all()
    issued = sum(n for status, _, n in rows if status != "cancelled")
    closed = sum(n for status, _, n in rows if status == "closed")
    on_time = sum(n for status, in_time, n in rows if status == "closed" and in_time)
    answers = {satisfaction: int(n) for satisfaction, n in session.execute(revisits)}
    revisited = sum(answers.values())
    satisfied = answers.get("satisfied", 0) + answers.get("basically_satisfied", 0)
    return {
        "issued": issued,
        "closed": closed,
        "closed_rate": _ratio(closed, issued),
        "on_time_rate": _ratio(on_time, closed),
        "revisits": revisited,
        "satisfaction_rate": _ratio(satisfied, revisited),
    }


def overdue_referrals(session: Session, limit: int = 10) -> list[Referral]:
    now = utcnow()
    return list(
        session.scalars(
            select(Referral)
            .where(Referral.status.in_(OPEN_REFERRAL), Referral.deadline < now)
            .order_by(Referral.deadline)
            .limit(limit)
        )
    )


def portfolio_coverage(session: Session, first: dt.date | None, last: dt.date | None) -> list[dict[str, Any]]:
    """Per cadre: the targets they are responsible for, which were visited in the period, which not."""
    start, end = day_bounds(first, last)
    # One probe of ix_visits_target_visited_at per portfolio target, not a DISTINCT over every
    # visit of the period (at 100,000 visits: ~2 ms instead of 40-140 ms on SQLite).
    visit_here = select(Visit.id).where(Visit.target_id == Target.id)
    if start is not None:
        visit_here = visit_here.where(Visit.visited_at >= start)
    if end is not None:
        visit_here = visit_here.where(Visit.visited_at < end)
    held = select(PortfolioEntry.target_id)
    visited = set(session.scalars(select(Target.id).where(Target.id.in_(held), visit_here.exists())))
    # Columns, not ORM objects: 220 portfolio entries load in ~3 ms instead of ~16 ms.
    holdings: dict[uuid.UUID, list[tuple[uuid.UUID, str]]] = defaultdict(list)
    for user_id, target_id, name in session.execute(
        select(PortfolioEntry.user_id, Target.id, Target.name)
        .join(Target, Target.id == PortfolioEntry.target_id)
        .order_by(Target.name)
    ):
        holdings[user_id].append((target_id, name))
    users = {
        u.id: u for u in session.execute(select(User.id, User.display_name, User.username).where(User.id.in_(holdings)))
    }
    out = []
    for user_id, targets in holdings.items():
        missing = [name for target_id, name in targets if target_id not in visited]
        out.append(
            {
                "cadre": users[user_id].display_name if user_id in users else "",
                "username": users[user_id].username if user_id in users else "",
                "total": len(targets),
                "visited": len(targets) - len(missing),
                "not_visited": missing,
            }
        )
    return sorted(out, key=lambda r: (r["visited"] / r["total"] if r["total"] else 1, r["username"]))


def stale_devices(session: Session, days: int = STALE_DAYS) -> list[dict[str, Any]]:
    cutoff = utcnow() - dt.timedelta(days=days)
    rows = session.execute(
        select(Device, User.display_name)
        .join(User, User.id == Device.user_id)
        .where(Device.revoked_at.is_(None), User.role.in_([Role.cadre, Role.supervisor]))
        .where((Device.last_seen_at.is_(None)) | (Device.last_seen_at < cutoff))
        .order_by(Device.last_seen_at)
        .limit(20)
    ).all()
    return [{"device": d, "user_name": name} for d, name in rows]


def sync_trouble(session: Session) -> dict[str, int]:
    rejected = session.scalar(select(func.count()).select_from(SyncChange).where(SyncChange.status == "rejected"))
    conflicts = session.scalar(select(func.count()).select_from(SyncConflict).where(SyncConflict.status == "open"))
    return {"rejected": int(rejected or 0), "open_conflicts": int(conflicts or 0)}


def dashboard(
    session: Session, actor: Actor, campaign: uuid.UUID | None, first: dt.date | None, last: dt.date | None
) -> dict[str, Any]:
    actor.require(Role.supervisor, Role.admin)
    return {
        "summary": reports.summary(session, actor, campaign, first, last),
        "referrals": referral_figures(session, first, last),
        "overdue": overdue_referrals(session),
        "portfolios": portfolio_coverage(session, first, last),
        "stale_devices": stale_devices(session),
        "sync": sync_trouble(session),
    }
