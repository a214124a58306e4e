"""The sender: claim due outbox rows, hand them to the transport, record what happened.

    queued ──claim──▶ sending ──accepted──▶ sent
      ▲                  │ refused / down / timeout
      └── backoff ◀──────┤ (attempts < MAIL_MAX_ATTEMPTS)
                         └──────────────────▶ failed (logged; `flask --app wsgi mail-status`)

A claim commits `sending` (with attempts + 1 and a lease in `next_attempt_at`) before any SMTP
traffic, and results commit right after their messages, at most RECORD_EVERY (20) messages or
RECORD_SECONDS (1 s) later. So a crash can leave rows `sending` only for those last few
messages; when their lease runs out they are claimed again and sent again with the same
Message-ID (the server may or may not have taken them: SMTP cannot say, see RFC 1047). We
chose that over marking them failed: a duplicate that mail clients fold by Message-ID is
better than a reminder silently lost. Nothing else is ever sent twice: a row is claimed by
one sender at a time (FOR UPDATE SKIP LOCKED on PostgreSQL, the write lock on SQLite), and a
result is recorded only if the row is still the claim it was (same status and attempt).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import logging
import queue
import time
import uuid
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, cast

from flask import Flask
from sqlalchemy import Table, and_, bindparam, or_, select, update
from sqlalchemy.orm import Session

from server.db import read_session, session_scope
from server.db.followup_models import MailMessage
from server.db.types import utcnow
from server.mail import render
from server.mail.outbox import FAILED, QUEUED, SENDING, SENT
from server.mail.transport import DeliveryError, Transport, from_config

log = logging.getLogger(__name__)

# Results are written together for up to this many messages or seconds (see _Results).
RECORD_EVERY = 20
RECORD_SECONDS = 1.0


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how long to try: MAIL_MAX_ATTEMPTS, MAIL_RETRY_SECONDS doubling up to MAIL_RETRY_MAX_SECONDS."""

    max_attempts: int = 10
    first_delay: dt.timedelta = dt.timedelta(minutes=5)
    max_delay: dt.timedelta = dt.timedelta(hours=6)
    # How long a claim lasts: a row still `sending` after this was abandoned by a crashed sender.
    lease: dt.timedelta = dt.timedelta(minutes=10)

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> RetryPolicy:
        return cls(
            max_attempts=max(1, int(config.get("MAIL_MAX_ATTEMPTS") or cls.max_attempts)),
            first_delay=dt.timedelta(seconds=int(config.get("MAIL_RETRY_SECONDS") or 300)),
            max_delay=dt.timedelta(seconds=int(config.get("MAIL_RETRY_MAX_SECONDS") or 6 * 3600)),
        )

    def delay(self, attempts: int) -> dt.timedelta:
        """The wait after the `attempts`-th failed attempt: 5 min, 10, 20, 40 … capped at max_delay."""
        return min(self.first_delay * 2 ** max(attempts - 1, 0), self.max_delay)


@dataclass
class SendReport:
    sent: int = 0
    retrying: int = 0
    failed: int = 0
    recovered: int = 0  # claims a crashed sender left behind, taken over
    lost_claims: int = 0  # results not recorded because another sender had taken the row over


@dataclass(frozen=True)
class _Claim:
    id: uuid.UUID
    attempts: int
    to: list[str]
    subject: str
    text: str
    html: str | None
    headers: dict[str, str]
    created_at: dt.datetime


def send_due(
    app: Flask,
    *,
    now: dt.datetime | None = None,
    transport: Transport | None = None,
    batch: int = 100,
    limit: int | None = None,
) -> SendReport:
    """Send every message due at `now` (default: the clock), in batches; returns what happened.

    `now` is fixed for the whole call when given (tests and simulations); otherwise each step
    reads the clock. `limit` stops after that many messages.
    """
    config = app.config
    policy = RetryPolicy.from_config(config)
    mail_from = config["MAIL_FROM"]
    report = SendReport()
    done = 0
    if not _anything_due(app, now or utcnow()):
        return report  # the usual case: no write transaction, no connection to the SMTP server
    # Several connections at once when sending over SMTP: most of a message's time is spent
    # waiting for the server's replies, which overlap. A given transport (tests) is used alone.
    if transport is not None:
        transports = [transport]
    else:
        n = max(1, int(config.get("SMTP_CONNECTIONS") or 1)) if config.get("MAIL_TRANSPORT") == "smtp" else 1
        transports = [from_config(config, app.instance_path) for _ in range(n)]
    idle: queue.SimpleQueue[Transport] = queue.SimpleQueue()
    for t in transports:
        idle.put(t)
    results = _Results(app, report)

    def send(claim: _Claim, claimed_at: float) -> tuple[_Claim, tuple[dict[str, Any], str] | None]:
        if time.monotonic() - claimed_at > policy.lease.total_seconds() / 2:
            return claim, None  # a slow server: give it back before its lease could run out under us
        t = idle.get()
        try:
            return claim, _send_one(t, claim, mail_from, policy, now)
        finally:
            idle.put(t)

    with contextlib.ExitStack() as stack:
        for t in transports:
            stack.enter_context(t)
        pool = stack.enter_context(ThreadPoolExecutor(len(transports), thread_name_prefix="mail"))
        while limit is None or done < limit:
            size = batch if limit is None else min(batch, limit - done)
            claimed_at = time.monotonic()
            with session_scope(app) as session:
                claims = _claim(session, now or utcnow(), policy, size, report)
            if not claims:
                break
            unsent = []
            try:
                # Results are written here, in this thread only, as they come.
                for claim, outcome in pool.map(send, claims, [claimed_at] * len(claims)):
                    if outcome is None:
                        unsent.append(claim)
                    else:
                        results.add(claim, *outcome)
                        done += 1
            finally:
                results.flush()
                if unsent:
                    _release(app, unsent, now)
            if len(claims) < size:
                break
    if report.sent or report.retrying or report.failed:
        log.info(
            "mail: %d sent, %d to retry, %d failed, %d taken over",
            report.sent,
            report.retrying,
            report.failed,
            report.recovered,
        )
    return report


def _anything_due(app: Flask, now: dt.datetime) -> bool:
    with read_session(app) as session:
        return session.scalar(select(MailMessage.id).where(_due(now)).limit(1)) is not None


def _due(now: dt.datetime) -> Any:
    return or_(
        and_(MailMessage.status == QUEUED, MailMessage.next_attempt_at <= now),
        # A claim whose lease ran out: its sender crashed or hung mid-send.
        and_(MailMessage.status == SENDING, MailMessage.next_attempt_at <= now),
    )


def _claim(session: Session, now: dt.datetime, policy: RetryPolicy, size: int, report: SendReport) -> list[_Claim]:
    query = select(MailMessage).where(_due(now)).order_by(MailMessage.next_attempt_at, MailMessage.id).limit(size)
    if session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    claims = []
    for row in session.scalars(query):
        if row.status == SENDING:
            report.recovered += 1
            log.warning(
                "mail %s (%s) was left sending by a sender that stopped; sending it again with the same Message-ID",
                row.id,
                row.dedupe_key,
            )
        row.status = SENDING
        row.attempts += 1
        row.next_attempt_at = now + policy.lease
        claims.append(
            _Claim(
                row.id,
                row.attempts,
                list(row.to_addrs),
                row.subject,
                row.text_body,
                row.html_body,
                dict(row.headers or {}),
                row.created_at,
            )
        )
    return claims


def _send_one(
    transport: Transport, claim: _Claim, mail_from: str, policy: RetryPolicy, now: dt.datetime | None
) -> tuple[dict[str, Any], str]:
    """Hand one message over; the values to record on its row and what became of it."""
    headers = {k: str(v) for k, v in claim.headers.items()}
    message_id = headers.pop("Message-ID", None) or render.message_id(str(claim.id), mail_from)
    try:
        message = render.build(
            mail_from=mail_from,
            to=claim.to,
            subject=claim.subject,
            text=claim.text,
            html=claim.html,
            date=claim.created_at,
            message_id=message_id,
            headers=headers,
        )
        refused = transport.send(message, mail_from, claim.to)
    except (DeliveryError, ValueError) as e:
        error = str(e)
        if claim.attempts >= policy.max_attempts:
            log.error("mail %s failed for good after %d attempts: %s", claim.id, claim.attempts, error)
            return {"status": FAILED, "last_error": error}, FAILED
        wait = policy.delay(claim.attempts)
        log.warning("mail %s not sent (attempt %d), retrying in %s: %s", claim.id, claim.attempts, wait, error)
        return {"status": QUEUED, "next_attempt_at": (now or utcnow()) + wait, "last_error": error}, QUEUED
    note = None
    if refused:
        note = "refused: " + "; ".join(f"{rcpt}: {reply}" for rcpt, reply in refused.items())
        log.warning("mail %s accepted, but not for every recipient: %s", claim.id, note)
    return {"status": SENT, "sent_at": now or utcnow(), "last_error": note}, SENT


class _Results:
    """Results waiting to be written: together, every RECORD_EVERY messages or RECORD_SECONDS.

    One commit per message would cost a disk flush each (on SQLite, with synchronous=FULL, most of
    the time a batch takes); grouping bounds what a crash can leave unrecorded, and so send again
    with the same Message-ID, to those few messages.
    """

    def __init__(self, app: Flask, report: SendReport) -> None:
        self.app = app
        self.report = report
        self.pending: list[tuple[_Claim, dict[str, Any], str]] = []
        self.since = time.monotonic()

    def add(self, claim: _Claim, values: dict[str, Any], outcome: str) -> None:
        if not self.pending:
            self.since = time.monotonic()
        self.pending.append((claim, values, outcome))
        if len(self.pending) >= RECORD_EVERY or time.monotonic() - self.since >= RECORD_SECONDS:
            self.flush()

    def flush(self) -> None:
        if not self.pending:
            return
        pending, self.pending = self.pending, []
        with session_scope(self.app) as session:
            recorded = [_record(session, claim, values) for claim, values, _outcome in pending]
        for (_claim, _values, outcome), ok in zip(pending, recorded, strict=True):
            if not ok:
                self.report.lost_claims += 1
            elif outcome == SENT:
                self.report.sent += 1
            elif outcome == FAILED:
                self.report.failed += 1
            else:
                self.report.retrying += 1


_OUTBOX = cast(Table, MailMessage.__table__)


@functools.cache
def _update_claimed(columns: tuple[str, ...]) -> Any:
    """UPDATE one claimed row (if it is still that claim) setting `columns`: built once, then reused."""
    c = _OUTBOX.c
    return (
        update(_OUTBOX)
        .where(c.id == bindparam("claim_id"), c.status == SENDING, c.attempts == bindparam("claim_attempts"))
        .values({name: bindparam(name) for name in columns})
    )


def _record(session: Session, claim: _Claim, values: dict[str, Any]) -> bool:
    """Record a result only if the row is still this claim (no other sender took it over)."""
    stmt = _update_claimed(tuple(sorted(values)))
    result = session.execute(stmt, {"claim_id": claim.id, "claim_attempts": claim.attempts, **values})
    recorded = result.rowcount == 1  # type: ignore[attr-defined]
    if not recorded:
        log.warning("mail %s: its claim was taken over by another sender; result not recorded", claim.id)
    return bool(recorded)


def _release(app: Flask, claims: list[_Claim], now: dt.datetime | None) -> None:
    """Give unsent claims back, as if never claimed."""
    with session_scope(app) as session:
        for claim in claims:
            values = {"status": QUEUED, "attempts": claim.attempts - 1, "next_attempt_at": now or utcnow()}
            _record(session, claim, values)
