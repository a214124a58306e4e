"""What the scheduler owes a referral at a given moment, and which cadre gets a revisit (回访).

Notices: a sign reminder (签收提醒) when a referral is not signed within one working day of
issue; reminders (催办) N working days before the deadline and on the day; escalations (督办)
to supervisors and the department's head at +1 and +5 working days overdue; progress checks
(进展跟踪) when a coordinating answer's next date has come.

Each notice has a stable `key` — (kind, threshold, anchor day) — which the scheduler records,
unique per referral, before sending: a notice is never sent twice. The anchor is the day the
threshold counts from (the issue day, the due day, the next date), so a new deadline (an
extension, a reassignment, a redo) brings a fresh series. Notices are due only on working
days. After downtime the scheduler catches up with one notice per series, the latest threshold
reached, rather than a burst of stale ones: a missed "before-2" is skipped on the due day.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from schemas.enums import LabelledEnum, ProblemOutcome, Role
from server.domain.periods import local_date
from server.domain.referrals import ReferralEvent, ReferralState, ReferralStatus, Transition, awaiting
from server.domain.workdays import WorkCalendar

SIGN_WITHIN_WORKDAYS = 1
REMIND_BEFORE_WORKDAYS = 2
ESCALATE_AT_WORKDAYS = (1, 5)


class NoticeKind(LabelledEnum):
    sign_reminder = ("sign_reminder", "签收提醒")
    reminder = ("reminder", "催办")
    escalation = ("escalation", "督办")
    progress_check = ("progress_check", "进展跟踪")


class Audience(LabelledEnum):
    """Who a notice is for; the service turns these into people."""

    department = ("department", "承办部门联络员")
    department_head = ("department_head", "部门负责人")
    supervisors = ("supervisors", "督查人员")


NoticeKey = tuple[str, str, str]


@dataclass(frozen=True)
class Notice:
    """One notice due now. `threshold` is e.g. "before-2", "due-day", "overdue-5"."""

    kind: NoticeKind
    threshold: str
    anchor: dt.date
    audience: tuple[Audience, ...]

    @property
    def key(self) -> NoticeKey:
        """("reminder", "before-2", "2026-02-26"): store it (unique per referral) before sending."""
        return (self.kind.value, self.threshold, self.anchor.isoformat())


_TO_DEPARTMENT = (Audience.department,)
_TO_SUPERIORS = (Audience.supervisors, Audience.department_head)


def sign_deadline(referral: ReferralState, calendar: WorkCalendar) -> dt.datetime:
    """When the referral should have been signed: the end of the first working day after issue."""
    return calendar.deadline_at(referral.issued_at, SIGN_WITHIN_WORKDAYS)


def due_notices(
    referral: ReferralState,
    now: dt.datetime,
    calendar: WorkCalendar,
    sent: Collection[NoticeKey] = (),
    *,
    remind_before: int = REMIND_BEFORE_WORKDAYS,
    escalate_at: Sequence[int] = ESCALATE_AT_WORKDAYS,
) -> list[Notice]:
    """The notices due for `referral` at `now` that are not in `sent`, at most one per kind.

    Deadline reminders and escalations go out only while it is the lead department's move
    (issued or signed): a referral waiting for a supervisor's decision, or answered, is not
    chased. `remind_before=0` turns the early reminder off; the due-day one always goes.
    """
    if remind_before < 0 or any(t < 1 for t in escalate_at):
        raise ValueError("remind_before must be >= 0 and escalation thresholds >= 1")
    today = local_date(now)
    if not calendar.is_workday(today) or awaiting(referral.status) is not Role.department_staff:
        return []
    sent = set(sent)
    notices: list[Notice] = []
    issue_day = local_date(referral.issued_at)

    if referral.status is ReferralStatus.issued and now > sign_deadline(referral, calendar):
        sign = Notice(NoticeKind.sign_reminder, f"after-{SIGN_WITHIN_WORKDAYS}", issue_day, _TO_DEPARTMENT)
        notices.extend(_latest_unsent([sign], sent))

    due = referral.due_day
    series: list[Notice] = []  # this moment's thresholds reached, earliest first
    if now <= referral.deadline:
        left = calendar.workdays_between(today, due)
        if remind_before and 0 < left <= remind_before and today > issue_day:
            series.append(Notice(NoticeKind.reminder, f"before-{remind_before}", due, _TO_DEPARTMENT))
        if left == 0:
            series.append(Notice(NoticeKind.reminder, "due-day", due, _TO_DEPARTMENT))
    else:
        over = calendar.overdue_workdays(referral.deadline, now)
        for threshold in sorted(set(escalate_at)):
            if over >= threshold:
                series.append(Notice(NoticeKind.escalation, f"overdue-{threshold}", due, _TO_SUPERIORS))
    notices.extend(_latest_unsent(series, sent))
    return notices


def _latest_unsent(series: list[Notice], sent: set[NoticeKey]) -> list[Notice]:
    """The last threshold reached, unless it is already sent; earlier ones are never sent late."""
    if not series or series[-1].key in sent:
        return []
    return series[-1:]


def progress_check_due(
    outcome: ProblemOutcome | None,
    next_date: dt.date | None,
    now: dt.datetime,
    calendar: WorkCalendar,
    sent: Collection[NoticeKey] = (),
) -> Notice | None:
    """The progress check owed on a coordinating answer once its next date has come, else None.

    Keyed by the next date: when the department reports progress with a new next date, the next
    check follows from it. Checks go out on working days only, so a next date on a weekend is
    checked on the following working day.
    """
    if outcome is not ProblemOutcome.coordinating or next_date is None:
        return None
    today = local_date(now)
    if today < next_date or not calendar.is_workday(today):
        return None
    notice = Notice(NoticeKind.progress_check, "next-date", next_date, _TO_DEPARTMENT)
    return None if notice.key in set(sent) else notice


def needs_revisit(transition: Transition) -> bool:
    """True when a supervisor has just accepted a 'solved' answer: the firm is asked to confirm it."""
    return transition.event is ReferralEvent.accepted and transition.state.outcome is ProblemOutcome.solved


class _Ordered(Protocol):
    def __lt__(self, other: Any, /) -> bool: ...


CadreId = TypeVar("CadreId", bound=_Ordered)


def choose_revisit_cadre(portfolio_cadre_id: CadreId | None, loads: Mapping[CadreId, int]) -> CadreId | None:
    """The cadre who does the revisit: the firm's portfolio cadre if it has one, else the least loaded.

    `loads` maps each active cadre to their open follow-ups. Ties go to the smallest id, so the
    choice is the same on every run. None when there is no portfolio cadre and no cadre at all.
    """
    if portfolio_cadre_id is not None:
        return portfolio_cadre_id
    if not loads:
        return None
    return min(loads, key=lambda cadre: (loads[cadre], cadre))
