"""Exactly one scheduler acts at a time, however many are started on however many hosts.

PostgreSQL: a session-level `pg_try_advisory_lock` taken on a connection of its own (not from the
pool, autocommit, so no transaction ever ends it), held for the life of the process and re-checked
in `pg_locks`. The server drops it the moment that connection dies (a crash, a kill, a network cut
noticed by TCP keepalives), so a standby takes over. It needs a real session: connect the scheduler
directly or through a session-pooling proxy, never PgBouncer in transaction mode.

SQLite: a lease row in `scheduler_leases` (holder, expires_at), renewed every third of its length
(SCHEDULER_LEASE_SECONDS). Another process takes over when the lease has run out, or at once when
the holder is a process on this host that no longer exists. A holder that finds the lease taken
when renewing has lost it and stops acting.

Either way, the lock only keeps the work from being done twice for nothing: every job is
idempotent on its own (unique rows recorded before sending), so even two leaders for a moment
(a paused process waking up after losing its lease) send nothing twice.
"""

from __future__ import annotations

import abc
import contextlib
import datetime as dt
import hashlib
import logging
import os
import socket
import time
import uuid

from flask import Flask
from sqlalchemy import Connection, create_engine, delete, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.pool import NullPool

from server.db import read_session, session_scope
from server.db.followup_models import SchedulerLease
from server.db.types import utcnow

log = logging.getLogger(__name__)

LOCK_NAME = "fieldvisit.scheduler"


def _lock_key(name: str) -> int:
    """A stable positive 63-bit advisory-lock key from a name."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big") >> 1


class Leader(abc.ABC):
    """`acquire()` tries to become (or stay) the leader; `check()` says whether we still are, every
    `check_interval` seconds; `release()` gives it up. `held` is what the last call found."""

    check_interval: float = 10.0
    held: bool = False

    @abc.abstractmethod
    def acquire(self) -> bool: ...

    @abc.abstractmethod
    def check(self) -> bool: ...

    @abc.abstractmethod
    def release(self) -> None: ...

    def describe(self) -> str:
        return type(self).__name__


class AdvisoryLockLeader(Leader):
    """PostgreSQL: a session advisory lock on a dedicated, unpooled, autocommit connection."""

    def __init__(self, url: str, name: str = LOCK_NAME, check_interval: float = 10.0) -> None:
        self.key = _lock_key(name)
        self.check_interval = check_interval
        self._engine = create_engine(
            url,
            poolclass=NullPool,
            isolation_level="AUTOCOMMIT",
            connect_args={
                "application_name": "fieldvisit-scheduler",
                "connect_timeout": 10,
                # Notice a dead peer within about a minute, on both sides.
                "keepalives": 1,
                "keepalives_idle": 30,
                "keepalives_interval": 10,
                "keepalives_count": 3,
            },
        )
        self._conn: Connection | None = None

    def describe(self) -> str:
        return f"PostgreSQL advisory lock {self.key}"

    def acquire(self) -> bool:
        if self._conn is not None and self.check():
            return True
        self._close()
        try:
            conn = self._engine.connect()
        except SQLAlchemyError as e:
            log.warning("scheduler lock: cannot reach the database: %s", e.__class__.__name__)
            self.held = False
            return False
        try:
            got = bool(conn.scalar(text("SELECT pg_try_advisory_lock(:key)"), {"key": self.key}))
        except SQLAlchemyError:
            conn.close()
            self.held = False
            return False
        if got:
            self._conn = conn
        else:
            conn.close()
        self.held = got
        return got

    def check(self) -> bool:
        if self._conn is None:
            self.held = False
            return False
        try:
            found = self._conn.scalar(
                text(
                    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid() "
                    "AND granted AND classid = :hi AND objid = :lo AND objsubid = 1"
                ),
                {"hi": self.key >> 32, "lo": self.key & 0xFFFFFFFF},
            )
        except SQLAlchemyError as e:
            log.error("scheduler lock: lost the lock's connection (%s)", e.__class__.__name__)
            self._close()
            self.held = False
            return False
        self.held = bool(found)
        if not self.held:
            self._close()
        return self.held

    def release(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(SQLAlchemyError):
                self._conn.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": self.key})
        self._close()
        self.held = False

    def _close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(SQLAlchemyError):
                conn.close()

    def dispose(self) -> None:
        self.release()
        self._engine.dispose()


def _alive_here(holder: str) -> bool | None:
    """Whether the holder process is running: None when it is on another host (we cannot tell)."""
    host, _, rest = holder.partition(":")
    pid_text = rest.partition(":")[0]
    if host != socket.gethostname() or not pid_text.isdigit():
        return None
    try:
        os.kill(int(pid_text), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class LeaseLeader(Leader):
    """SQLite (or any database): a lease row renewed every third of `ttl` seconds."""

    def __init__(self, app: Flask, name: str = "scheduler", ttl: float = 60.0) -> None:
        self.app = app
        self.name = name
        self.ttl = dt.timedelta(seconds=ttl)
        self.check_interval = max(ttl / 3, 0.05)
        self.holder = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._renewed: float | None = None

    def describe(self) -> str:
        return f"lease {self.name!r} as {self.holder}"

    def acquire(self) -> bool:
        try:
            self.held = self._renew()
        except SQLAlchemyError as e:
            log.warning("scheduler lease: %s", e.__class__.__name__)
            self.held = False
        self._renewed = time.monotonic() if self.held else None
        return self.held

    def check(self) -> bool:
        """Renewing is checking: it fails once someone else holds the lease. A lease renewed less
        than a third of its length ago is still ours (nobody may take it before it expires)."""
        if self.held and self._renewed is not None and time.monotonic() - self._renewed < self.check_interval:
            return True
        return self.acquire()

    def _taken(self, lease: SchedulerLease | None, now: dt.datetime) -> bool:
        """Held by another process that may still be alive and whose lease has not run out."""
        if lease is None or lease.holder == self.holder:
            return False
        return lease.expires_at > now and _alive_here(lease.holder) is not False

    def _renew(self) -> bool:
        now = utcnow()
        # A standby looks without the write lock (it polls often; the leader's jobs write).
        with read_session(self.app) as session:
            if self._taken(session.get(SchedulerLease, self.name), now):
                return False
        with session_scope(self.app) as session:
            lease = session.scalar(select(SchedulerLease).where(SchedulerLease.name == self.name))
            if lease is None:
                session.add(SchedulerLease(name=self.name, holder=self.holder, expires_at=now + self.ttl))
                return True
            if lease.holder != self.holder:
                expired = lease.expires_at <= now
                gone = _alive_here(lease.holder) is False
                if not (expired or gone):
                    return False
                log.warning(
                    "scheduler lease: taking over from %s (%s)", lease.holder, "expired" if expired else "process gone"
                )
                lease.holder = self.holder
            lease.expires_at = now + self.ttl
            return True

    def release(self) -> None:
        with contextlib.suppress(SQLAlchemyError), session_scope(self.app) as session:
            session.execute(
                delete(SchedulerLease).where(SchedulerLease.name == self.name, SchedulerLease.holder == self.holder)
            )
        self.held = False


def leader_for(app: Flask) -> Leader:
    """The leader lock that fits the app's database."""
    url = app.config["DATABASE_URL"]
    ttl = float(app.config.get("SCHEDULER_LEASE_SECONDS") or 60)
    if make_url(url).get_backend_name() == "postgresql":
        return AdvisoryLockLeader(url, check_interval=max(ttl / 3, 0.05))
    return LeaseLeader(app, ttl=ttl)
