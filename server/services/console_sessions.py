"""Browser sessions of the web console: a random id in a signed cookie, its hash in the database."""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from server.db.models import ConsoleSession, User
from server.db.types import utcnow
from server.services import audit
from server.services.actors import Actor
from server.services.auth import check_password


def _digest(sid: str) -> str:
    return hashlib.sha256(sid.encode()).hexdigest()


def open_session(
    session: Session,
    username: str,
    password: str,
    *,
    ttl: dt.timedelta,
    user_agent: str | None,
    remote_addr: str | None,
) -> tuple[str, User]:
    """Check the password and open a browser session; returns (session id for the cookie, user)."""
    user = check_password(session, username, password)
    sid = secrets.token_urlsafe(32)
    session.add(
        ConsoleSession(
            id_hash=_digest(sid),
            user_id=user.id,
            expires_at=utcnow() + ttl,
            user_agent=(user_agent or "")[:300],
            remote_addr=remote_addr,
        )
    )
    audit.record(
        session, Actor(user.id, user.role, user.department_id, remote_addr=remote_addr), "login", "console", None
    )
    return sid, user


def user_for(session: Session, sid: str) -> User | None:
    """The user of a live browser session, or None (expired, logged out, user deactivated)."""
    row = session.execute(
        select(ConsoleSession, User)
        .join(User, User.id == ConsoleSession.user_id)
        .where(ConsoleSession.id_hash == _digest(sid))
    ).first()
    if row is None:
        return None
    cs, user = row
    if cs.revoked_at is not None or cs.expires_at <= utcnow() or not user.active:
        return None
    return user


def close_session(session: Session, sid: str) -> None:
    session.execute(
        update(ConsoleSession)
        .where(ConsoleSession.id_hash == _digest(sid), ConsoleSession.revoked_at.is_(None))
        .values(revoked_at=utcnow())
    )
