"""The referral state machine, exhaustively: every state × action × actor, then each rule in turn."""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
import uuid
from pathlib import Path
from types import SimpleNamespace

import pytest

from schemas.enums import ProblemOutcome, ProblemStatus, Role
from server.domain.periods import SHANGHAI
from server.domain.referrals import (
    MAX_WORKDAYS,
    OPEN_STATUSES,
    REOPEN_WORKDAYS,
    SYSTEM,
    ActorInfo,
    Cancel,
    DecideExtension,
    DecideReturn,
    ProblemVerdict,
    ReferralAction,
    ReferralEvent,
    ReferralPermissionError,
    ReferralRuleError,
    ReferralState,
    ReferralStatus,
    Reopen,
    RequestExtension,
    RequestReturn,
    Respond,
    Review,
    Sign,
    TransitionError,
    allowed_actions,
    apply,
    awaiting,
    can_read,
    issue,
    problem_status_for,
)
from server.domain.workdays import WorkCalendar, end_of_day

S = ReferralStatus
D = dt.date
CAL = WorkCalendar()

LEAD = uuid.UUID(int=1)
CO = uuid.UUID(int=2)
OTHER = uuid.UUID(int=3)
NEW_LEAD = uuid.UUID(int=4)

ACTORS = {
    "supervisor": ActorInfo(Role.supervisor),
    "lead_staff": ActorInfo(Role.department_staff, LEAD),
    "co_staff": ActorInfo(Role.department_staff, CO),
    "other_staff": ActorInfo(Role.department_staff, OTHER),
    "staff_without_department": ActorInfo(Role.department_staff),
    "cadre": ActorInfo(Role.cadre),
    "admin": ActorInfo(Role.admin),
    "system": SYSTEM,
}
SUPERVISOR, LEAD_STAFF = ACTORS["supervisor"], ACTORS["lead_staff"]


def shanghai(*args: int) -> dt.datetime:
    return dt.datetime(*args, tzinfo=SHANGHAI)


# Issued on Monday 2 March 2026 with 5 working days: due at the end of Monday 9 March.
ISSUED_AT = shanghai(2026, 3, 2, 10)
DUE_DAY = D(2026, 3, 9)
NOW = shanghai(2026, 3, 4, 10)  # well before the deadline
GROUNDS = "该事项属于住建局职责"
DONE = "已协调银行对接，企业获得授信500万元"


def issued(now: dt.datetime = ISSUED_AT, workdays: int = 5) -> ReferralState:
    return issue(LEAD, workdays, SUPERVISOR, now, CAL, co_department_ids=[CO]).state


def step(state: ReferralState, action, actor: ActorInfo = LEAD_STAFF, now: dt.datetime = NOW) -> ReferralState:
    return apply(state, action, actor, now, CAL).state


def signed() -> ReferralState:
    return step(issued(), Sign(), now=shanghai(2026, 3, 2, 15))


def responded(outcome: Respond | None = None) -> ReferralState:
    return step(signed(), outcome or Respond(ProblemOutcome.solved, DONE))


def closed(at: dt.datetime = NOW) -> ReferralState:
    return step(responded(), Review(accept=True), SUPERVISOR, now=at)


# Every state a referral can be in, reached by legal steps (return_requested both ways).
STATES = {
    "issued": issued,
    "return_requested_from_issued": lambda: step(issued(), RequestReturn(GROUNDS)),
    "signed": signed,
    "return_requested_from_signed": lambda: step(signed(), RequestReturn(GROUNDS)),
    "extension_requested": lambda: step(signed(), RequestExtension(D(2026, 3, 13), "需协调省级部门")),
    "responded": responded,
    "closed": closed,
    "cancelled": lambda: step(issued(), Cancel("重复交办"), SUPERVISOR),
}

# Every action with fields valid in the state it applies to.
ACTIONS = {
    "sign": Sign(),
    "request_return": RequestReturn(GROUNDS),
    "reassign": DecideReturn(approve=True, reassign_to=NEW_LEAD),
    "refuse_return": DecideReturn(approve=False, reason="属于本部门职责"),
    "request_extension": RequestExtension(D(2026, 3, 13), "需协调省级部门"),
    "approve_extension": DecideExtension(approve=True),
    "reject_extension": DecideExtension(approve=False, reason="时限充足"),
    "respond_solved": Respond(ProblemOutcome.solved, DONE),
    "respond_coordinating": Respond(
        ProblemOutcome.coordinating, DONE, plan="4月底前完成审批", next_date=D(2026, 4, 30)
    ),
    "respond_deferred": Respond(ProblemOutcome.deferred, DONE, reason="政策暂不允许"),
    "accept": Review(accept=True),
    "send_back": Review(accept=False, reason="反馈内容不完整"),
    "reopen": Reopen("企业回访不满意"),
    "cancel": Cancel("问题已由企业自行解决"),
}

# The specification, written out independently of the module's RULES table.
WHO = {
    ReferralAction.sign: "lead_staff",
    ReferralAction.request_return: "lead_staff",
    ReferralAction.decide_return: "supervisor",
    ReferralAction.request_extension: "lead_staff",
    ReferralAction.decide_extension: "supervisor",
    ReferralAction.respond: "lead_staff",
    ReferralAction.review: "supervisor",
    ReferralAction.reopen: "system",
    ReferralAction.cancel: "supervisor",
}
OPEN = {S.issued, S.return_requested, S.signed, S.extension_requested, S.responded}
FROM = {
    ReferralAction.sign: {S.issued},
    ReferralAction.request_return: {S.issued, S.signed},
    ReferralAction.decide_return: {S.return_requested},
    ReferralAction.request_extension: {S.signed},
    ReferralAction.decide_extension: {S.extension_requested},
    ReferralAction.respond: {S.signed},
    ReferralAction.review: {S.responded},
    ReferralAction.reopen: {S.closed},
    ReferralAction.cancel: OPEN,
}
# Where each successful action leads; None: back to where the return request came from.
TO = {
    "sign": S.signed,
    "request_return": S.return_requested,
    "reassign": S.issued,
    "refuse_return": None,
    "request_extension": S.extension_requested,
    "approve_extension": S.signed,
    "reject_extension": S.signed,
    "respond_solved": S.responded,
    "respond_coordinating": S.responded,
    "respond_deferred": S.responded,
    "accept": S.closed,
    "send_back": S.signed,
    "reopen": S.signed,
    "cancel": S.cancelled,
}


def test_the_states_reached_cover_every_status():
    assert {factory().status for factory in STATES.values()} == set(ReferralStatus)


def test_the_actions_cover_every_action_but_issue():
    assert {a.action for a in ACTIONS.values()} == set(ReferralAction) - {ReferralAction.issue}


@pytest.mark.parametrize("actor_name", ACTORS)
@pytest.mark.parametrize("action_name", ACTIONS)
@pytest.mark.parametrize("state_name", STATES)
def test_every_state_action_actor(state_name, action_name, actor_name):
    state, action, actor = STATES[state_name](), ACTIONS[action_name], ACTORS[actor_name]
    before = dataclasses.replace(state)
    if actor_name != WHO[action.action]:
        with pytest.raises(ReferralPermissionError):
            apply(state, action, actor, NOW, CAL)
    elif state.status not in FROM[action.action]:
        with pytest.raises(TransitionError) as e:
            apply(state, action, actor, NOW, CAL)
        assert e.value.code == "invalid_transition"
    else:
        t = apply(state, action, actor, NOW, CAL)
        expected = TO[action_name] or state.return_to
        assert t.state.status is expected
        assert t.previous == state and t.action is action.action
        assert t.changes["status"] == (state.status, expected)
    assert state == before  # the input is never changed


@pytest.mark.parametrize("actor_name", ACTORS)
@pytest.mark.parametrize("state_name", STATES)
def test_allowed_actions_match_the_specification(state_name, actor_name):
    state = STATES[state_name]()
    expected = [a for a in WHO if WHO[a] == actor_name and state.status in FROM[a]]
    assert allowed_actions(state, ACTORS[actor_name]) == expected


# Permissions


def test_a_co_department_reads_but_does_not_act():
    state = issued()
    assert can_read(state, ACTORS["co_staff"])
    with pytest.raises(ReferralPermissionError) as e:
        apply(state, Sign(), ACTORS["co_staff"], NOW, CAL)
    assert e.value.code == "co_department"


def test_another_department_neither_reads_nor_acts():
    state = issued()
    assert not can_read(state, ACTORS["other_staff"])
    assert not can_read(state, ACTORS["staff_without_department"])
    with pytest.raises(ReferralPermissionError) as e:
        apply(state, Sign(), ACTORS["other_staff"], NOW, CAL)
    assert e.value.code == "department"


@pytest.mark.parametrize(
    ("actor_name", "reads"),
    [
        ("supervisor", True),
        ("admin", True),
        ("system", True),
        ("lead_staff", True),
        ("co_staff", True),
        ("other_staff", False),
        ("cadre", False),
    ],
)
def test_can_read(actor_name, reads):
    assert can_read(issued(), ACTORS[actor_name]) is reads


def test_wrong_role_gets_the_role_code():
    with pytest.raises(ReferralPermissionError) as e:
        apply(issued(), Cancel("x"), LEAD_STAFF, NOW, CAL)
    assert e.value.code == "role"


def test_who_is_checked_before_the_state_and_the_state_before_the_fields():
    late = shanghai(2026, 3, 20, 10)
    with pytest.raises(ReferralPermissionError):  # wrong department, wrong state, blank reason
        apply(closed(), RequestExtension(D(2026, 3, 1), " "), ACTORS["co_staff"], late, CAL)
    with pytest.raises(TransitionError):  # wrong state, blank reason
        apply(closed(), RequestExtension(D(2026, 3, 1), " "), LEAD_STAFF, late, CAL)
    with pytest.raises(TransitionError) as e:  # right state, too late, blank reason
        apply(signed(), RequestExtension(D(2026, 3, 1), " "), LEAD_STAFF, late, CAL)
    assert e.value.code == "deadline_passed"


@pytest.mark.parametrize("state_name", STATES)
def test_awaiting(state_name):
    state = STATES[state_name]()
    expected = {
        S.issued: Role.department_staff,
        S.signed: Role.department_staff,
        S.return_requested: Role.supervisor,
        S.extension_requested: Role.supervisor,
        S.responded: Role.supervisor,
        S.closed: None,
        S.cancelled: None,
    }[state.status]
    assert awaiting(state.status) is expected
    assert state.is_open is (state.status in OPEN_STATUSES)


# Issue


def test_issue_starts_the_clock_at_issue():
    t = issue(LEAD, 5, SUPERVISOR, ISSUED_AT, CAL, co_department_ids=[CO, CO])
    assert t.action is ReferralAction.issue and t.event is ReferralEvent.issued and t.previous is None
    s = t.state
    assert s.status is S.issued and s.lead_department_id == LEAD and s.co_department_ids == {CO}
    assert s.issued_at == ISSUED_AT and s.workdays == 5
    assert s.deadline == s.original_deadline == end_of_day(DUE_DAY)
    assert s.due_day == DUE_DAY
    assert s.on_time is None and s.signed_at is None
    assert t.changes["status"] == (None, S.issued)


def test_issue_before_spring_festival():
    # Friday 13 Feb 2026, 3 working days: Sat 14 (make-up), Tue 24, Wed 25.
    s = issue(LEAD, 3, SUPERVISOR, shanghai(2026, 2, 13, 16), CAL).state
    assert s.due_day == D(2026, 2, 25)


@pytest.mark.parametrize("actor_name", [a for a in ACTORS if a != "supervisor"])
def test_only_a_supervisor_issues(actor_name):
    with pytest.raises(ReferralPermissionError):
        issue(LEAD, 5, ACTORS[actor_name], ISSUED_AT, CAL)


@pytest.mark.parametrize("workdays", [0, -1, MAX_WORKDAYS + 1])
def test_issue_needs_a_sensible_allowance(workdays):
    with pytest.raises(ReferralRuleError) as e:
        issue(LEAD, workdays, SUPERVISOR, ISSUED_AT, CAL)
    assert e.value.field == "workdays"


def test_issue_lead_cannot_be_a_co_department():
    with pytest.raises(ReferralRuleError) as e:
        issue(LEAD, 5, SUPERVISOR, ISSUED_AT, CAL, co_department_ids=[LEAD])
    assert e.value.field == "co_department_ids"


def test_naive_time_is_a_programming_error():
    with pytest.raises(ValueError):
        issue(LEAD, 5, SUPERVISOR, dt.datetime(2026, 3, 2, 10), CAL)
    with pytest.raises(ValueError):
        apply(issued(), Sign(), LEAD_STAFF, dt.datetime(2026, 3, 2, 10), CAL)


# Sign and return


def test_sign_records_when():
    t = apply(issued(), Sign(), LEAD_STAFF, NOW, CAL)
    assert t.event is ReferralEvent.signed and t.state.signed_at == NOW
    assert t.state.deadline == end_of_day(DUE_DAY)  # signing does not move the clock


@pytest.mark.parametrize("origin", ["issued", "signed"])
def test_refused_return_goes_back_where_it_came_from(origin):
    start = STATES[origin]()
    asked = apply(start, RequestReturn(f"  {GROUNDS} "), LEAD_STAFF, NOW, CAL)
    assert asked.state.return_to is start.status
    assert asked.details == {"grounds": GROUNDS}
    t = apply(asked.state, DecideReturn(approve=False, reason="属于本部门职责"), SUPERVISOR, NOW, CAL)
    assert t.event is ReferralEvent.return_refused
    assert t.state.status is start.status and t.state.return_to is None
    assert t.state.deadline == start.deadline  # the clock kept running


def test_refused_return_without_a_remembered_state_falls_back_on_signed_at():
    asked = dataclasses.replace(STATES["return_requested_from_signed"](), return_to=None)
    refused = apply(asked, DecideReturn(approve=False, reason="x"), SUPERVISOR, NOW, CAL).state
    assert refused.status is S.signed


@pytest.mark.parametrize("grounds", ["", "   ", "\n"])
def test_return_needs_grounds(grounds):
    with pytest.raises(ReferralRuleError) as e:
        apply(issued(), RequestReturn(grounds), LEAD_STAFF, NOW, CAL)
    assert e.value.field == "grounds"


def test_refusing_a_return_needs_a_reason():
    with pytest.raises(ReferralRuleError) as e:
        apply(STATES["return_requested_from_issued"](), DecideReturn(approve=False), SUPERVISOR, NOW, CAL)
    assert e.value.field == "reason"


def test_reassign_restarts_the_clock_for_the_new_lead():
    asked = STATES["return_requested_from_signed"]()
    at = shanghai(2026, 2, 13, 9)  # before Spring Festival: 5 working days end on Fri 27 Feb
    at_state = dataclasses.replace(asked, issued_at=shanghai(2026, 2, 10, 9))
    t = apply(at_state, DecideReturn(approve=True, reassign_to=NEW_LEAD), SUPERVISOR, at, CAL)
    s = t.state
    assert t.event is ReferralEvent.reassigned
    assert s.status is S.issued and s.lead_department_id == NEW_LEAD and s.co_department_ids == {CO}
    assert s.issued_at == at and s.signed_at is None and s.return_to is None
    assert s.original_deadline == s.deadline == end_of_day(D(2026, 2, 27))


def test_reassign_to_a_co_department_takes_it_off_the_co_list():
    asked = STATES["return_requested_from_issued"]()
    s = apply(asked, DecideReturn(approve=True, reassign_to=CO), SUPERVISOR, NOW, CAL).state
    assert s.lead_department_id == CO and s.co_department_ids == frozenset()


def test_reassign_can_replace_the_co_departments():
    asked = STATES["return_requested_from_issued"]()
    action = DecideReturn(approve=True, reassign_to=NEW_LEAD, co_department_ids=frozenset({OTHER, NEW_LEAD}))
    s = apply(asked, action, SUPERVISOR, NOW, CAL).state
    assert s.co_department_ids == {OTHER}


@pytest.mark.parametrize("target", [None, LEAD])
def test_reassign_needs_another_department(target):
    with pytest.raises(ReferralRuleError) as e:
        apply(
            STATES["return_requested_from_issued"](),
            DecideReturn(approve=True, reassign_to=target),
            SUPERVISOR,
            NOW,
            CAL,
        )
    assert e.value.field == "reassign_to"


# Extensions


def test_extension_keeps_the_original_deadline():
    asked = apply(signed(), RequestExtension(D(2026, 3, 13), "需协调省级部门"), LEAD_STAFF, NOW, CAL)
    assert asked.state.requested_until == D(2026, 3, 13)
    assert asked.state.deadline == end_of_day(DUE_DAY)
    t = apply(asked.state, DecideExtension(approve=True), SUPERVISOR, NOW, CAL)
    assert t.event is ReferralEvent.extension_approved
    assert t.state.status is S.signed and t.state.requested_until is None
    assert t.state.deadline == end_of_day(D(2026, 3, 13))
    assert t.state.original_deadline == end_of_day(DUE_DAY)
    assert t.changes["deadline"] == (end_of_day(DUE_DAY), end_of_day(D(2026, 3, 13)))
    assert "original_deadline" not in t.changes


def test_second_extension_still_keeps_the_first_deadline():
    s = step(signed(), RequestExtension(D(2026, 3, 13), "a"))
    s = step(s, DecideExtension(approve=True), SUPERVISOR)
    s = step(s, RequestExtension(D(2026, 3, 20), "b"))
    s = step(s, DecideExtension(approve=True), SUPERVISOR)
    assert s.deadline == end_of_day(D(2026, 3, 20))
    assert s.original_deadline == end_of_day(DUE_DAY)


def test_supervisor_may_grant_another_day():
    asked = step(signed(), RequestExtension(D(2026, 3, 20), "a"))
    s = step(asked, DecideExtension(approve=True, until=D(2026, 3, 12)), SUPERVISOR)
    assert s.deadline == end_of_day(D(2026, 3, 12))


def test_rejected_extension_leaves_the_deadline():
    asked = step(signed(), RequestExtension(D(2026, 3, 13), "a"))
    t = apply(asked, DecideExtension(approve=False, reason="时限充足"), SUPERVISOR, NOW, CAL)
    assert t.event is ReferralEvent.extension_rejected
    assert t.state.status is S.signed and t.state.requested_until is None
    assert t.state.deadline == t.state.original_deadline == end_of_day(DUE_DAY)
    assert t.details == {"reason": "时限充足"}


def test_rejecting_needs_a_reason():
    asked = step(signed(), RequestExtension(D(2026, 3, 13), "a"))
    with pytest.raises(ReferralRuleError):
        apply(asked, DecideExtension(approve=False, reason=" "), SUPERVISOR, NOW, CAL)


def test_extension_until_the_last_instant_of_the_deadline():
    at_deadline = end_of_day(DUE_DAY)
    s = apply(signed(), RequestExtension(D(2026, 3, 13), "a"), LEAD_STAFF, at_deadline, CAL).state
    assert s.status is S.extension_requested
    with pytest.raises(TransitionError) as e:
        apply(
            signed(), RequestExtension(D(2026, 3, 13), "a"), LEAD_STAFF, at_deadline + dt.timedelta(microseconds=1), CAL
        )
    assert e.value.code == "deadline_passed"


def test_a_late_decision_on_a_timely_request_still_counts():
    asked = step(signed(), RequestExtension(D(2026, 3, 13), "a"))
    s = step(asked, DecideExtension(approve=True), SUPERVISOR, now=shanghai(2026, 3, 11, 9))
    assert s.deadline == end_of_day(D(2026, 3, 13))


@pytest.mark.parametrize(
    "until",
    [
        D(2026, 3, 9),  # the current due day
        D(2026, 3, 6),  # before it
        D(2026, 3, 14),  # a Saturday
    ],
)
def test_extension_needs_a_later_working_day(until):
    with pytest.raises(ReferralRuleError) as e:
        apply(signed(), RequestExtension(until, "a"), LEAD_STAFF, NOW, CAL)
    assert e.value.field == "until"
    asked = step(signed(), RequestExtension(D(2026, 3, 20), "a"))
    with pytest.raises(ReferralRuleError):
        apply(asked, DecideExtension(approve=True, until=until), SUPERVISOR, NOW, CAL)


def test_extension_over_spring_festival_accepts_a_make_up_saturday_not_a_holiday():
    s = issued(now=shanghai(2026, 2, 9, 10), workdays=3)  # due Thu 12 Feb
    s = step(s, Sign(), now=shanghai(2026, 2, 9, 11))
    at = shanghai(2026, 2, 10, 9)
    with pytest.raises(ReferralRuleError):
        apply(s, RequestExtension(D(2026, 2, 16), "a"), LEAD_STAFF, at, CAL)  # 春节
    asked = apply(s, RequestExtension(D(2026, 2, 14), "a"), LEAD_STAFF, at, CAL).state  # 调休 Saturday
    assert asked.requested_until == D(2026, 2, 14)


def test_extension_needs_a_reason():
    with pytest.raises(ReferralRuleError) as e:
        apply(signed(), RequestExtension(D(2026, 3, 13), ""), LEAD_STAFF, NOW, CAL)
    assert e.value.field == "reason"


def test_approving_without_any_date_is_refused():
    asked = dataclasses.replace(step(signed(), RequestExtension(D(2026, 3, 13), "a")), requested_until=None)
    with pytest.raises(ReferralRuleError):
        apply(asked, DecideExtension(approve=True), SUPERVISOR, NOW, CAL)


# Responses


def test_solved_answer_keeps_only_what_solved_needs():
    action = Respond(ProblemOutcome.solved, f"  {DONE}  ", plan="x", next_date=D(2026, 5, 1), reason="y")
    t = apply(signed(), action, LEAD_STAFF, NOW, CAL)
    assert t.answer == Respond(ProblemOutcome.solved, DONE)
    assert t.details == {"outcome": ProblemOutcome.solved, "done": DONE}
    assert t.state.outcome is ProblemOutcome.solved and t.state.responded_at == NOW
    assert t.event is ReferralEvent.responded


def test_coordinating_answer():
    action = Respond(ProblemOutcome.coordinating, DONE, plan=" 4月底前完成审批 ", next_date=D(2026, 4, 30), reason="y")
    t = apply(signed(), action, LEAD_STAFF, NOW, CAL)
    assert t.answer == Respond(ProblemOutcome.coordinating, DONE, plan="4月底前完成审批", next_date=D(2026, 4, 30))


def test_deferred_answer():
    action = Respond(ProblemOutcome.deferred, DONE, plan="x", reason=" 政策暂不允许 ")
    t = apply(signed(), action, LEAD_STAFF, NOW, CAL)
    assert t.answer == Respond(ProblemOutcome.deferred, DONE, reason="政策暂不允许")


@pytest.mark.parametrize(
    ("action", "field"),
    [
        (Respond(ProblemOutcome.solved, " "), "done"),
        (Respond(ProblemOutcome.deferred, "", reason="x"), "done"),
        (Respond(ProblemOutcome.coordinating, DONE, next_date=D(2026, 4, 30)), "plan"),
        (Respond(ProblemOutcome.coordinating, DONE, plan="p"), "next_date"),
        (Respond(ProblemOutcome.coordinating, DONE, plan="p", next_date=D(2026, 3, 4)), "next_date"),  # today
        (Respond(ProblemOutcome.coordinating, DONE, plan="p", next_date=D(2026, 3, 1)), "next_date"),
        (Respond(ProblemOutcome.deferred, DONE), "reason"),
        (Respond(ProblemOutcome.deferred, DONE, reason="  "), "reason"),
    ],
)
def test_incomplete_answers_are_refused(action, field):
    with pytest.raises(ReferralRuleError) as e:
        apply(signed(), action, LEAD_STAFF, NOW, CAL)
    assert e.value.field == field


# Review, on time, reopen


def test_accept_freezes_on_time_at_the_moment_of_closing():
    t = apply(responded(), Review(accept=True), SUPERVISOR, NOW, CAL)
    assert t.event is ReferralEvent.accepted
    assert t.state.status is S.closed and t.state.closed_at == NOW and t.state.on_time is True
    assert t.changes["on_time"] == (None, True)


@pytest.mark.parametrize(
    ("closed_at", "on_time"),
    [
        (end_of_day(DUE_DAY), True),
        (end_of_day(DUE_DAY) + dt.timedelta(microseconds=1), False),
        (shanghai(2026, 3, 20, 9), False),
    ],
)
def test_on_time_means_closed_at_or_before_the_current_deadline(closed_at, on_time):
    assert closed(at=closed_at).on_time is on_time


def test_on_time_counts_against_the_extended_deadline():
    s = step(signed(), RequestExtension(D(2026, 3, 13), "a"))
    s = step(s, DecideExtension(approve=True), SUPERVISOR)
    s = step(s, Respond(ProblemOutcome.solved, DONE), now=shanghai(2026, 3, 12, 9))
    s = step(s, Review(accept=True), SUPERVISOR, now=shanghai(2026, 3, 13, 18))
    assert s.on_time is True
    assert s.closed_at > s.original_deadline


def test_on_time_is_not_recomputed_later():
    late = closed(at=shanghai(2026, 3, 20, 9))
    assert late.on_time is False
    # Nothing a closed referral still accepts moves it but a reopen; failed attempts change nothing,
    # and a calendar that would now make the deadline later is never consulted again.
    generous = WorkCalendar({D(2026, 3, 9) + dt.timedelta(days=i): False for i in range(30)})
    for action, actor in [
        (RequestExtension(D(2026, 4, 30), "a"), LEAD_STAFF),
        (DecideExtension(approve=True, until=D(2026, 4, 30)), SUPERVISOR),
        (Review(accept=True), SUPERVISOR),
        (Cancel("x"), SUPERVISOR),
    ]:
        with pytest.raises(TransitionError):
            apply(late, action, actor, shanghai(2026, 4, 1), generous)
    assert late.on_time is False and late.closed_at == shanghai(2026, 3, 20, 9)


def test_send_back_is_a_redo_with_a_reason():
    t = apply(responded(), Review(accept=False, reason=" 反馈内容不完整 "), SUPERVISOR, NOW, CAL)
    assert t.event is ReferralEvent.sent_back
    assert t.state.status is S.signed and t.state.outcome is None
    assert t.state.deadline == end_of_day(DUE_DAY)
    assert t.details == {"reason": "反馈内容不完整"}


def test_send_back_may_give_a_new_allowance_and_keeps_the_original_deadline():
    at = shanghai(2026, 3, 10, 9)
    s = apply(responded(), Review(accept=False, reason="x", workdays=3), SUPERVISOR, at, CAL).state
    assert s.deadline == end_of_day(D(2026, 3, 13))
    assert s.original_deadline == end_of_day(DUE_DAY)


@pytest.mark.parametrize("review", [Review(accept=False), Review(accept=False, reason="x", workdays=0)])
def test_send_back_needs_a_reason_and_a_sensible_allowance(review):
    with pytest.raises(ReferralRuleError):
        apply(responded(), review, SUPERVISOR, NOW, CAL)


def test_reopen_after_an_unsatisfied_revisit():
    first = closed()
    at = shanghai(2026, 4, 1, 10)  # Wednesday; 清明 is Sat 4 – Mon 6 April
    t = apply(first, Reopen(" 企业回访不满意 "), SYSTEM, at, CAL)
    s = t.state
    assert t.event is ReferralEvent.reopened and t.details == {"reason": "企业回访不满意", "workdays": REOPEN_WORKDAYS}
    assert s.status is S.signed
    assert s.on_time is None and s.closed_at is None and s.outcome is None
    assert s.deadline == end_of_day(D(2026, 4, 9))  # 2, 3, 7, 8, 9 April
    assert s.original_deadline == first.original_deadline
    # The next close decides on time afresh, against the new deadline.
    s = step(s, Respond(ProblemOutcome.solved, DONE), now=shanghai(2026, 4, 8, 9))
    s = step(s, Review(accept=True), SUPERVISOR, now=shanghai(2026, 4, 8, 10))
    assert s.on_time is True and s.closed_at == shanghai(2026, 4, 8, 10)


@pytest.mark.parametrize("reopen", [Reopen(""), Reopen("x", workdays=0)])
def test_reopen_needs_a_reason_and_an_allowance(reopen):
    with pytest.raises(ReferralRuleError):
        apply(closed(), reopen, SYSTEM, NOW, CAL)


# Cancel


@pytest.mark.parametrize("state_name", [n for n in STATES if n not in ("closed", "cancelled")])
def test_cancel_any_open_referral(state_name):
    t = apply(STATES[state_name](), Cancel(" 重复交办 "), SUPERVISOR, NOW, CAL)
    assert t.state.status is S.cancelled and t.event is ReferralEvent.cancelled
    assert t.state.return_to is None and t.state.requested_until is None
    assert t.details == {"reason": "重复交办"}


def test_cancel_needs_a_reason():
    with pytest.raises(ReferralRuleError) as e:
        apply(issued(), Cancel(" "), SUPERVISOR, NOW, CAL)
    assert e.value.field == "reason"


# What a transition reports


def test_audit_changes_merge_state_changes_and_details():
    t = apply(signed(), RequestExtension(D(2026, 3, 13), "需协调"), LEAD_STAFF, NOW, CAL)
    assert t.audit_changes() == {
        "status": [S.signed, S.extension_requested],
        "requested_until": [None, D(2026, 3, 13)],
        "until": [None, D(2026, 3, 13)],
        "reason": [None, "需协调"],
    }


def test_errors_carry_a_code_and_a_message():
    with pytest.raises(TransitionError) as e:
        apply(closed(), Sign(), LEAD_STAFF, NOW, CAL)
    assert e.value.code == "invalid_transition" and "sign" in e.value.message and "closed" in str(e.value)
    with pytest.raises(ReferralRuleError) as r:
        apply(issued(), RequestReturn(""), LEAD_STAFF, NOW, CAL)
    assert r.value.code == "invalid" and r.value.field == "grounds" and r.value.message


@pytest.mark.parametrize("enum", [ReferralStatus, ReferralAction, ReferralEvent])
def test_every_member_has_a_chinese_label(enum):
    for member in enum:
        assert re.search(r"[\u4e00-\u9fff]", member.label), member


# How a problem follows its referrals


def r(status: ReferralStatus, outcome: ProblemOutcome | None = None) -> SimpleNamespace:
    return SimpleNamespace(status=status, outcome=outcome)


Out = ProblemOutcome


@pytest.mark.parametrize(
    ("referrals", "verdict"),
    [
        ([], None),
        ([r(S.cancelled)], None),
        ([r(S.issued)], ProblemVerdict(ProblemStatus.open, None)),
        ([r(S.responded, Out.solved)], ProblemVerdict(ProblemStatus.open, None)),  # not accepted yet
        ([r(S.closed, Out.solved)], ProblemVerdict(ProblemStatus.closed, Out.solved)),
        ([r(S.closed, Out.deferred)], ProblemVerdict(ProblemStatus.closed, Out.deferred)),
        ([r(S.closed, Out.coordinating)], ProblemVerdict(ProblemStatus.open, Out.coordinating)),
        ([r(S.closed, Out.solved), r(S.cancelled)], ProblemVerdict(ProblemStatus.closed, Out.solved)),
        ([r(S.closed, Out.solved), r(S.signed)], ProblemVerdict(ProblemStatus.open, None)),
        ([r(S.closed, Out.solved), r(S.closed, Out.deferred)], ProblemVerdict(ProblemStatus.closed, Out.deferred)),
        (
            [r(S.closed, Out.solved), r(S.closed, Out.coordinating)],
            ProblemVerdict(ProblemStatus.open, Out.coordinating),
        ),
        (
            [r(S.closed, Out.deferred), r(S.closed, Out.coordinating)],
            ProblemVerdict(ProblemStatus.open, Out.coordinating),
        ),
        ([r(S.closed, None)], ProblemVerdict(ProblemStatus.open, None)),  # inconsistent data stays open
    ],
)
def test_problem_status_for(referrals, verdict):
    assert problem_status_for(referrals) == verdict
    assert problem_status_for(iter(referrals)) == verdict


def test_problem_status_follows_a_referral_through_its_life():
    s = responded()
    assert problem_status_for([s]) == ProblemVerdict(ProblemStatus.open, None)
    s = step(s, Review(accept=True), SUPERVISOR)
    assert problem_status_for([s]) == ProblemVerdict(ProblemStatus.closed, ProblemOutcome.solved)
    s = step(s, Reopen("不满意"), SYSTEM)
    assert problem_status_for([s]) == ProblemVerdict(ProblemStatus.open, None)


def test_the_workflow_doc_names_every_state_and_action():
    doc = (Path(__file__).parents[2] / "docs" / "referral-workflow.md").read_text(encoding="utf-8")
    for member in [*ReferralStatus, *ReferralAction]:
        assert f"`{member.value}`" in doc, member
        assert member.label in doc, member
