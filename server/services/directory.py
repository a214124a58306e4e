"""Users, departments and campaigns: the bureau's directory, managed by admins."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from schemas.enums import Role
from server.db.models import Campaign, Department, User
from server.errors import invalid, not_found, version_conflict
from server.services import audit
from server.services.actors import Actor
from server.services.auth import hash_password

USER_FIELDS = ("username", "display_name", "role", "department_id", "email", "phone", "title", "active")


def check_version(obj: Any, data: dict[str, Any]) -> None:
    expected = data.pop("version")
    if obj.version != expected:
        raise version_conflict(obj.version)
    obj.version += 1


def _require_department(session: Session, department_id: uuid.UUID | None) -> None:
    if department_id is not None and session.get(Department, department_id) is None:
        raise invalid("department_id", "No such department.")


# Departments -----------------------------------------------------------------------------


def list_departments(session: Session, active: bool | None = None) -> list[Department]:
    query = select(Department).order_by(Department.name, Department.id)
    if active is not None:
        query = query.where(Department.active.is_(active))
    return list(session.scalars(query))


def get_department(session: Session, department_id: uuid.UUID) -> Department:
    dept = session.get(Department, department_id)
    if dept is None:
        raise not_found("Department")
    return dept


def create_department(session: Session, actor: Actor, data: dict[str, Any]) -> Department:
    actor.require(Role.admin)
    dept = Department(**data)
    session.add(dept)
    session.flush()
    audit.record(session, actor, "create", "department", dept.id, data)
    return dept


def update_department(session: Session, actor: Actor, department_id: uuid.UUID, data: dict[str, Any]) -> Department:
    actor.require(Role.admin)
    dept = get_department(session, department_id)
    check_version(dept, data)
    audit.record(session, actor, "update", "department", dept.id, audit.apply(dept, data))
    return dept


# Users -----------------------------------------------------------------------------------


def list_users(
    session: Session,
    actor: Actor,
    role: Role | None = None,
    department: uuid.UUID | None = None,
    active: bool | None = None,
) -> list[User]:
    actor.require(Role.admin, Role.supervisor)
    query = select(User).order_by(User.username)
    if role:
        query = query.where(User.role == role)
    if department:
        query = query.where(User.department_id == department)
    if active is not None:
        query = query.where(User.active.is_(active))
    return list(session.scalars(query))


def get_user(session: Session, actor: Actor, user_id: uuid.UUID) -> User:
    if actor.user_id != user_id:
        actor.require(Role.admin, Role.supervisor)
    user = session.get(User, user_id)
    if user is None:
        raise not_found("User")
    return user


def create_user(session: Session, actor: Actor, data: dict[str, Any]) -> User:
    actor.require(Role.admin)
    _require_department(session, data.get("department_id"))
    password = data.pop("password")
    user = User(**data, password_hash=hash_password(password))
    session.add(user)
    session.flush()
    audit.record(session, actor, "create", "user", user.id, audit.snapshot(user, USER_FIELDS))
    return user


def update_user(session: Session, actor: Actor, user_id: uuid.UUID, data: dict[str, Any]) -> User:
    actor.require(Role.admin)
    user = get_user(session, actor, user_id)
    check_version(user, data)
    role = data.get("role", user.role)
    department_id = data.get("department_id", user.department_id)
    if role is Role.department_staff and department_id is None:
        raise invalid("department_id", "Department staff must belong to a department.")
    if role is not Role.department_staff:
        if "department_id" in data and data["department_id"] is not None:
            raise invalid("department_id", "Only department staff belong to a department.")
        data["department_id"] = None
    _require_department(session, data.get("department_id"))
    if user.id == actor.user_id and (data.get("active") is False or data.get("role", Role.admin) is not Role.admin):
        raise invalid("role", "You cannot demote or deactivate yourself.")
    password = data.pop("password", None)
    changes = audit.apply(user, data)
    if password:
        user.password_hash = hash_password(password)
        changes["password"] = ["***", "***"]
    audit.record(session, actor, "update", "user", user.id, changes)
    return user


# Campaigns -------------------------------------------------------------------------------


def list_campaigns(session: Session) -> list[Campaign]:
    return list(session.scalars(select(Campaign).order_by(Campaign.starts_on.desc(), Campaign.id)))


def get_campaign(session: Session, campaign_id: uuid.UUID) -> Campaign:
    campaign = session.get(Campaign, campaign_id)
    if campaign is None:
        raise not_found("Campaign")
    return campaign


def create_campaign(session: Session, actor: Actor, data: dict[str, Any]) -> Campaign:
    actor.require(Role.admin, Role.supervisor)
    campaign = Campaign(**data)
    session.add(campaign)
    session.flush()
    audit.record(session, actor, "create", "campaign", campaign.id, data)
    return campaign


def update_campaign(session: Session, actor: Actor, campaign_id: uuid.UUID, data: dict[str, Any]) -> Campaign:
    actor.require(Role.admin, Role.supervisor)
    campaign = get_campaign(session, campaign_id)
    check_version(campaign, data)
    starts = data.get("starts_on", campaign.starts_on)
    ends = data.get("ends_on", campaign.ends_on)
    if ends is not None and ends < starts:
        raise invalid("ends_on", "The campaign cannot end before it starts.")
    audit.record(session, actor, "update", "campaign", campaign.id, audit.apply(campaign, data))
    return campaign
