"""Targets (parks, projects, firms) and cadres' portfolios (包挂)."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import exists, or_, select
from sqlalchemy.orm import Session

from schemas.enums import Role, TargetKind
from schemas.targets import check_kind_rules
from server.db.models import PortfolioEntry, Target, User, Visit
from server.errors import ApiError, invalid, not_found
from server.services import audit
from server.services.actors import Actor
from server.services.directory import check_version
from server.services.pagination import Page, paginate

FIELDS = (
    "kind", "name", "code", "park_type", "park_id", "district", "address", "industry",
    "contact_name", "contact_phone", "notes", "active",
)  # fmt: skip


def get_target(session: Session, target_id: uuid.UUID) -> Target:
    target = session.get(Target, target_id)
    if target is None:
        raise not_found("Target")
    return target


def list_targets(session: Session, args: dict[str, Any], *, limit: int) -> Page[Target]:
    query = select(Target)
    if args.get("kind"):
        query = query.where(Target.kind == args["kind"])
    if args.get("park"):
        query = query.where(Target.park_id == args["park"])
    if args.get("cadre"):
        query = query.where(
            Target.id.in_(select(PortfolioEntry.target_id).where(PortfolioEntry.user_id == args["cadre"]))
        )
    if args.get("q"):
        query = query.where(or_(Target.name.contains(args["q"], autoescape=True), Target.code == args["q"]))
    if args.get("active") is not None:
        query = query.where(Target.active.is_(args["active"]))
    return paginate(session, query, [Target.name, Target.id], cursor=args.get("cursor"), limit=limit)


def _check_park(session: Session, park_id: uuid.UUID | None) -> None:
    if park_id is None:
        return
    park = session.get(Target, park_id)
    if park is None or park.kind is not TargetKind.park:
        raise invalid("park_id", "No such park.")


def create_target(session: Session, actor: Actor, data: dict[str, Any]) -> Target:
    actor.require(Role.admin)
    if data.get("kind") is TargetKind.park and data.get("park_type") is None:
        raise invalid("park_type", "A park needs its type.")
    _check_park(session, data.get("park_id"))
    if data.get("id") is None:
        data.pop("id", None)
    target = Target(**data)
    session.add(target)
    session.flush()
    audit.record(session, actor, "create", "target", target.id, audit.snapshot(target, FIELDS))
    return target


def update_target(session: Session, actor: Actor, target_id: uuid.UUID, data: dict[str, Any]) -> Target:
    actor.require(Role.admin)
    target = get_target(session, target_id)
    check_version(target, data)
    merged = {"park_type": target.park_type, "park_id": target.park_id} | data
    try:
        check_kind_rules(target.kind, merged)
    except Exception as e:  # marshmallow.ValidationError carries the field name
        field = getattr(e, "field_name", "_schema")
        raise invalid(field, str(e.args[0])) from e
    _check_park(session, data.get("park_id"))
    audit.record(session, actor, "update", "target", target.id, audit.apply(target, data))
    return target


def delete_target(session: Session, actor: Actor, target_id: uuid.UUID) -> None:
    """Delete a target nobody visited yet; a visited one can only be deactivated (history stays)."""
    actor.require(Role.admin)
    target = get_target(session, target_id)
    if session.scalar(select(exists().where(Visit.target_id == target.id))):
        raise ApiError(409, "The target has visits; deactivate it instead.", code="target_in_use")
    if session.scalar(select(exists().where(Target.park_id == target.id))):
        raise ApiError(409, "Targets sit in this park; move them first.", code="target_in_use")
    for entry in session.scalars(select(PortfolioEntry).where(PortfolioEntry.target_id == target.id)):
        session.delete(entry)  # through the ORM, so devices get the tombstones
    session.delete(target)
    audit.record(session, actor, "delete", "target", target.id, audit.snapshot(target, FIELDS))


def portfolio(session: Session, user_id: uuid.UUID) -> list[uuid.UUID]:
    return list(
        session.scalars(
            select(PortfolioEntry.target_id).where(PortfolioEntry.user_id == user_id).order_by(PortfolioEntry.target_id)
        )
    )


def set_portfolio(session: Session, actor: Actor, user_id: uuid.UUID, target_ids: list[uuid.UUID]) -> list[uuid.UUID]:
    """Replace a cadre's portfolio with `target_ids`."""
    actor.require(Role.admin)
    user = session.get(User, user_id)
    if user is None:
        raise not_found("User")
    if user.role not in (Role.cadre, Role.supervisor):
        raise invalid("user_id", "Only cadres and supervisors hold a portfolio.")
    wanted = set(target_ids)
    if wanted:
        found = set(session.scalars(select(Target.id).where(Target.id.in_(wanted))))
        missing = wanted - found
        if missing:
            raise invalid("target_ids", f"No such target: {sorted(map(str, missing))[0]}")
    current = set(portfolio(session, user_id))
    added, removed = wanted - current, current - wanted
    if removed:
        for entry in session.scalars(
            select(PortfolioEntry).where(PortfolioEntry.user_id == user_id, PortfolioEntry.target_id.in_(removed))
        ):
            session.delete(entry)  # through the ORM, so devices get the tombstones
    for target_id in sorted(added):
        session.add(PortfolioEntry(user_id=user_id, target_id=target_id))
    if added or removed:
        audit.record(
            session, actor, "update", "portfolio", user_id,
            {"added": sorted(map(str, added)), "removed": sorted(map(str, removed))},
        )  # fmt: skip
    return sorted(wanted)
