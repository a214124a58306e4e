"""The scheduled jobs: module-level functions of (app, now) that call the services the API uses.

Each is idempotent: run it twice, or on two hosts at once, and nothing is sent twice, because
what it does is recorded in a unique row in the same transaction as the mail it queues.
`now` is the clock unless given (tests and `flask --app wsgi scheduler --once --now …`).
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

from flask import Flask

from server.db import session_scope
from server.mail import sender
from server.services import digests, notices

log = logging.getLogger(__name__)


def sweep(app: Flask, now: dt.datetime | None = None) -> Any:
    """Reminders (催办), sign reminders, escalations (督办) and progress checks due now."""
    return notices.sweep(app, now)


def weekly_digest(app: Flask, now: dt.datetime | None = None) -> Any:
    """This week's digest for every department and the bureau summary for supervisors (Monday 08:00)."""
    return digests.send_weekly(app, now)


def send_mail(app: Flask, now: dt.datetime | None = None) -> Any:
    """Hand due messages in the outbox to the transport; retry failures with backoff."""
    return sender.send_due(app, now=now)


def calendar_check(app: Flask, now: dt.datetime | None = None) -> Any:
    """Warn while a year within 60 days has no holiday data (log daily, mail the admins once)."""
    return notices.check_calendar_data(app, now)


def cleanup_uploads(app: Flask, now: dt.datetime | None = None) -> Any:
    """Forget tus uploads nobody touched for a day, with their partial files."""
    try:
        from server.services import attachments
    except ImportError:  # pragma: no cover - before the uploads service exists
        return None
    remove = getattr(attachments, "remove_abandoned_uploads", None)
    if remove is None:  # pragma: no cover
        return None
    storage = attachments.Storage(app.config.get("INSTANCE_PATH") or app.instance_path)
    with session_scope(app) as session:
        return remove(session, storage)
