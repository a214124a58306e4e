"""The follow-up sweep: the reminders (催办), sign reminders, escalations (督办) and progress checks
(进展跟踪) due now, each recorded once and mailed in the same transaction.

For each open referral on the lead department's move, `domain.followups.due_notices` says what
is due; the sweep inserts a `notices_sent` row first (its key is unique per referral) and only
if that insert took place queues the mail and, for a progress check, a follow-up task. So a
notice is never sent twice, whoever runs the sweep and however often. Nothing goes out on days
off: the domain rules return nothing then, and the sweep stops early.
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from flask import Flask
from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from schemas.enums import ProblemOutcome
from schemas.followups import FollowUpKind
from server.db import read_session, session_scope
from server.db.followup_models import CalendarOverride, NoticeSent, Referral
from server.db.types import utcnow
from server.db.upsert import insert_ignore_many
from server.domain.followups import (
    REMIND_BEFORE_WORKDAYS,
    Notice,
    NoticeKey,
    NoticeKind,
    due_notices,
    progress_check_due,
)
from server.domain.periods import local_date
from server.domain.referrals import ReferralState, ReferralStatus
from server.domain.workdays import WorkCalendar, end_of_day, missing_years
from server.mail import outbox, render
from server.services import followups
from server.services.calendar import load_calendar
from server.services.links import console_url, referral_url
from server.services.recipients import Directory, load_directory

log = logging.getLogger(__name__)

CHUNK = 1000  # referrals per transaction
REQUIREMENTS_SHOWN = 60  # characters of the requirements quoted in a notice
_LEAD_MOVE = (ReferralStatus.issued.value, ReferralStatus.signed.value)
_ANSWERED = (ReferralStatus.responded.value, ReferralStatus.closed.value)


@dataclass
class SweepReport:
    workday: bool = True
    referrals: int = 0  # looked at
    notices: int = 0  # recorded now
    mails: int = 0  # queued now
    progress_checks: int = 0  # follow-up tasks created now
    without_recipients: int = 0  # recorded, but nobody had an address
    by_kind: dict[str, int] = field(default_factory=dict)


def sweep(app: Flask, now: dt.datetime | None = None, *, remind_before: int | None = None) -> SweepReport:
    """Record and queue every notice due at `now` (default: the clock). Safe to run at any time, often."""
    with app.app_context():  # the mail's links are built from the console's routes (services/links.py)
        return _sweep(app, now, remind_before)


def _sweep(app: Flask, now: dt.datetime | None, remind_before: int | None) -> SweepReport:
    now = now or utcnow()
    if remind_before is None:
        remind_before = int(app.config.get("REMIND_BEFORE_WORKDAYS", REMIND_BEFORE_WORKDAYS))
    base_url = app.config["PUBLIC_BASE_URL"]
    with read_session(app) as session:
        calendar = load_calendar(session)
        directory = load_directory(session)
    report = SweepReport()
    today = local_date(now)
    if not calendar.is_workday(today):
        report.workday = False
        return report
    # Deadline notices start `remind_before` working days ahead; overdue ones are all in range.
    horizon = end_of_day(calendar.add_workdays(today, max(remind_before, 0)))
    chased = Referral.status.in_(_LEAD_MOVE) & or_(
        Referral.status == ReferralStatus.issued.value, Referral.deadline <= horizon
    )
    for rows, sent in _chunks(app, chased):
        due = [
            (row, notice)
            for row in rows
            for notice in due_notices(_state(row), now, calendar, sent[row.id], remind_before=remind_before)
        ]
        report.referrals += len(rows)
        _write(app, due, now, calendar, directory, base_url, report)
    coordinating = Referral.status.in_(_ANSWERED) & (Referral.outcome == ProblemOutcome.coordinating.value)
    for rows, sent in _chunks(app, coordinating):
        checks = []
        for row in rows:
            notice = progress_check_due(
                ProblemOutcome.coordinating, _next_date(row.answer), now, calendar, sent[row.id]
            )
            if notice is not None:
                checks.append((row, notice))
        report.referrals += len(rows)
        _write(app, checks, now, calendar, directory, base_url, report)
    if report.notices:
        log.info(
            "sweep: %d notices recorded, %d mails queued (%s)",
            report.notices,
            report.mails,
            ", ".join(f"{k} {n}" for k, n in sorted(report.by_kind.items())),
        )
    return report


def _chunks(app: Flask, condition: Any) -> Iterator[tuple[list[Any], dict[uuid.UUID, set[NoticeKey]]]]:
    """Matching referrals CHUNK at a time, with the notice keys already sent to them.

    The ids come first, in one query on the status index; each chunk is then read by id. Read
    without the write lock: most sweeps find nothing due, and on SQLite a write transaction would
    hold up the web server's writers for nothing.
    """
    with read_session(app) as session:
        ids = list(session.scalars(select(Referral.id).where(condition).order_by(Referral.id)))
    for i in range(0, len(ids), CHUNK):
        chunk = ids[i : i + CHUNK]
        with read_session(app) as session:
            rows = list(session.execute(select(*_COLUMNS).where(Referral.id.in_(chunk)).order_by(Referral.id)).all())
            sent = _sent(session, chunk)
        yield rows, sent


_COLUMNS = (
    Referral.id,
    Referral.number,
    Referral.status,
    Referral.lead_department_id,
    Referral.issued_at,
    Referral.workdays,
    Referral.original_deadline,
    Referral.deadline,
    Referral.signed_at,
    Referral.requirements,
    Referral.outcome,
    Referral.answer,
    Referral.version,
)


def _sent(session: Session, ids: list[uuid.UUID]) -> dict[uuid.UUID, set[NoticeKey]]:
    sent: dict[uuid.UUID, set[NoticeKey]] = {i: set() for i in ids}
    rows = session.execute(
        select(NoticeSent.referral_id, NoticeSent.kind, NoticeSent.threshold, NoticeSent.anchor).where(
            NoticeSent.referral_id.in_(ids)
        )
    )
    for referral_id, kind, threshold, anchor in rows:
        sent[referral_id].add((kind, threshold, anchor))
    return sent


def _state(row: Any) -> ReferralState:
    return ReferralState(
        status=ReferralStatus[row.status],  # member names are the values
        lead_department_id=row.lead_department_id,
        issued_at=row.issued_at,
        workdays=row.workdays,
        original_deadline=row.original_deadline,
        deadline=row.deadline,
        signed_at=row.signed_at,
    )


def _write(
    app: Flask,
    due: list[tuple[Any, Notice]],
    now: dt.datetime,
    calendar: WorkCalendar,
    directory: Directory,
    base_url: str,
    report: SweepReport,
) -> None:
    """Record the due notices of one chunk and queue their mail in one transaction.

    The mail is rendered first, without the write lock. Then the notices' keys go in with one
    INSERT … ON CONFLICT DO NOTHING RETURNING: only those this transaction inserted get their mail
    (and, for a progress check, a follow-up task). Referrals changed since they were read (signed,
    answered, extended) are left for the next sweep to see as they are.
    """
    if not due:
        return
    mails: dict[tuple[Any, ...], outbox.Outgoing | None] = {}
    for row, notice in due:
        kind, threshold, anchor = notice.key
        to = directory.for_audience(row.lead_department_id, notice.audience)
        mail = None
        if to:
            rendered = render.render("notice", notice_context(row, notice, now, calendar, directory, base_url))
            key = f"notice:{row.id}:{kind}:{threshold}:{anchor}"
            mail = outbox.Outgoing(tuple(to), rendered.subject, rendered.text, rendered.html, key)
        mails[(row.id, *notice.key)] = mail
    with session_scope(app) as session:
        ids = list({row.id for row, _notice in due})
        versions = dict(session.execute(select(Referral.id, Referral.version).where(Referral.id.in_(ids))).all())
        current = [(row, notice) for row, notice in due if versions.get(row.id) == row.version]
        values = [
            {"referral_id": row.id, "kind": n.key[0], "threshold": n.key[1], "anchor": n.key[2], "sent_at": now}
            for row, n in current
        ]
        inserted = insert_ignore_many(session, NoticeSent, values, ["referral_id", "kind", "threshold", "anchor"])
        queue = []
        for row, notice in current:
            noted = (row.id, *notice.key)
            if noted not in inserted:
                continue  # recorded by another sweep meanwhile
            report.notices += 1
            report.by_kind[notice.kind.value] = report.by_kind.get(notice.kind.value, 0) + 1
            mail = mails[noted]
            if mail is None:
                report.without_recipients += 1
                log.warning("%s %s for %s: nobody to send it to (no e-mail addresses)", *notice.key[:2], row.number)
            else:
                queue.append(mail)
            if notice.kind is NoticeKind.progress_check:
                # The department's task, on its list in the console until it reports progress.
                followups.create_followup(
                    session,
                    kind=FollowUpKind.progress_check,
                    title=f"进展跟踪：{row.number}",
                    department_id=row.lead_department_id,
                    referral_id=row.id,
                    due_on=local_date(now),
                )
                report.progress_checks += 1
        report.mails += outbox.enqueue_many(session, queue, now)


def _next_date(answer: dict[str, Any] | None) -> dt.date | None:
    value = (answer or {}).get("next_date")
    if isinstance(value, dt.date):
        return value
    try:
        return dt.date.fromisoformat(str(value)[:10]) if value else None
    except ValueError:
        log.warning("a coordinating answer with an unreadable next date: %r", value)
        return None


def notice_context(
    row: Any, notice: Notice, now: dt.datetime, calendar: WorkCalendar, directory: Directory, base_url: str
) -> dict[str, Any]:
    today = local_date(now)
    due = local_date(row.deadline)
    dept = directory.departments.get(row.lead_department_id)
    requirements = " ".join(str(row.requirements or "").split())
    if len(requirements) > REQUIREMENTS_SHOWN:
        requirements = requirements[: REQUIREMENTS_SHOWN - 1] + "…"
    return {
        "kind": notice.kind.value,
        "kind_label": notice.kind.label,
        "threshold": notice.threshold,
        "number": row.number,
        "department": dept.name if dept else "",
        "department_short": dept.short_name if dept else "",
        "head_name": dept.head_name if dept else None,
        "requirements": requirements,
        "issued_on": local_date(row.issued_at),
        "due_on": due,
        "days_left": calendar.workdays_between(today, due) if now <= row.deadline else 0,
        "days_over": calendar.overdue_workdays(row.deadline, now),
        "next_date": notice.anchor if notice.kind is NoticeKind.progress_check else None,
        "today": today,
        "url": referral_url(base_url, row.id),
    }


@dataclass
class CalendarCheck:
    missing: list[int]
    mails: int = 0


def check_calendar_data(app: Flask, now: dt.datetime | None = None) -> CalendarCheck:
    """Warn (log every day, mail the admins once per year) while a year within 60 days lacks holiday data.

    Upgrading chinese-calendar (a new release each November) or entering that year's holidays and
    make-up days as overrides ends it; until then the year counts Monday to Friday as working days.
    """
    now = now or utcnow()
    today = local_date(now)
    result = CalendarCheck(missing_years(today))
    if not result.missing:
        return result
    with session_scope(app) as session:
        overridden = _years_with_overrides(session, result.missing)
        directory = load_directory(session)
        for year in result.missing:
            log.warning(
                "the working-day calendar has no data for %d: holidays and make-up days there count as ordinary "
                "days. Upgrade chinese-calendar, or enter %d's holidays as calendar overrides.",
                year,
                year,
            )
            if not directory.admins:
                continue
            with app.app_context():  # the link to the calendar page (services/links.py)
                calendar_url = console_url(app.config["PUBLIC_BASE_URL"], "admin_calendar", year=year)
            mail = render.render(
                "calendar_warning",
                {"year": year, "today": today, "has_overrides": year in overridden, "calendar_url": calendar_url},
            )
            if outbox.enqueue(
                session,
                directory.admins,
                mail.subject,
                mail.text,
                mail.html,
                dedupe_key=f"calendar-missing:{year}",
                now=now,
            ):
                result.mails += 1
    return result


def _years_with_overrides(session: Session, years: Iterable[int]) -> set[int]:
    found = set()
    for year in years:
        first = session.scalar(
            select(CalendarOverride.day)
            .where(CalendarOverride.day >= dt.date(year, 1, 1), CalendarOverride.day <= dt.date(year, 12, 31))
            .limit(1)
        )
        if first is not None:
            found.add(year)
    return found
