"""Test data: gen_* functions that write straight to the store, and a small standard world."""

from __future__ import annotations

import datetime as dt
import itertools
import secrets
import uuid
from dataclasses import dataclass
from typing import Any

from argon2 import PasswordHasher
from sqlalchemy.orm import Session

from schemas.enums import ParkType, Role, TargetKind
from server.db.models import AuthToken, Campaign, Department, Device, PortfolioEntry, Target, User
from server.db.types import utcnow
from server.services import auth

PASSWORD = "test-password-123"
_seq = itertools.count(1)


def use_fast_password_hashing() -> None:
    """Argon2 with the smallest cost, so that hundreds of logins keep the suite fast."""
    auth._hasher = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)
    auth._DUMMY_HASH = auth._hasher.hash("dummy")


def gen_department(session: Session, **kw: Any) -> Department:
    n = next(_seq)
    dept = Department(**{"code": f"dept{n}", "name": f"测试部门{n}", "short_name": f"部门{n}"} | kw)
    session.add(dept)
    session.flush()
    return dept


def gen_user(session: Session, role: Role = Role.cadre, **kw: Any) -> User:
    n = next(_seq)
    if role is Role.department_staff and "department_id" not in kw:
        kw["department_id"] = gen_department(session).id
    user = User(
        **{
            "username": f"{role.value}{n}",
            "display_name": f"{role.label}{n}",
            "role": role,
            "password_hash": auth.hash_password(PASSWORD),
        }
        | kw
    )
    session.add(user)
    session.flush()
    return user


def gen_token(session: Session, user: User, *, days: int = 30, device_id: uuid.UUID | None = None) -> str:
    """A valid bearer token on a new device of `user`."""
    device = Device(id=device_id or uuid.uuid4(), user_id=user.id, name="test phone")
    session.add(device)
    session.flush()
    token = secrets.token_urlsafe(32)
    session.add(
        AuthToken(
            token_hash=auth.token_digest(token),
            user_id=user.id,
            device_id=device.id,
            expires_at=utcnow() + dt.timedelta(days=days),
        )
    )
    session.flush()
    return token


def gen_target(session: Session, kind: TargetKind = TargetKind.firm, **kw: Any) -> Target:
    n = next(_seq)
    if kind is TargetKind.park:
        kw.setdefault("park_type", ParkType.provincial_zone)
    target = Target(**{"kind": kind, "name": f"测试{kind.label}{n}"} | kw)
    session.add(target)
    session.flush()
    return target


def gen_campaign(session: Session, **kw: Any) -> Campaign:
    n = next(_seq)
    campaign = Campaign(
        **{
            "code": f"camp{n}",
            "name": f"测试活动{n}",
            "starts_on": dt.date(2026, 1, 1),
            "ends_on": dt.date(2026, 12, 31),
        }
        | kw
    )
    session.add(campaign)
    session.flush()
    return campaign


def visit_note(world: World, **kw: Any) -> dict[str, Any]:
    """A valid POST /visits body."""
    return {
        "id": str(uuid.uuid4()),
        "campaign_id": str(world.campaign),
        "target_id": str(world.firm),
        "visited_at": "2026-11-20T10:30:00+08:00",
        "service_categories": ["research", "financial_support"],
        "summary": "走访企业，了解生产经营情况。企业反映融资难融资贵。",
        "problems": [
            {"id": str(uuid.uuid4()), "category": "financing", "description": "流动资金贷款利率偏高，融资难融资贵。"},
            {"id": str(uuid.uuid4()), "category": "labor", "description": "招工难，用工成本增加。"},
        ],
    } | kw


@dataclass
class World:
    """Ids and bearer headers of a small standard world."""

    dept: uuid.UUID
    other_dept: uuid.UUID
    park: uuid.UUID
    firm: uuid.UUID
    project: uuid.UUID
    campaign: uuid.UUID
    users: dict[str, uuid.UUID]
    tokens: dict[str, str]
    devices: dict[str, uuid.UUID]

    def headers(self, who: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[who]}"}


ROLES = {
    "cadre": Role.cadre,
    "other_cadre": Role.cadre,
    "supervisor": Role.supervisor,
    "staff": Role.department_staff,
    "other_staff": Role.department_staff,
    "admin": Role.admin,
}


def world(session: Session) -> World:
    dept = gen_department(session)
    other = gen_department(session)
    park = gen_target(session, TargetKind.park)
    firm = gen_target(session, TargetKind.firm, park_id=park.id)
    project = gen_target(session, TargetKind.project, park_id=park.id)
    campaign = gen_campaign(session)
    users: dict[str, uuid.UUID] = {}
    tokens: dict[str, str] = {}
    devices: dict[str, uuid.UUID] = {}
    for who, role in ROLES.items():
        kw: dict[str, Any] = {"username": who}
        if who == "staff":
            kw["department_id"] = dept.id
        elif who == "other_staff":
            kw["department_id"] = other.id
        user = gen_user(session, role, **kw)
        users[who] = user.id
        devices[who] = uuid.uuid4()
        tokens[who] = gen_token(session, user, device_id=devices[who])
    session.add(PortfolioEntry(user_id=users["cadre"], target_id=firm.id))
    return World(dept.id, other.id, park.id, firm.id, project.id, campaign.id, users, tokens, devices)
