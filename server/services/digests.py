"""The weekly digest (周报): each department's referrals, most actionable first, and the bureau
summary for supervisors with per-department figures (办结率, 按时办结率, 满意率, 逾期件).

`send_weekly` runs at 08:00 (Beijing) on the first working day of each ISO week — Monday, unless
it is a holiday: for each department it records a `digests_sent` row (department, ISO week) and,
when there is anything to report, queues the mail in the same transaction, so a digest is never
sent twice, even when the job is run again or killed halfway. `preview`
renders any department's (or the bureau's) digest for any week without recording anything, for
`flask --app wsgi digest-preview` and the console.

A digest of week W is the one sent at the start of W: the lists are as of that moment, "closed"
and "satisfaction" cover the seven days (Monday to Sunday) before W's Monday.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from flask import Flask
from sqlalchemy import case, func, select, true
from sqlalchemy.orm import Session

from schemas.enums import ProblemOutcome
from server.db import read_session, session_scope
from server.db.followup_models import DigestSent, FollowUp, Referral
from server.db.types import utcnow
from server.db.upsert import insert_ignore
from server.domain.followups import sign_deadline
from server.domain.periods import SHANGHAI, day_start, local_date
from server.domain.referrals import OPEN_STATUSES, ReferralState, ReferralStatus
from server.domain.workdays import WorkCalendar, end_of_day
from server.mail import outbox, render
from server.services.calendar import load_calendar
from server.services.links import referral_url, referrals_url
from server.services.recipients import DepartmentInfo, Directory, load_directory

log = logging.getLogger(__name__)

SEND_AT = dt.time(8, 0)  # Monday, Beijing time
SOON_WORKDAYS = 5
ITEMS_SHOWN = 8  # per section: short enough for a phone; the rest is a link away
SUPERVISORS = "supervisors"  # digests_sent.recipient of the bureau summary
WEEK_DONE = "*"  # digests_sent.recipient marking a week's run complete
TITLE_CHARS = 40
_WEEK = re.compile(r"^\s*(\d{4})-?W(\d{1,2})\s*$", re.IGNORECASE)
_SATISFIED = ("satisfied", "basically_satisfied")
SATISFACTION_LABELS = {"satisfied": "满意", "basically_satisfied": "基本满意", "unsatisfied": "不满意"}
_LEAD_MOVE = (ReferralStatus.issued.value, ReferralStatus.signed.value)


# --- weeks -------------------------------------------------------------------------------------


def iso_week(day: dt.date) -> str:
    year, week, _ = day.isocalendar()
    return f"{year}-W{week:02d}"


def parse_week(text: str) -> str:
    """ "2026-W48" (also "2026W48", "2026-w48") → "2026-W48"; ValueError for anything else."""
    match = _WEEK.match(text or "")
    if not match:
        raise ValueError(f"not an ISO week like 2026-W48: {text!r}")
    year, week = int(match[1]), int(match[2])
    try:
        dt.date.fromisocalendar(year, week, 1)
    except ValueError as e:
        raise ValueError(f"{year} has no week {week}") from e
    return f"{year}-W{week:02d}"


def week_monday(week: str) -> dt.date:
    year, number = parse_week(week).split("-W")
    return dt.date.fromisocalendar(int(year), int(number), 1)


def send_moment(week: str) -> dt.datetime:
    """Monday 08:00 Beijing time of `week`, in UTC: when its digest goes out."""
    return dt.datetime.combine(week_monday(week), SEND_AT, SHANGHAI).astimezone(dt.UTC)


def week_label(week: str) -> str:
    monday = week_monday(week)
    year, number = week.split("-W")
    return f"{year}年第{int(number)}周（{monday.month}月{monday.day}日）"


# --- what a digest holds -----------------------------------------------------------------------


@dataclass(frozen=True)
class Item:
    """One referral as a digest line."""

    id: uuid.UUID
    number: str
    title: str
    url: str
    department: str
    issued_on: dt.date
    due_on: dt.date
    days_over: int = 0  # working days past the deadline
    days_left: int | None = None  # working days to the due day
    sign_by: dt.date | None = None
    sign_late: bool = False
    requested_until: dt.date | None = None
    outcome: str | None = None  # label
    on_time: bool | None = None
    closed_on: dt.date | None = None


@dataclass
class Section:
    key: str
    title: str
    items: list[Item] = field(default_factory=list)
    total: int = 0
    more_url: str | None = None

    @property
    def more(self) -> int:
        return max(self.total - len(self.items), 0)


@dataclass
class DepartmentDigest:
    department: DepartmentInfo
    week: str
    week_label: str
    as_of: dt.datetime
    sections: list[Section]
    satisfaction: dict[str, int]
    unsatisfied: list[Item]
    awaiting_review: int
    year_rate: str | None  # 满意率 this year

    def section(self, key: str) -> Section:
        return next(s for s in self.sections if s.key == key)

    @property
    def empty(self) -> bool:
        return (
            not any(s.total for s in self.sections) and not sum(self.satisfaction.values()) and not self.awaiting_review
        )


@dataclass(frozen=True)
class DepartmentFigures:
    """One row of the bureau summary (this year's referrals of one lead department)."""

    department: str
    code: str
    issued: int
    closed: int
    on_time: int
    overdue: int
    revisits: int
    satisfied: int

    @property
    def closed_rate(self) -> str:
        return _rate(self.closed, self.issued)

    @property
    def on_time_rate(self) -> str:
        return _rate(self.on_time, self.closed)

    @property
    def satisfied_rate(self) -> str:
        return _rate(self.satisfied, self.revisits)


@dataclass
class BureauDigest:
    week: str
    week_label: str
    as_of: dt.datetime
    year: int
    totals: DepartmentFigures
    rows: list[DepartmentFigures]
    sections: list[Section]  # what waits for a supervisor, then the most overdue
    new_last_week: int
    closed_last_week: int
    list_url: str

    @property
    def pending(self) -> int:
        """What waits for a supervisor's decision: returns, extensions, answers to review."""
        return sum(s.total for s in self.sections if s.key in ("returns", "extensions", "review"))

    def section(self, key: str) -> Section:
        return next(s for s in self.sections if s.key == key)

    @property
    def sentence(self) -> str:
        """The article's way of putting it: 截至…，共交办…件，已办结…件，办结率…。"""
        t = self.totals
        day = local_date(self.as_of)
        parts = [
            f"截至{day.month}月{day.day}日，今年共交办问题{t.issued}件",
            f"已办结{t.closed}件，办结率{t.closed_rate}",
            f"其中按时办结{t.on_time}件，按时办结率{t.on_time_rate}",
        ]
        if t.revisits:
            parts.append(f"回访{t.revisits}件，满意率{t.satisfied_rate}")
        parts.append(f"目前逾期未办结{t.overdue}件" if t.overdue else "目前无逾期件")
        return "，".join(parts) + "。"


def _rate(part: int, whole: int) -> str:
    return f"{part * 100 / whole:.1f}%" if whole else "—"


def _title(text: str | None) -> str:
    flat = " ".join(str(text or "").split())
    return flat if len(flat) <= TITLE_CHARS else flat[: TITLE_CHARS - 1] + "…"


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
    Referral.requested_until,
    Referral.outcome,
    Referral.on_time,
    Referral.closed_at,
    Referral.responded_at,
)


class _Builder:
    """Builds Items from referral rows for one moment."""

    def __init__(
        self, as_of: dt.datetime, calendar: WorkCalendar, directory: Directory, base_url: str, *, departments: bool
    ) -> None:
        self.as_of = as_of
        self.departments = departments  # name the lead department on each line (the bureau's summary)
        self.today = local_date(as_of)
        self.calendar = calendar
        self.directory = directory
        self.base_url = base_url

    def item(self, row: Any) -> Item:
        due = local_date(row.deadline)
        dept = self.directory.departments.get(row.lead_department_id)
        over = self.calendar.overdue_workdays(row.deadline, self.as_of)
        left = self.calendar.workdays_between(self.today, due) if self.as_of <= row.deadline else None
        sign_by = sign_late = None
        if row.status == ReferralStatus.issued.value:
            state = ReferralState(
                status=ReferralStatus.issued,
                lead_department_id=row.lead_department_id,
                issued_at=row.issued_at,
                workdays=row.workdays,
                original_deadline=row.original_deadline,
                deadline=row.deadline,
            )
            signing = sign_deadline(state, self.calendar)
            sign_by, sign_late = local_date(signing), self.as_of > signing
        return Item(
            id=row.id,
            number=row.number,
            title=_title(row.requirements),
            url=referral_url(self.base_url, row.id),
            department=(dept.short_name if dept else "") if self.departments else "",
            issued_on=local_date(row.issued_at),
            due_on=due,
            days_over=over,
            days_left=left,
            sign_by=sign_by,
            sign_late=bool(sign_late),
            requested_until=row.requested_until,
            outcome=ProblemOutcome.labels().get(row.outcome, row.outcome) if row.outcome else None,
            on_time=row.on_time,
            closed_on=local_date(row.closed_at) if row.closed_at else None,
        )


# --- the facts a run of digests needs, read once ----------------------------------------------

_OPEN = tuple(st.value for st in OPEN_STATUSES)


@dataclass
class Facts:
    """Everything the digests of one week show, read in a few queries for all departments at once
    (or for one, for a preview), then sliced per department in memory: the open referrals, those
    closed in the week before, and the revisits."""

    as_of: dt.datetime
    week: str
    open: dict[uuid.UUID, list[Any]] = field(default_factory=dict)
    closed: dict[uuid.UUID, list[Any]] = field(default_factory=dict)
    week_revisits: dict[uuid.UUID, Counter[str]] = field(default_factory=dict)
    unsatisfied: dict[uuid.UUID, list[Any]] = field(default_factory=dict)
    year_revisits: dict[uuid.UUID, Counter[str]] = field(default_factory=dict)

    def all_open(self) -> list[Any]:
        return [r for rows in self.open.values() for r in rows]


def read_facts(session: Session, week: str, as_of: dt.datetime, department_id: uuid.UUID | None = None) -> Facts:
    facts = Facts(as_of, week)
    only = (Referral.lead_department_id == department_id) if department_id else true()
    period_end = day_start(week_monday(week))
    period_start = period_end - dt.timedelta(days=7)
    for row in session.execute(select(*_COLUMNS).where(only, Referral.status.in_(_OPEN))):
        facts.open.setdefault(row.lead_department_id, []).append(row)
    closed = session.execute(
        select(*_COLUMNS).where(
            only,
            Referral.status == ReferralStatus.closed.value,
            Referral.closed_at >= period_start,
            Referral.closed_at < period_end,
        )
    )
    for row in closed:
        facts.closed.setdefault(row.lead_department_id, []).append(row)
    year_start = day_start(dt.date(local_date(as_of).year, 1, 1))
    revisit = (FollowUp.kind == "revisit") & FollowUp.satisfaction.is_not(None)

    def counted(start: dt.datetime, end: dt.datetime) -> dict[uuid.UUID, Counter[str]]:
        found: dict[uuid.UUID, Counter[str]] = {}
        rows = session.execute(
            select(Referral.lead_department_id, FollowUp.satisfaction, func.count())
            .join(Referral, Referral.id == FollowUp.referral_id)
            .where(only, revisit, FollowUp.completed_at >= start, FollowUp.completed_at < end)
            .group_by(Referral.lead_department_id, FollowUp.satisfaction)
        )
        for dept, answer, n in rows:
            found.setdefault(dept, Counter())[str(answer)] += int(n)
        return found

    facts.year_revisits = counted(year_start, as_of)
    facts.week_revisits = counted(period_start, period_end)
    unsatisfied = session.execute(
        select(*_COLUMNS, FollowUp.completed_at)
        .join(FollowUp, FollowUp.referral_id == Referral.id)
        .where(
            only,
            revisit,
            FollowUp.satisfaction == "unsatisfied",
            FollowUp.completed_at >= period_start,
            FollowUp.completed_at < period_end,
        )
    )
    for row in unsatisfied:
        facts.unsatisfied.setdefault(row.lead_department_id, []).append(row)
    return facts


def _section(b: _Builder, key: str, title: str, rows: list[Any], order: Any, more_url: str | None) -> Section:
    chosen = sorted(rows, key=order)
    items = [b.item(r) for r in chosen[:ITEMS_SHOWN]]
    return Section(key, title, items, len(chosen), more_url if len(chosen) > ITEMS_SHOWN else None)


def _by(*fields: str) -> Any:
    return lambda row: tuple(getattr(row, f) for f in fields)


def department_digest(
    session: Session | None,
    department_id: uuid.UUID,
    week: str,
    *,
    base_url: str,
    as_of: dt.datetime | None = None,
    calendar: WorkCalendar | None = None,
    directory: Directory | None = None,
    facts: Facts | None = None,
) -> DepartmentDigest:
    """One department's digest of `week`, as of `as_of` (default: that week's Monday 08:00).

    `facts` from `read_facts` (all departments) saves the queries when building many.
    """
    week = parse_week(week)
    as_of = as_of or (facts.as_of if facts else send_moment(week))
    if calendar is None or directory is None or facts is None:
        if session is None:
            raise ValueError("a session is needed unless calendar, directory and facts are given")
        calendar = calendar or load_calendar(session)
        directory = directory or load_directory(session)
        facts = facts or read_facts(session, week, as_of, department_id)
    dept = directory.departments.get(department_id)
    if dept is None:
        raise LookupError(f"no active department {department_id}")
    b = _Builder(as_of, calendar, directory, base_url, departments=False)
    soon = end_of_day(calendar.add_workdays(b.today, SOON_WORKDAYS))
    code = dept.code
    s = ReferralStatus
    rows = facts.open.get(department_id, [])
    lead_move = [r for r in rows if r.status in _LEAD_MOVE]  # the department's move: signing or answering

    def url(state: str) -> str:
        return referrals_url(base_url, department=code, state=state)

    sections = [
        _section(b, "awaiting_sign", "待签收", [r for r in rows if r.status == s.issued.value],
                 _by("issued_at", "id"), url("issued")),
        _section(b, "overdue", "已逾期", [r for r in lead_move if r.deadline < as_of],
                 _by("deadline", "id"), url("overdue")),
        _section(b, "due_soon", f"{SOON_WORKDAYS}个工作日内到期", [r for r in lead_move if as_of <= r.deadline <= soon],
                 _by("deadline", "id"), url("due_soon")),
        _section(b, "extensions", "延期申请待审核", [r for r in rows if r.status == s.extension_requested.value],
                 _by("deadline", "id"), url("extension_requested")),
        _section(b, "returns", "退回申请待审核", [r for r in rows if r.status == s.return_requested.value],
                 _by("issued_at", "id"), url("return_requested")),
        _section(b, "closed", "上周办结", facts.closed.get(department_id, []), _by("closed_at", "id"), url("closed")),
    ]  # fmt: skip
    awaiting_review = sum(1 for r in rows if r.status == s.responded.value)
    week_counts = facts.week_revisits.get(department_id, Counter())
    satisfaction = {SATISFACTION_LABELS.get(k, k): n for k, n in sorted(week_counts.items(), key=_satisfaction_order)}
    unsatisfied = sorted(facts.unsatisfied.get(department_id, []), key=_by("completed_at", "id"))[:ITEMS_SHOWN]
    year = facts.year_revisits.get(department_id, Counter())
    revisits, satisfied = sum(year.values()), sum(year[k] for k in _SATISFIED)
    return DepartmentDigest(
        department=dept,
        week=week,
        week_label=week_label(week),
        as_of=as_of,
        sections=sections,
        satisfaction=satisfaction,
        unsatisfied=[b.item(r) for r in unsatisfied],
        awaiting_review=awaiting_review,
        year_rate=_rate(satisfied, revisits) if revisits else None,
    )


def _satisfaction_order(item: tuple[str, int]) -> int:
    order = list(SATISFACTION_LABELS)
    return order.index(item[0]) if item[0] in order else len(order)


def bureau_digest(
    session: Session,
    week: str,
    *,
    base_url: str,
    as_of: dt.datetime | None = None,
    calendar: WorkCalendar | None = None,
    directory: Directory | None = None,
    facts: Facts | None = None,
) -> BureauDigest:
    """The supervisors' summary of `week`: this year's figures per department, what waits for them."""
    week = parse_week(week)
    as_of = as_of or (facts.as_of if facts else send_moment(week))
    calendar = calendar or load_calendar(session)
    directory = directory or load_directory(session)
    facts = facts or read_facts(session, week, as_of)
    b = _Builder(as_of, calendar, directory, base_url, departments=True)
    year = b.today.year
    year_start = day_start(dt.date(year, 1, 1))
    this_year = (Referral.issued_at >= year_start) & (Referral.issued_at < as_of)
    counted = this_year & (Referral.status != ReferralStatus.cancelled.value)
    closed = Referral.status == ReferralStatus.closed.value

    def n(condition: Any) -> Any:
        return func.coalesce(func.sum(case((condition, 1), else_=0)), 0)

    figures = {
        dept_id: (int(a), int(c), int(o))
        for dept_id, a, c, o in session.execute(
            select(Referral.lead_department_id, func.count(), n(closed), n(closed & Referral.on_time.is_(True)))
            .where(counted)
            .group_by(Referral.lead_department_id)
        )
    }
    open_rows = facts.all_open()
    # Overdue counts every referral on its department's move past its deadline, whenever issued.
    overdue_rows = [r for r in open_rows if r.status in _LEAD_MOVE and r.deadline < as_of]
    overdue_by = Counter(r.lead_department_id for r in overdue_rows)
    rows = []
    for dept_id in set(figures) | set(overdue_by) | set(facts.year_revisits):
        dept = directory.departments.get(dept_id)
        issued, n_closed, on_time = figures.get(dept_id, (0, 0, 0))
        answers = facts.year_revisits.get(dept_id, Counter())
        rows.append(
            DepartmentFigures(
                department=dept.short_name if dept else "（已停用部门）",
                code=dept.code if dept else "",
                issued=issued,
                closed=n_closed,
                on_time=on_time,
                overdue=overdue_by[dept_id],
                revisits=sum(answers.values()),
                satisfied=sum(answers[k] for k in _SATISFIED),
            )
        )
    # Most actionable first: the most overdue, then the lowest closing rate.
    rows.sort(key=lambda r: (-r.overdue, r.closed / r.issued if r.issued else 1.0, r.code))
    totals = DepartmentFigures(
        department="合计",
        code="",
        issued=sum(r.issued for r in rows),
        closed=sum(r.closed for r in rows),
        on_time=sum(r.on_time for r in rows),
        overdue=sum(r.overdue for r in rows),
        revisits=sum(r.revisits for r in rows),
        satisfied=sum(r.satisfied for r in rows),
    )
    s = ReferralStatus
    sections = [
        _section(b, "returns", "退回申请待审核", [r for r in open_rows if r.status == s.return_requested.value],
                 _by("issued_at", "id"), referrals_url(base_url, state="return_requested")),
        _section(b, "extensions", "延期申请待审核", [r for r in open_rows if r.status == s.extension_requested.value],
                 _by("deadline", "id"), referrals_url(base_url, state="extension_requested")),
        _section(b, "review", "办理反馈待审核", [r for r in open_rows if r.status == s.responded.value],
                 _by("responded_at", "id"), referrals_url(base_url, state="responded")),
        _section(b, "overdue", "逾期最久", overdue_rows, _by("deadline", "id"),
                 referrals_url(base_url, state="overdue")),
    ]  # fmt: skip
    period_end = day_start(week_monday(week))
    period_start = period_end - dt.timedelta(days=7)
    new_last_week = int(
        session.scalar(
            select(func.count())
            .select_from(Referral)
            .where(Referral.issued_at >= period_start, Referral.issued_at < period_end)
        )
        or 0
    )
    return BureauDigest(
        week=week,
        week_label=week_label(week),
        as_of=as_of,
        year=year,
        totals=totals,
        rows=rows,
        sections=sections,
        new_last_week=new_last_week,
        closed_last_week=sum(len(v) for v in facts.closed.values()),
        list_url=referrals_url(base_url),
    )


# --- rendering, preview, sending ---------------------------------------------------------------


def render_department(digest: DepartmentDigest) -> render.Rendered:
    return render.render("digest_department", {"d": digest})


def render_bureau(digest: BureauDigest) -> render.Rendered:
    return render.render("digest_bureau", {"d": digest})


def preview(
    session: Session, who: str, week: str, *, base_url: str, as_of: dt.datetime | None = None
) -> render.Rendered:
    """Render a digest without recording or sending it: `who` is a department code or "supervisors".

    The data is today's, measured at the week's Monday 08:00 (or `as_of`): what the digest of that
    week shows, or would show. The mail actually sent stays in the mail outbox.
    """
    directory = load_directory(session)
    calendar = load_calendar(session)
    if who == SUPERVISORS:
        return render_bureau(
            bureau_digest(session, week, base_url=base_url, as_of=as_of, calendar=calendar, directory=directory)
        )
    dept = next((d for d in directory.departments.values() if d.code == who), None)
    if dept is None:
        raise LookupError(f"no active department with code {who!r}")
    digest = department_digest(
        session, dept.id, week, base_url=base_url, as_of=as_of, calendar=calendar, directory=directory
    )
    return render_department(digest)


@dataclass
class DigestReport:
    week: str
    skipped: str | None = None  # why nothing was done: a day off, or this week's digests are out
    sent: list[str] = field(default_factory=list)  # recipients queued now (department codes, "supervisors")
    already: int = 0  # decided by an earlier run of the same week
    empty: int = 0  # nothing to report: recorded, no mail
    without_recipients: int = 0


def send_weekly(app: Flask, now: dt.datetime | None = None) -> DigestReport:
    """This week's digests, on the week's first working day from 08:00 (Monday, or the first day back
    after a holiday; a week of holidays has none).

    Each department (then the supervisors) is decided in its own transaction: a `digests_sent` row
    (department, ISO week) is recorded and, when there is anything to report, the mail is queued
    with it. A last row (recipient "*") marks the week done, so later days of the week do nothing.
    Run it again, on two hosts at once or after a crash halfway, and only the undecided ones go out.
    """
    with app.app_context():  # the mail's links are built from the console's routes (services/links.py)
        return _send_weekly(app, now)


def _send_weekly(app: Flask, now: dt.datetime | None) -> DigestReport:
    now = now or utcnow()
    today = local_date(now)
    week = iso_week(today)
    base_url = app.config["PUBLIC_BASE_URL"]
    report = DigestReport(week)
    with read_session(app) as session:
        calendar = load_calendar(session)
        directory = load_directory(session)
        done = set(session.scalars(select(DigestSent.recipient).where(DigestSent.week == week)))
        if not calendar.is_workday(today):
            report.skipped = "day off"
            return report
        if WEEK_DONE in done:
            report.skipped = "done"
            return report
        # Read once for every department; each digest is then built and rendered without the write lock.
        facts = read_facts(session, week, now)
        bureau = None
        if SUPERVISORS not in done and directory.supervisors:
            bureau = bureau_digest(
                session, week, base_url=base_url, as_of=now, calendar=calendar, directory=directory, facts=facts
            )
    for dept in directory.departments.values():
        recipient = str(dept.id)
        if recipient in done:
            report.already += 1
            continue
        mail = None
        if dept.emails:
            digest = department_digest(
                None, dept.id, week, base_url=base_url, as_of=now, calendar=calendar, directory=directory, facts=facts
            )
            mail = None if digest.empty else render_department(digest)
        with session_scope(app) as session:
            if not dept.emails:
                report.without_recipients += 1
                _record(session, recipient, week, now)
                continue
            _record_and_queue(session, recipient, week, dept.emails, mail, now, report, dept.code)
    if SUPERVISORS in done:
        report.already += 1
    else:
        with session_scope(app) as session:
            if bureau is None:
                report.without_recipients += 1
                _record(session, SUPERVISORS, week, now)
            else:
                anything = bureau.totals.issued or bureau.totals.overdue or any(x.total for x in bureau.sections)
                mail = render_bureau(bureau) if anything else None
                _record_and_queue(session, SUPERVISORS, week, directory.supervisors, mail, now, report, SUPERVISORS)
    with session_scope(app) as session:
        _record(session, WEEK_DONE, week, now)
    log.info(
        "digests %s: %d queued, %d decided before, %d with nothing to report, %d without addresses",
        week,
        len(report.sent),
        report.already,
        report.empty,
        report.without_recipients,
    )
    return report


def _record(session: Session, recipient: str, week: str, now: dt.datetime) -> bool:
    values = {"recipient": recipient, "week": week, "created_at": now}
    return insert_ignore(session, DigestSent, values, ["recipient", "week"])


def _record_and_queue(
    session: Session,
    recipient: str,
    week: str,
    to: tuple[str, ...],
    mail: render.Rendered | None,
    now: dt.datetime,
    report: DigestReport,
    label: str,
) -> None:
    """Record the recipient's digest of the week; queue the mail only if this call recorded it."""
    if not _record(session, recipient, week, now):
        report.already += 1
        return
    if mail is None:
        report.empty += 1
        return
    outbox.enqueue(session, to, mail.subject, mail.text, mail.html, dedupe_key=f"digest:{recipient}:{week}", now=now)
    report.sent.append(label)
