"""What the scheduler owes a referral, day by day across Spring Festival 2026, and who revisits."""

from __future__ import annotations

import datetime as dt
import uuid
from pathlib import Path

import pytest

from schemas.enums import ProblemOutcome, Role
from server.domain.followups import (
    Audience,
    Notice,
    NoticeKind,
    choose_revisit_cadre,
    due_notices,
    needs_revisit,
    progress_check_due,
    sign_deadline,
)
from server.domain.periods import SHANGHAI
from server.domain.referrals import (
    SYSTEM,
    ActorInfo,
    Cancel,
    DecideExtension,
    ReferralState,
    Reopen,
    RequestExtension,
    RequestReturn,
    Respond,
    Review,
    Sign,
    apply,
    issue,
)
from server.domain.workdays import WorkCalendar, end_of_day

D = dt.date
CAL = WorkCalendar()
LEAD = uuid.UUID(int=1)
SUPERVISOR = ActorInfo(Role.supervisor)
STAFF = ActorInfo(Role.department_staff, LEAD)
DONE = "已办理"


def shanghai(*args: int) -> dt.datetime:
    return dt.datetime(*args, tzinfo=SHANGHAI)


def at_nine(day: dt.date) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(9), SHANGHAI)


# Friday 13 February 2026, 3 working days: Sat 14 (make-up), Tue 24, Wed 25 February.
FESTIVE = issue(LEAD, 3, SUPERVISOR, shanghai(2026, 2, 13, 10), CAL).state


def keys(notices: list[Notice]) -> list[tuple[str, str, str]]:
    return [n.key for n in notices]


def simulate(referral: ReferralState, first: dt.date, last: dt.date, **options) -> list[tuple[dt.date, tuple]]:
    """Run a daily 09:00 sweep, recording each key before 'sending' it, as the scheduler will."""
    sent: set[tuple[str, str, str]] = set()
    log = []
    day = first
    while day <= last:
        for notice in due_notices(referral, at_nine(day), CAL, sent, **options):
            sent.add(notice.key)
            log.append((day, notice.key))
        day += dt.timedelta(days=1)
    return log


def test_a_referral_never_signed_across_spring_festival():
    assert simulate(FESTIVE, D(2026, 2, 13), D(2026, 3, 31)) == [
        (D(2026, 2, 14), ("reminder", "before-2", "2026-02-25")),  # the make-up Saturday
        (D(2026, 2, 24), ("sign_reminder", "after-1", "2026-02-13")),  # first day back
        (D(2026, 2, 25), ("reminder", "due-day", "2026-02-25")),
        (D(2026, 2, 26), ("escalation", "overdue-1", "2026-02-25")),
        (D(2026, 3, 3), ("escalation", "overdue-5", "2026-02-25")),  # 26, 27, Sat 28, 2, 3
    ]


def test_a_signed_referral_gets_no_sign_reminder():
    signed = apply(FESTIVE, Sign(), STAFF, shanghai(2026, 2, 14, 10), CAL).state
    assert [key for _, key in simulate(signed, D(2026, 2, 14), D(2026, 3, 31))] == [
        ("reminder", "before-2", "2026-02-25"),
        ("reminder", "due-day", "2026-02-25"),
        ("escalation", "overdue-1", "2026-02-25"),
        ("escalation", "overdue-5", "2026-02-25"),
    ]


def test_no_notice_on_a_day_off():
    for day in range(15, 24):  # 春节
        assert due_notices(FESTIVE, at_nine(D(2026, 2, day)), CAL) == []
    assert due_notices(FESTIVE, at_nine(D(2026, 3, 7)), CAL) == []  # an ordinary Saturday, overdue
    assert due_notices(FESTIVE, at_nine(D(2026, 3, 7)), WorkCalendar({D(2026, 3, 7): True})) != []


def test_after_downtime_only_the_latest_threshold_goes_out():
    assert keys(due_notices(FESTIVE, at_nine(D(2026, 2, 25)), CAL)) == [
        ("sign_reminder", "after-1", "2026-02-13"),
        ("reminder", "due-day", "2026-02-25"),
    ]
    assert keys(due_notices(FESTIVE, at_nine(D(2026, 3, 10)), CAL)) == [
        ("sign_reminder", "after-1", "2026-02-13"),
        ("escalation", "overdue-5", "2026-02-25"),
    ]


def test_nothing_twice():
    now = at_nine(D(2026, 2, 26))
    first = due_notices(FESTIVE, now, CAL)
    assert due_notices(FESTIVE, now, CAL, {n.key for n in first}) == []


def test_audiences():
    by_kind = {n.kind: n.audience for n in due_notices(FESTIVE, at_nine(D(2026, 2, 26)), CAL)}
    assert by_kind == {
        NoticeKind.sign_reminder: (Audience.department,),
        NoticeKind.escalation: (Audience.supervisors, Audience.department_head),
    }
    assert due_notices(FESTIVE, at_nine(D(2026, 2, 25)), CAL)[1].audience == (Audience.department,)


def test_no_reminder_on_the_day_of_issue():
    # Issued Monday 2 March with 1 working day: due Tuesday 3 March; signing is due by then too.
    referral = issue(LEAD, 1, SUPERVISOR, shanghai(2026, 3, 2, 8), CAL).state
    assert simulate(referral, D(2026, 3, 2), D(2026, 3, 31)) == [
        (D(2026, 3, 3), ("reminder", "due-day", "2026-03-03")),
        (D(2026, 3, 4), ("sign_reminder", "after-1", "2026-03-02")),
        (D(2026, 3, 4), ("escalation", "overdue-1", "2026-03-03")),
        (D(2026, 3, 10), ("escalation", "overdue-5", "2026-03-03")),
    ]


def test_sign_deadline_is_the_end_of_the_next_working_day():
    assert sign_deadline(FESTIVE, CAL) == end_of_day(D(2026, 2, 14))
    friday = issue(LEAD, 5, SUPERVISOR, shanghai(2026, 3, 6, 17), CAL).state
    assert sign_deadline(friday, CAL) == end_of_day(D(2026, 3, 9))
    assert keys(due_notices(friday, end_of_day(D(2026, 3, 9)), CAL)) == []
    assert keys(due_notices(friday, at_nine(D(2026, 3, 10)), CAL)) == [("sign_reminder", "after-1", "2026-03-06")]


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ({"remind_before": 0}, ["due-day", "overdue-1", "overdue-5"]),
        ({"remind_before": 3}, ["before-3", "due-day", "overdue-1", "overdue-5"]),
        ({"escalate_at": (1, 3, 10)}, ["before-2", "due-day", "overdue-1", "overdue-3", "overdue-10"]),
        ({"escalate_at": ()}, ["before-2", "due-day"]),
    ],
)
def test_thresholds_are_configurable(options, expected):
    # Issued Monday 2 March with 10 working days: due Monday 16 March.
    referral = issue(LEAD, 10, SUPERVISOR, shanghai(2026, 3, 2, 8), CAL).state
    signed = apply(referral, Sign(), STAFF, shanghai(2026, 3, 2, 9), CAL).state
    log = simulate(signed, D(2026, 3, 2), D(2026, 4, 30), **options)
    assert [key[1] for _, key in log] == expected


def test_before_reminder_day_is_counted_in_working_days():
    referral = issue(LEAD, 10, SUPERVISOR, shanghai(2026, 3, 2, 8), CAL).state
    log = dict((key[1], day) for day, key in simulate(referral, D(2026, 3, 2), D(2026, 3, 31), remind_before=3))
    assert log["before-3"] == D(2026, 3, 11)  # Wed: 12, 13, 16 March remain


@pytest.mark.parametrize("options", [{"remind_before": -1}, {"escalate_at": (0, 5)}])
def test_nonsense_thresholds_are_refused(options):
    with pytest.raises(ValueError):
        due_notices(FESTIVE, at_nine(D(2026, 2, 26)), CAL, **options)


def test_an_extension_brings_a_fresh_series():
    signed = apply(FESTIVE, Sign(), STAFF, shanghai(2026, 2, 14, 10), CAL).state
    asked = apply(signed, RequestExtension(D(2026, 3, 4), "需协调"), STAFF, shanghai(2026, 2, 24, 10), CAL).state
    assert due_notices(asked, at_nine(D(2026, 2, 26)), CAL) == []  # the supervisor's move: not chased
    extended = apply(asked, DecideExtension(approve=True), SUPERVISOR, shanghai(2026, 2, 26, 10), CAL).state
    sent = {("reminder", "before-2", "2026-02-25"), ("reminder", "due-day", "2026-02-25")}
    assert keys(due_notices(extended, at_nine(D(2026, 3, 2)), CAL, sent)) == [("reminder", "before-2", "2026-03-04")]
    assert keys(due_notices(extended, at_nine(D(2026, 3, 4)), CAL, sent)) == [("reminder", "due-day", "2026-03-04")]


def test_a_rejected_extension_after_the_deadline_escalates_at_once():
    signed = apply(FESTIVE, Sign(), STAFF, shanghai(2026, 2, 14, 10), CAL).state
    asked = apply(signed, RequestExtension(D(2026, 3, 4), "需协调"), STAFF, shanghai(2026, 2, 24, 10), CAL).state
    rejected = apply(asked, DecideExtension(approve=False, reason="否"), SUPERVISOR, shanghai(2026, 3, 3, 8), CAL).state
    assert keys(due_notices(rejected, at_nine(D(2026, 3, 3)), CAL)) == [("escalation", "overdue-5", "2026-02-25")]


@pytest.mark.parametrize(
    "state",
    [
        apply(FESTIVE, RequestReturn("非本部门职责"), STAFF, shanghai(2026, 2, 14, 8), CAL).state,
        apply(FESTIVE, Cancel("重复"), SUPERVISOR, shanghai(2026, 2, 14, 8), CAL).state,
    ],
)
def test_no_notices_when_it_is_not_the_departments_move(state):
    assert simulate(state, D(2026, 2, 13), D(2026, 3, 31)) == []


def test_no_notices_once_answered_or_closed():
    signed = apply(FESTIVE, Sign(), STAFF, shanghai(2026, 2, 14, 8), CAL).state
    answered = apply(signed, Respond(ProblemOutcome.solved, DONE), STAFF, shanghai(2026, 2, 14, 9), CAL)
    closed = apply(answered.state, Review(accept=True), SUPERVISOR, shanghai(2026, 2, 14, 10), CAL)
    assert simulate(answered.state, D(2026, 2, 14), D(2026, 3, 31)) == []
    assert simulate(closed.state, D(2026, 2, 14), D(2026, 3, 31)) == []


def test_a_reopened_referral_is_chased_against_its_new_deadline():
    signed = apply(FESTIVE, Sign(), STAFF, shanghai(2026, 2, 14, 8), CAL).state
    answered = apply(signed, Respond(ProblemOutcome.solved, DONE), STAFF, shanghai(2026, 2, 14, 9), CAL).state
    closed = apply(answered, Review(accept=True), SUPERVISOR, shanghai(2026, 2, 14, 10), CAL).state
    reopened = apply(closed, Reopen("企业不满意"), SYSTEM, shanghai(2026, 3, 2, 10), CAL).state
    assert reopened.due_day == D(2026, 3, 9)
    assert [key for _, key in simulate(reopened, D(2026, 3, 2), D(2026, 3, 31))] == [
        ("reminder", "before-2", "2026-03-09"),
        ("reminder", "due-day", "2026-03-09"),
        ("escalation", "overdue-1", "2026-03-09"),
        ("escalation", "overdue-5", "2026-03-09"),
    ]


# Progress checks


def test_progress_check_when_the_next_date_comes():
    next_date = D(2026, 4, 30)
    assert progress_check_due(ProblemOutcome.coordinating, next_date, at_nine(D(2026, 4, 29)), CAL) is None
    notice = progress_check_due(ProblemOutcome.coordinating, next_date, at_nine(next_date), CAL)
    assert notice is not None
    assert notice.key == ("progress_check", "next-date", "2026-04-30")
    assert notice.audience == (Audience.department,)
    assert progress_check_due(ProblemOutcome.coordinating, next_date, at_nine(next_date), CAL, {notice.key}) is None
    # Missed (the scheduler was down over Labour Day): still due, once.
    assert progress_check_due(ProblemOutcome.coordinating, next_date, at_nine(D(2026, 5, 6)), CAL) == notice


def test_progress_check_waits_for_a_working_day():
    saturday = D(2026, 3, 7)
    assert progress_check_due(ProblemOutcome.coordinating, saturday, at_nine(saturday), CAL) is None
    notice = progress_check_due(ProblemOutcome.coordinating, saturday, at_nine(D(2026, 3, 9)), CAL)
    assert notice is not None and notice.anchor == saturday


@pytest.mark.parametrize(
    ("outcome", "next_date"),
    [
        (ProblemOutcome.solved, D(2026, 3, 2)),
        (ProblemOutcome.deferred, D(2026, 3, 2)),
        (None, D(2026, 3, 2)),
        (ProblemOutcome.coordinating, None),
    ],
)
def test_progress_checks_only_for_coordinating_answers_with_a_date(outcome, next_date):
    assert progress_check_due(outcome, next_date, at_nine(D(2026, 3, 10)), CAL) is None


# Revisits


def test_needs_revisit_only_when_a_solved_answer_is_accepted():
    signed = apply(FESTIVE, Sign(), STAFF, shanghai(2026, 2, 14, 8), CAL).state
    now = shanghai(2026, 2, 14, 9)
    solved = apply(signed, Respond(ProblemOutcome.solved, DONE), STAFF, now, CAL)
    coordinating = apply(
        signed, Respond(ProblemOutcome.coordinating, DONE, plan="p", next_date=D(2026, 3, 31)), STAFF, now, CAL
    )
    assert not needs_revisit(solved)
    assert needs_revisit(apply(solved.state, Review(accept=True), SUPERVISOR, now, CAL))
    assert not needs_revisit(apply(solved.state, Review(accept=False, reason="x"), SUPERVISOR, now, CAL))
    assert not needs_revisit(apply(coordinating.state, Review(accept=True), SUPERVISOR, now, CAL))


A, B, C = (uuid.UUID(int=n) for n in (1, 2, 3))


@pytest.mark.parametrize(
    ("portfolio", "loads", "expected"),
    [
        (C, {A: 0, B: 0}, C),  # the portfolio cadre, even when not the least loaded
        (C, {}, C),
        (None, {A: 3, B: 1, C: 2}, B),
        (None, {C: 1, A: 1, B: 1}, A),  # a tie goes to the smallest id, whatever the order
        (None, {B: 0, A: 5}, B),
        (None, {}, None),
        (0, {1: 0}, 0),  # an id that is falsy is still an id
        (None, {2: 1, 10: 1}, 2),
    ],
)
def test_choose_revisit_cadre(portfolio, loads, expected):
    assert choose_revisit_cadre(portfolio, loads) == expected
    assert choose_revisit_cadre(portfolio, dict(reversed(list(loads.items())))) == expected


def test_the_workflow_doc_names_every_notice_kind():
    doc = (Path(__file__).parents[2] / "docs" / "referral-workflow.md").read_text(encoding="utf-8")
    for kind in NoticeKind:
        assert f"`{kind.value}`" in doc and kind.label in doc, kind
