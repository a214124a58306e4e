"""Who is acting: the user behind a request or a job, with where the request came from."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from schemas.enums import Role
from server.errors import forbidden


@dataclass(frozen=True)
class Actor:
    user_id: uuid.UUID | None
    role: Role | None
    department_id: uuid.UUID | None = None
    device_id: uuid.UUID | None = None
    request_id: str | None = None
    remote_addr: str | None = None

    def has(self, *roles: Role) -> bool:
        return self.role in roles

    def require(self, *roles: Role) -> None:
        if self.role not in roles:
            raise forbidden()

    @property
    def reads_everything(self) -> bool:
        return self.role in (Role.supervisor, Role.admin)


# The scheduler and CLI commands act as the system.
SYSTEM = Actor(user_id=None, role=None)
