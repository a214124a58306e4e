"""Who receives a notice or digest: department mailboxes and staff, department heads, supervisors, admins.

Loaded once per job run (a few hundred rows at most) rather than per message.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.orm import Session

from schemas.enums import Role
from server.db.models import Department, User
from server.domain.followups import Audience


@dataclass(frozen=True)
class DepartmentInfo:
    id: uuid.UUID
    code: str
    name: str
    short_name: str
    # The department's own mailbox first, then its staff's.
    emails: tuple[str, ...]
    head_name: str | None
    head_emails: tuple[str, ...]


@dataclass
class Directory:
    departments: dict[uuid.UUID, DepartmentInfo] = field(default_factory=dict)
    supervisors: tuple[str, ...] = ()
    admins: tuple[str, ...] = ()

    def for_audience(self, department_id: uuid.UUID, audience: tuple[Audience, ...]) -> list[str]:
        """Addresses for a notice's audience about one department's referral, without repeats."""
        dept = self.departments.get(department_id)
        found: list[str] = []
        for who in audience:
            if who is Audience.department and dept is not None:
                found.extend(dept.emails)
            elif who is Audience.department_head and dept is not None:
                found.extend(dept.head_emails)
            elif who is Audience.supervisors:
                found.extend(self.supervisors)
        return _unique(found)


def _unique(addresses: list[str]) -> list[str]:
    seen: dict[str, str] = {}
    for a in addresses:
        if a and a.strip():
            seen.setdefault(a.strip().lower(), a.strip())
    return list(seen.values())


def load_directory(session: Session) -> Directory:
    """Every active department with its addresses, and the active supervisors' and admins' addresses."""
    staff: dict[uuid.UUID, list[str]] = defaultdict(list)
    supervisors: list[str] = []
    admins: list[str] = []
    users = session.execute(
        select(User.role, User.department_id, User.email)
        .where(User.active.is_(True), User.email.is_not(None))
        .order_by(User.username)
    )
    for role, department_id, email in users:
        address = str(email)
        if role is Role.department_staff and department_id is not None:
            staff[department_id].append(address)
        elif role is Role.supervisor:
            supervisors.append(address)
        elif role is Role.admin:
            admins.append(address)
    departments = {}
    for d in session.scalars(select(Department).where(Department.active.is_(True)).order_by(Department.code)):
        departments[d.id] = DepartmentInfo(
            id=d.id,
            code=d.code,
            name=d.name,
            short_name=d.short_name or d.name,
            emails=tuple(_unique([d.email or "", *staff.get(d.id, [])])),
            head_name=d.head_name,
            head_emails=tuple(_unique([d.head_email or ""])),
        )
    return Directory(departments, tuple(_unique(supervisors)), tuple(_unique(admins)))
