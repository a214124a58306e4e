"""The mail outbox: `enqueue` queues a message in the caller's transaction, once per dedupe key.

Whatever causes a mail (a reminder recorded, a digest recorded) commits together with the mail,
or neither does. The sender (server/mail/sender.py) sends queued rows later and retries them.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from server.db.followup_models import MailMessage
from server.db.types import new_id, utcnow
from server.db.upsert import insert_ignore, insert_ignore_many

log = logging.getLogger(__name__)

QUEUED, SENDING, SENT, FAILED = "queued", "sending", "sent", "failed"
STATUSES = (QUEUED, SENDING, SENT, FAILED)


def enqueue(
    session: Session,
    to: str | Iterable[str],
    subject: str,
    text: str,
    html: str | None = None,
    *,
    dedupe_key: str,
    headers: Mapping[str, str] | None = None,
    now: dt.datetime | None = None,
) -> bool:
    """Queue a message unless one with `dedupe_key` was ever queued; True when this call queued it.

    INSERT … ON CONFLICT DO NOTHING: two transactions racing on one key queue it once (the second
    waits for the first on PostgreSQL's unique index, then does nothing). Does not commit.
    """
    values = _values(to, subject, text, html, dedupe_key, headers, now or utcnow())
    queued = insert_ignore(session, MailMessage, values, ["dedupe_key"])
    if not queued:
        log.debug("mail %s already queued", dedupe_key)
    return queued


@dataclass(frozen=True)
class Outgoing:
    """One message for `enqueue_many`."""

    to: tuple[str, ...]
    subject: str
    text: str
    html: str | None
    dedupe_key: str
    headers: Mapping[str, str] | None = None


def enqueue_many(session: Session, messages: Iterable[Outgoing], now: dt.datetime | None = None) -> int:
    """`enqueue` for many messages in a few statements (a sweep's worth); how many were queued now."""
    now = now or utcnow()
    rows = [_values(m.to, m.subject, m.text, m.html, m.dedupe_key, m.headers, now) for m in messages]
    return len(insert_ignore_many(session, MailMessage, rows, ["dedupe_key"]))


def _values(
    to: str | Iterable[str],
    subject: str,
    text: str,
    html: str | None,
    dedupe_key: str,
    headers: Mapping[str, str] | None,
    now: dt.datetime,
) -> dict[str, object]:
    recipients = [to] if isinstance(to, str) else list(dict.fromkeys(to))
    recipients = [r.strip() for r in recipients if r and r.strip()]
    if not recipients:
        raise ValueError("a message needs at least one recipient")
    if not dedupe_key or len(dedupe_key) > 160:
        raise ValueError("dedupe_key must be 1 to 160 characters")
    return {
        "id": new_id(),
        "dedupe_key": dedupe_key,
        "to_addrs": recipients,
        "subject": subject,
        "text_body": text,
        "html_body": html,
        "headers": dict(headers) if headers else None,
        "status": QUEUED,
        "attempts": 0,
        "next_attempt_at": now,
        "created_at": now,
    }


def counts(session: Session) -> dict[str, int]:
    """Messages per status (every status present, zero when none)."""
    rows = session.execute(select(MailMessage.status, func.count()).group_by(MailMessage.status))
    found = {status: int(n) for status, n in rows}
    return {status: found.get(status, 0) for status in STATUSES} | found


def failed(session: Session, limit: int = 100) -> list[MailMessage]:
    """Messages that gave up after every attempt, newest first: what an admin must look at."""
    return list(
        session.scalars(
            select(MailMessage).where(MailMessage.status == FAILED).order_by(MailMessage.created_at.desc()).limit(limit)
        )
    )


def requeue_failed(session: Session, now: dt.datetime | None = None) -> int:
    """Put failed messages back in the queue with fresh attempts (after fixing the SMTP settings)."""
    result = session.execute(
        update(MailMessage)
        .where(MailMessage.status == FAILED)
        .values(status=QUEUED, attempts=0, next_attempt_at=now or utcnow())
    )
    return int(result.rowcount)  # type: ignore[attr-defined]
