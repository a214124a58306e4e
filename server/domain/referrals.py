"""The referral (交办单) state machine: who may move a referral from which state, and what changes.

`issue` creates a referral and `apply` moves it; both are pure: they take the current
`ReferralState` (a frozen snapshot, never an ORM row), the action with its fields, who acts,
the time and the working-day calendar, and return a `Transition` (the new state, what changed
and the facts to record) or raise. Nothing is changed when they raise.

    action              who                   from                          to
    sign                lead department       issued                        signed
    request_return      lead department       issued, signed                return_requested
    decide_return       supervisor            return_requested              issued (reassigned) | where it came from
    request_extension   lead department       signed, before the deadline   extension_requested
    decide_extension    supervisor            extension_requested           signed
    respond             lead department       signed                        responded
    review              supervisor            responded                     closed (accept) | signed (send back)
    reopen              system                closed                        signed (after an unsatisfied revisit)
    cancel              supervisor            any open state                cancelled

The deadline clock starts at issue and restarts when a return is approved (a new lead
department: a new original deadline). An approved extension, a send-back with a new allowance
and a reopen move the current deadline; the original one stays. Whether a referral was closed
on time is decided once, when it is accepted, and stored; nothing here recomputes it later.
The whole workflow, with a diagram, is in `docs/referral-workflow.md`.

Exceptions, each mapping to one HTTP status in the API, checked in this order so that the same
attempt always gets the same answer:

    ReferralError                 .code (stable), .message
     ├── ReferralPermissionError  this actor may not take this action on this referral → 403
     ├── TransitionError          the action does not apply in the referral's state   → 409
     └── ReferralRuleError        a field is missing or invalid (.field)              → 422
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import ClassVar, Protocol

from schemas.enums import LabelledEnum, ProblemOutcome, ProblemStatus, Role
from server.domain.periods import local_date
from server.domain.problems import status_for
from server.domain.workdays import WorkCalendar, end_of_day

# A referral's allowance is counted in working days; this bound only catches typing mistakes.
MAX_WORKDAYS = 250
# The new allowance a referral gets when an unsatisfied revisit reopens it.
REOPEN_WORKDAYS = 5


class ReferralStatus(LabelledEnum):
    issued = ("issued", "已交办")
    return_requested = ("return_requested", "申请退回")
    signed = ("signed", "办理中")
    extension_requested = ("extension_requested", "申请延期")
    responded = ("responded", "已反馈")
    closed = ("closed", "已办结")
    cancelled = ("cancelled", "已撤销")


OPEN_STATUSES = frozenset(
    {
        ReferralStatus.issued,
        ReferralStatus.return_requested,
        ReferralStatus.signed,
        ReferralStatus.extension_requested,
        ReferralStatus.responded,
    }
)


class ReferralAction(LabelledEnum):
    """What a user (or the system) asks for; `issue` creates, the others go through `apply`."""

    issue = ("issue", "交办")
    sign = ("sign", "签收")
    request_return = ("request_return", "申请退回")
    decide_return = ("decide_return", "审核退回")
    request_extension = ("request_extension", "申请延期")
    decide_extension = ("decide_extension", "审核延期")
    respond = ("respond", "办理反馈")
    review = ("review", "审核反馈")
    reopen = ("reopen", "重新办理")
    cancel = ("cancel", "撤销")


class ReferralEvent(LabelledEnum):
    """What happened, one per line of a referral's history (an action can end two ways)."""

    issued = ("issued", "交办")
    signed = ("signed", "签收")
    return_requested = ("return_requested", "申请退回")
    reassigned = ("reassigned", "同意退回并改派")
    return_refused = ("return_refused", "不同意退回")
    extension_requested = ("extension_requested", "申请延期")
    extension_approved = ("extension_approved", "同意延期")
    extension_rejected = ("extension_rejected", "不同意延期")
    responded = ("responded", "办理反馈")
    accepted = ("accepted", "审核通过并办结")
    sent_back = ("sent_back", "退回重办")
    reopened = ("reopened", "回访不满意，重新办理")
    cancelled = ("cancelled", "撤销")


class ReferralError(Exception):
    """A referral action refused by the rules; `code` is stable, `message` is for people."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class TransitionError(ReferralError):
    """The action does not apply to a referral in its current state (API: 409)."""


class ReferralPermissionError(ReferralError):
    """The actor's role or department may not take this action (API: 403)."""


class ReferralRuleError(ReferralError):
    """A field the action needs is missing or invalid (API: 422); `field` names it."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__("invalid", message)
        self.field = field


@dataclass(frozen=True)
class ActorInfo:
    """Who acts: a role and, for department staff, their department. `role=None` is the system."""

    role: Role | None
    department_id: uuid.UUID | None = None

    @property
    def is_system(self) -> bool:
        return self.role is None


# The scheduler and the revisit that reopens a referral act as the system.
SYSTEM = ActorInfo(role=None)


@dataclass(frozen=True)
class ReferralState:
    """Everything the rules need to know about one referral; times are aware, deadlines are UTC.

    `deadline` is the current deadline, `original_deadline` the one set at issue (both are set
    afresh when a return is approved); an approved extension, a send-back with a new allowance
    and a reopen move `deadline` only. `return_to` is the state a refused return goes back to; `requested_until`
    the day a pending extension asks for. `on_time` is None until the referral is closed.
    """

    status: ReferralStatus
    lead_department_id: uuid.UUID
    issued_at: dt.datetime
    workdays: int
    original_deadline: dt.datetime
    deadline: dt.datetime
    co_department_ids: frozenset[uuid.UUID] = frozenset()
    signed_at: dt.datetime | None = None
    return_to: ReferralStatus | None = None
    requested_until: dt.date | None = None
    outcome: ProblemOutcome | None = None
    responded_at: dt.datetime | None = None
    closed_at: dt.datetime | None = None
    on_time: bool | None = None

    @property
    def is_open(self) -> bool:
        return self.status in OPEN_STATUSES

    @property
    def due_day(self) -> dt.date:
        """The working day the current deadline ends (Beijing time)."""
        return local_date(self.deadline)


# Actions: one frozen dataclass each, with the fields the action needs. Blank text counts as missing.


@dataclass(frozen=True)
class Sign:
    action: ClassVar[ReferralAction] = ReferralAction.sign


@dataclass(frozen=True)
class RequestReturn:
    action: ClassVar[ReferralAction] = ReferralAction.request_return
    grounds: str


@dataclass(frozen=True)
class DecideReturn:
    """approve=True reassigns to `reassign_to` (and, if given, new co-departments); False refuses."""

    action: ClassVar[ReferralAction] = ReferralAction.decide_return
    approve: bool
    reassign_to: uuid.UUID | None = None
    co_department_ids: frozenset[uuid.UUID] | None = None
    reason: str = ""


@dataclass(frozen=True)
class RequestExtension:
    action: ClassVar[ReferralAction] = ReferralAction.request_extension
    until: dt.date
    reason: str


@dataclass(frozen=True)
class DecideExtension:
    """approve=True moves the deadline to the end of `until` (default: the day requested)."""

    action: ClassVar[ReferralAction] = ReferralAction.decide_extension
    approve: bool
    until: dt.date | None = None
    reason: str = ""


@dataclass(frozen=True)
class Respond:
    """The department's answer: `done` always; coordinating needs `plan` and `next_date`, deferred `reason`."""

    action: ClassVar[ReferralAction] = ReferralAction.respond
    outcome: ProblemOutcome
    done: str
    plan: str = ""
    next_date: dt.date | None = None
    reason: str = ""


@dataclass(frozen=True)
class Review:
    """accept=True closes; False sends the answer back to be redone, optionally with a new allowance."""

    action: ClassVar[ReferralAction] = ReferralAction.review
    accept: bool
    reason: str = ""
    workdays: int | None = None


@dataclass(frozen=True)
class Reopen:
    action: ClassVar[ReferralAction] = ReferralAction.reopen
    reason: str
    workdays: int = REOPEN_WORKDAYS


@dataclass(frozen=True)
class Cancel:
    action: ClassVar[ReferralAction] = ReferralAction.cancel
    reason: str


Action = Sign | RequestReturn | DecideReturn | RequestExtension | DecideExtension | Respond | Review | Reopen | Cancel


@dataclass(frozen=True)
class Rule:
    """Who may take an action (a role, or None for the system) and from which states."""

    actor: Role | None
    sources: frozenset[ReferralStatus]


def _from(*statuses: ReferralStatus) -> frozenset[ReferralStatus]:
    return frozenset(statuses)


RULES: Mapping[ReferralAction, Rule] = {
    ReferralAction.sign: Rule(Role.department_staff, _from(ReferralStatus.issued)),
    ReferralAction.request_return: Rule(Role.department_staff, _from(ReferralStatus.issued, ReferralStatus.signed)),
    ReferralAction.decide_return: Rule(Role.supervisor, _from(ReferralStatus.return_requested)),
    ReferralAction.request_extension: Rule(Role.department_staff, _from(ReferralStatus.signed)),
    ReferralAction.decide_extension: Rule(Role.supervisor, _from(ReferralStatus.extension_requested)),
    ReferralAction.respond: Rule(Role.department_staff, _from(ReferralStatus.signed)),
    ReferralAction.review: Rule(Role.supervisor, _from(ReferralStatus.responded)),
    ReferralAction.reopen: Rule(None, _from(ReferralStatus.closed)),
    ReferralAction.cancel: Rule(Role.supervisor, OPEN_STATUSES),
}


@dataclass(frozen=True)
class Transition:
    """The outcome of an action: the new state and what to record.

    `details` holds the action's own fields, cleaned (reasons, dates, the answer), and
    `changes` the state fields that differ, as {field: (old, new)}; `audit_changes` merges both
    in the audit log's {field: [old, new]} shape. `answer` is the cleaned response for `respond`.
    """

    action: ReferralAction
    event: ReferralEvent
    previous: ReferralState | None
    state: ReferralState
    details: Mapping[str, object] = dataclasses.field(default_factory=dict)
    answer: Respond | None = None

    @property
    def changes(self) -> dict[str, tuple[object, object]]:
        diff: dict[str, tuple[object, object]] = {}
        for f in dataclasses.fields(ReferralState):
            old = getattr(self.previous, f.name) if self.previous is not None else None
            new = getattr(self.state, f.name)
            if old != new:
                diff[f.name] = (old, new)
        return diff

    def audit_changes(self) -> dict[str, list[object]]:
        merged: dict[str, list[object]] = {name: [old, new] for name, (old, new) in self.changes.items()}
        for name, value in self.details.items():
            merged.setdefault(name, [None, value])
        return merged


def awaiting(status: ReferralStatus) -> Role | None:
    """Whose move it is: the lead department's staff, a supervisor, or nobody (closed, cancelled)."""
    if status in (ReferralStatus.issued, ReferralStatus.signed):
        return Role.department_staff
    if status in OPEN_STATUSES:
        return Role.supervisor
    return None


def can_read(referral: ReferralState, actor: ActorInfo) -> bool:
    """Supervisors, admins and the system read every referral; staff of the lead and co-departments theirs."""
    if actor.role in (None, Role.supervisor, Role.admin):
        return True
    if actor.role is Role.department_staff and actor.department_id is not None:
        return actor.department_id == referral.lead_department_id or actor.department_id in referral.co_department_ids
    return False


def allowed_actions(referral: ReferralState, actor: ActorInfo) -> list[ReferralAction]:
    """The actions this actor may take now (the buttons to show); their fields may still be refused."""
    allowed = []
    for action, rule in RULES.items():
        if referral.status in rule.sources and _permission_problem(rule, referral, actor) is None:
            allowed.append(action)
    return allowed


def issue(
    lead_department_id: uuid.UUID,
    workdays: int,
    actor: ActorInfo,
    now: dt.datetime,
    calendar: WorkCalendar,
    co_department_ids: Collection[uuid.UUID] = (),
) -> Transition:
    """A new referral, issued now by a supervisor, due at the end of the `workdays`-th working day."""
    if actor.role is not Role.supervisor:
        raise ReferralPermissionError("role", "Only a supervisor issues referrals.")
    _check_now(now)
    _check_workdays("workdays", workdays)
    co = frozenset(co_department_ids)
    if lead_department_id in co:
        raise ReferralRuleError("co_department_ids", "The lead department cannot also be a co-department.")
    deadline = calendar.deadline_at(now, workdays)
    state = ReferralState(
        status=ReferralStatus.issued,
        lead_department_id=lead_department_id,
        co_department_ids=co,
        issued_at=now,
        workdays=workdays,
        original_deadline=deadline,
        deadline=deadline,
    )
    return Transition(ReferralAction.issue, ReferralEvent.issued, None, state)


def apply(
    referral: ReferralState, action: Action, actor: ActorInfo, now: dt.datetime, calendar: WorkCalendar
) -> Transition:
    """Take `action` on `referral` as `actor` at `now`; raise a ReferralError when the rules refuse."""
    rule = RULES[action.action]
    problem = _permission_problem(rule, referral, actor)
    if problem is not None:
        raise ReferralPermissionError(*problem)
    if referral.status not in rule.sources:
        raise TransitionError(
            "invalid_transition",
            f"Cannot {action.action.value.replace('_', ' ')} a referral that is {referral.status.value}.",
        )
    _check_now(now)
    event, state, details, answer = _next(referral, action, now, calendar)
    return Transition(action.action, event, referral, state, details, answer)


_Step = tuple[ReferralEvent, ReferralState, dict[str, object], Respond | None]


def _next(r: ReferralState, action: Action, now: dt.datetime, calendar: WorkCalendar) -> _Step:
    replace = dataclasses.replace
    match action:
        case Sign():
            return ReferralEvent.signed, replace(r, status=ReferralStatus.signed, signed_at=now), {}, None

        case RequestReturn(grounds=grounds):
            grounds = _required("grounds", grounds, "Say why the referral should go to another department.")
            state = replace(r, status=ReferralStatus.return_requested, return_to=r.status)
            return ReferralEvent.return_requested, state, {"grounds": grounds}, None

        case DecideReturn(approve=True, reassign_to=new_lead, co_department_ids=co, reason=reason):
            if new_lead is None:
                raise ReferralRuleError("reassign_to", "Choose the department to reassign the referral to.")
            if new_lead == r.lead_department_id:
                raise ReferralRuleError("reassign_to", "Reassign to a department other than the current lead.")
            co_departments = frozenset(r.co_department_ids if co is None else co) - {new_lead}
            deadline = calendar.deadline_at(now, r.workdays)
            state = replace(
                r,
                status=ReferralStatus.issued,
                lead_department_id=new_lead,
                co_department_ids=co_departments,
                issued_at=now,
                original_deadline=deadline,
                deadline=deadline,
                signed_at=None,
                return_to=None,
            )
            return ReferralEvent.reassigned, state, _reason(reason), None

        case DecideReturn(approve=False, reason=reason):
            reason = _required("reason", reason, "Say why the return is refused.")
            back = r.return_to or (ReferralStatus.signed if r.signed_at else ReferralStatus.issued)
            state = replace(r, status=back, return_to=None)
            return ReferralEvent.return_refused, state, {"reason": reason}, None

        case RequestExtension(until=until, reason=reason):
            if now > r.deadline:
                raise TransitionError("deadline_passed", "The deadline has passed: too late to ask for more time.")
            reason = _required("reason", reason, "Say why more time is needed.")
            _check_new_due_day("until", until, r, calendar)
            state = replace(r, status=ReferralStatus.extension_requested, requested_until=until)
            return ReferralEvent.extension_requested, state, {"until": until, "reason": reason}, None

        case DecideExtension(approve=True, until=until, reason=reason):
            granted = until or r.requested_until
            if granted is None:
                raise ReferralRuleError("until", "Give the day the deadline moves to.")
            _check_new_due_day("until", granted, r, calendar)
            state = replace(r, status=ReferralStatus.signed, deadline=end_of_day(granted), requested_until=None)
            return ReferralEvent.extension_approved, state, {"until": granted, **_reason(reason)}, None

        case DecideExtension(approve=False, reason=reason):
            reason = _required("reason", reason, "Say why the extension is refused.")
            state = replace(r, status=ReferralStatus.signed, requested_until=None)
            return ReferralEvent.extension_rejected, state, {"reason": reason}, None

        case Respond():
            answer = _clean_answer(action, local_date(now))
            state = replace(r, status=ReferralStatus.responded, outcome=answer.outcome, responded_at=now)
            fields = {k: v for k, v in dataclasses.asdict(answer).items() if v not in (None, "")}
            return ReferralEvent.responded, state, fields, answer

        case Review(accept=True, reason=reason):
            # Frozen here: a later change of deadline, calendar or clock never makes it late again.
            state = replace(r, status=ReferralStatus.closed, closed_at=now, on_time=now <= r.deadline)
            return ReferralEvent.accepted, state, _reason(reason), None

        case Review(accept=False, reason=reason, workdays=workdays):
            reason = _required("reason", reason, "Say what must be redone.")
            state = replace(r, status=ReferralStatus.signed, outcome=None)
            if workdays is None:
                return ReferralEvent.sent_back, state, {"reason": reason}, None
            _check_workdays("workdays", workdays)
            state = replace(state, deadline=calendar.deadline_at(now, workdays))
            return ReferralEvent.sent_back, state, {"reason": reason, "workdays": workdays}, None

        case Reopen(reason=reason, workdays=workdays):
            reason = _required("reason", reason, "Say why the referral is reopened.")
            _check_workdays("workdays", workdays)
            state = replace(
                r,
                status=ReferralStatus.signed,
                outcome=None,
                closed_at=None,
                on_time=None,
                deadline=calendar.deadline_at(now, workdays),
            )
            return ReferralEvent.reopened, state, {"reason": reason, "workdays": workdays}, None

        case Cancel(reason=reason):
            reason = _required("reason", reason, "Say why the referral is cancelled.")
            state = replace(r, status=ReferralStatus.cancelled, return_to=None, requested_until=None)
            return ReferralEvent.cancelled, state, {"reason": reason}, None

    raise TypeError(f"not a referral action: {action!r}")  # pragma: no cover - the union is exhaustive


def _permission_problem(rule: Rule, referral: ReferralState, actor: ActorInfo) -> tuple[str, str] | None:
    if actor.role is not rule.actor:
        who = "the system" if rule.actor is None else f"a {rule.actor.value.replace('_', ' ')}"
        return "role", f"Only {who} may do this."
    if rule.actor is Role.department_staff and actor.department_id != referral.lead_department_id:
        if actor.department_id in referral.co_department_ids:
            return "co_department", "A co-department reads the referral; only the lead department acts on it."
        return "department", "The referral belongs to another department."
    return None


def _check_now(now: dt.datetime) -> None:
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("now must be an aware datetime")


def _check_workdays(field: str, workdays: int) -> None:
    if not 1 <= workdays <= MAX_WORKDAYS:
        raise ReferralRuleError(field, f"Give between 1 and {MAX_WORKDAYS} working days.")


def _check_new_due_day(field: str, day: dt.date, r: ReferralState, calendar: WorkCalendar) -> None:
    if day <= r.due_day:
        raise ReferralRuleError(field, f"The new date must be after the current deadline ({r.due_day.isoformat()}).")
    if not calendar.is_workday(day):
        raise ReferralRuleError(field, f"{day.isoformat()} is not a working day.")


def _required(field: str, text: str | None, message: str) -> str:
    cleaned = (text or "").strip()
    if not cleaned:
        raise ReferralRuleError(field, message)
    return cleaned


def _reason(text: str | None) -> dict[str, object]:
    cleaned = (text or "").strip()
    return {"reason": cleaned} if cleaned else {}


def _clean_answer(answer: Respond, today: dt.date) -> Respond:
    """The answer with its text stripped and only the fields its outcome uses."""
    done = _required("done", answer.done, "Say what was done.")
    if answer.outcome is ProblemOutcome.coordinating:
        plan = _required("plan", answer.plan, "A coordinating answer needs a plan.")
        if answer.next_date is None:
            raise ReferralRuleError("next_date", "A coordinating answer needs the date of the next step.")
        if answer.next_date <= today:
            raise ReferralRuleError("next_date", "The date of the next step must be in the future.")
        return Respond(answer.outcome, done, plan=plan, next_date=answer.next_date)
    if answer.outcome is ProblemOutcome.deferred:
        reason = _required("reason", answer.reason, "A deferred answer needs a reason.")
        return Respond(answer.outcome, done, reason=reason)
    return Respond(answer.outcome, done)


# How a problem follows its referrals.


class HasOutcome(Protocol):
    """A referral as `problem_status_for` sees it: a ReferralState, an ORM row or a result row."""

    @property
    def status(self) -> ReferralStatus: ...

    @property
    def outcome(self) -> ProblemOutcome | None: ...


@dataclass(frozen=True)
class ProblemVerdict:
    status: ProblemStatus
    outcome: ProblemOutcome | None


# When the departments' accepted answers differ, the one with work left wins: a problem one
# department solved and another is still coordinating is being coordinated.
_OUTCOME_PRECEDENCE = (ProblemOutcome.coordinating, ProblemOutcome.deferred, ProblemOutcome.solved)


def problem_status_for(referrals: Iterable[HasOutcome]) -> ProblemVerdict | None:
    """The status and outcome a problem takes from its referrals; None when they say nothing.

    - Cancelled referrals do not count; with no other referral the answer is None and the
      problem keeps what triage gave it.
    - While any referral is open (not yet accepted) the problem is open with no outcome yet:
      an answer counts only once a supervisor has accepted it.
    - Once every referral is closed, the outcome is the accepted one with most work left
      (coordinating, then deferred, then solved), and the status follows the outcome as for any
      problem: solved and deferred close it, coordinating keeps it open.
    """
    live = [r for r in referrals if r.status is not ReferralStatus.cancelled]
    if not live:
        return None
    if any(r.status is not ReferralStatus.closed for r in live):
        return ProblemVerdict(ProblemStatus.open, None)
    outcomes = {r.outcome for r in live}
    outcome = next((o for o in _OUTCOME_PRECEDENCE if o in outcomes), None)
    return ProblemVerdict(status_for(outcome), outcome)
