"""Passwords (Argon2id) and device tokens (random, stored as a SHA-256 hash, expiring, revocable)."""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
import uuid
from dataclasses import dataclass

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import bindparam, select, update
from sqlalchemy.orm import Session

from schemas.enums import Role
from server.db.models import AuthToken, Device, User
from server.db.types import utcnow
from server.errors import ApiError, not_found
from server.services import audit
from server.services.actors import Actor

_hasher = PasswordHasher()
# Verifying against this keeps a login for an unknown user as slow as one for a known user.
_DUMMY_HASH = _hasher.hash("not a password of anybody")


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def _verify(password_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def check_password(session: Session, username: str, password: str) -> User:
    """The active user with this username and password, or 401 (the same answer for any failure)."""
    user = session.scalar(select(User).where(User.username == username))
    if user is None:
        _verify(_DUMMY_HASH, password)  # as slow as a real check: no user enumeration by timing
    if user is None or not user.active or not _verify(user.password_hash, password):
        raise ApiError(401, "Wrong username or password.", code="invalid_credentials")
    if _hasher.check_needs_rehash(user.password_hash):
        user.password_hash = hash_password(password)
    return user


@dataclass(frozen=True)
class Login:
    token: str
    expires_at: dt.datetime
    user: User
    device: Device


def login(
    session: Session,
    username: str,
    password: str,
    *,
    device_id: uuid.UUID | None,
    device_name: str | None,
    app_version: str | None,
    ttl: dt.timedelta,
    remote_addr: str | None = None,
) -> Login:
    """Check the password and issue a token bound to the device (registered on first login)."""
    user = check_password(session, username, password)
    now = utcnow()
    device = session.get(Device, device_id) if device_id else None
    if device is None:
        device = Device(id=device_id or uuid.uuid4(), user_id=user.id, name=device_name)
        session.add(device)
    elif device.user_id != user.id:
        raise ApiError(409, "This device is registered to another user.", code="device_taken")
    if device.revoked_at is not None:
        raise ApiError(403, "This device has been revoked; ask an administrator.", code="device_revoked")
    device.last_seen_at = now
    if device_name:
        device.name = device_name
    if app_version:
        device.app_version = app_version
    token = secrets.token_urlsafe(32)
    expires_at = now + ttl
    session.add(AuthToken(token_hash=token_digest(token), user_id=user.id, device_id=device.id, expires_at=expires_at))
    actor = Actor(user.id, user.role, user.department_id, device.id, remote_addr=remote_addr)
    audit.record(session, actor, "login", "device", device.id)
    return Login(token=token, expires_at=expires_at, user=user, device=device)


@dataclass(frozen=True)
class Credential:
    """Who a valid bearer token speaks for, and the token's own facts."""

    user_id: uuid.UUID
    role: Role
    department_id: uuid.UUID | None
    token_id: uuid.UUID
    device_id: uuid.UUID
    last_used_at: dt.datetime | None


# Every API request runs this, so it is built once and reads plain columns, not three ORM objects.
_CREDENTIAL = (
    select(
        User.id, User.role, User.department_id, AuthToken.id, AuthToken.device_id, AuthToken.last_used_at,
        AuthToken.revoked_at, AuthToken.expires_at, User.active, Device.revoked_at,
    )
    .join(User, User.id == AuthToken.user_id)
    .join(Device, Device.id == AuthToken.device_id)
    .where(AuthToken.token_hash == bindparam("digest"))
)  # fmt: skip


def authenticate(session: Session, token: str) -> Credential | None:
    """The user and token behind a bearer token, if it is valid now."""
    row = session.execute(_CREDENTIAL, {"digest": token_digest(token)}).first()
    if row is None:
        return None
    *facts, token_revoked_at, expires_at, user_active, device_revoked_at = row
    if token_revoked_at is not None or expires_at <= utcnow() or not user_active or device_revoked_at is not None:
        return None
    return Credential(*facts)


# A token's last_used_at (and its device's last_seen_at) move at most this often, so that a
# request that reads stays a read.
TOUCH_SECONDS = 60


def touch_due(credential: Credential, now: dt.datetime) -> bool:
    """Whether a request at `now` should note that the token was used (see `touch`)."""
    last = credential.last_used_at
    return last is None or (now - last).total_seconds() > TOUCH_SECONDS


def touch(session: Session, credential: Credential, now: dt.datetime) -> None:
    """Note that the token and its device were used at `now`."""
    session.execute(update(AuthToken).where(AuthToken.id == credential.token_id).values(last_used_at=now))
    session.execute(update(Device).where(Device.id == credential.device_id).values(last_seen_at=now))


def logout(session: Session, actor: Actor, token_id: uuid.UUID) -> None:
    session.execute(update(AuthToken).where(AuthToken.id == token_id).values(revoked_at=utcnow()))
    audit.record(session, actor, "logout", "device", actor.device_id)


def list_devices(session: Session, actor: Actor, user_id: uuid.UUID | None = None) -> list[Device]:
    query = select(Device).order_by(Device.created_at, Device.id)
    if not actor.reads_everything:
        query = query.where(Device.user_id == actor.user_id)
    elif user_id:
        query = query.where(Device.user_id == user_id)
    return list(session.scalars(query))


def revoke_device(session: Session, actor: Actor, device_id: uuid.UUID) -> Device:
    """Cut off a device (a lost phone): its tokens stop working at once."""
    device = session.get(Device, device_id)
    if device is None or (actor.role is not Role.admin and device.user_id != actor.user_id):
        raise not_found("Device")
    if device.revoked_at is None:
        now = utcnow()
        device.revoked_at = now
        device.revoked_by_id = actor.user_id
        session.execute(
            update(AuthToken)
            .where(AuthToken.device_id == device.id, AuthToken.revoked_at.is_(None))
            .values(revoked_at=now)
        )
        audit.record(session, actor, "revoke", "device", device.id)
    return device
