"""Referrals (交办单) on the store: issue one, move it through the workflow, read and list them.

Every move goes through server/domain/referrals.py: the row is locked and turned into a
ReferralState, `apply` decides, and the new state is written back with one history row
(referral_events), the audit entry, the problems' status (`problem_status_for`) and the
follow-ups it brings (a revisit after an accepted 'solved' answer), all in the caller's
transaction. Nothing is written when a rule refuses. The workflow is in docs/referral-workflow.md.

Errors: a role that never takes an action → 403; a referral the actor may not read → 404; a stale
`version` → 409 version_conflict; then the domain's answer: 403 (department), 409
(invalid_transition, deadline_passed), 422 (a field).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Select, not_, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DataError
from sqlalchemy.orm import Session, selectinload

from schemas.common import INT32_MAX
from schemas.enums import ProblemOutcome, ProblemStatus, Role
from schemas.followups import Satisfaction
from server.db.followup_models import (
    FollowUp,
    Referral,
    ReferralCounter,
    ReferralDepartment,
    ReferralEventRow,
    ReferralProblem,
)
from server.db.models import Department, Problem, User
from server.db.types import utcnow
from server.domain import referrals as rules
from server.domain.followups import needs_revisit
from server.domain.numbering import parse_referral_number, referral_number
from server.domain.periods import local_date
from server.domain.referrals import (
    OPEN_STATUSES,
    REOPEN_WORKDAYS,
    RULES,
    Action,
    ActorInfo,
    ReferralAction,
    ReferralEvent,
    ReferralState,
    ReferralStatus,
    Transition,
)
from server.domain.workdays import WorkCalendar
from server.errors import ApiError, forbidden, invalid, not_found, version_conflict
from server.services import audit, followups
from server.services.actors import Actor
from server.services.calendar import load_calendar
from server.services.followups import member
from server.services.pagination import Page, paginate

# How far ahead an extension or a next step may go: a bound against typing mistakes.
DATE_HORIZON = dt.timedelta(days=730)
OPEN_VALUES = tuple(s.value for s in OPEN_STATUSES)

# History lines this service adds beside the state machine's events.
REVISITED = "revisited"
PROGRESS_REPORTED = "progress_reported"
EXTRA_EVENT_LABELS = {REVISITED: "回访", PROGRESS_REPORTED: "进展报告"}

# ReferralState fields stored as columns of the same name (co-departments are rows of their own).
_COLUMNS = (
    "status",
    "lead_department_id",
    "issued_at",
    "workdays",
    "original_deadline",
    "deadline",
    "signed_at",
    "return_to",
    "requested_until",
    "outcome",
    "responded_at",
    "closed_at",
    "on_time",
)


# Rows ⇄ the domain ---------------------------------------------------------------------------


def state_of(referral: Referral) -> ReferralState:
    """The domain's view of a referral row (what `due_notices` and `apply` take)."""
    return ReferralState(
        status=member(ReferralStatus, referral.status),
        lead_department_id=referral.lead_department_id,
        issued_at=referral.issued_at,
        workdays=referral.workdays,
        original_deadline=referral.original_deadline,
        deadline=referral.deadline,
        co_department_ids=frozenset(d.department_id for d in referral.co_departments),
        signed_at=referral.signed_at,
        return_to=member(ReferralStatus, referral.return_to) if referral.return_to else None,
        requested_until=referral.requested_until,
        outcome=member(ProblemOutcome, referral.outcome) if referral.outcome else None,
        responded_at=referral.responded_at,
        closed_at=referral.closed_at,
        on_time=referral.on_time,
    )


def actor_info(actor: Actor) -> ActorInfo:
    return ActorInfo(role=actor.role, department_id=actor.department_id)


def system_actor(on_behalf_of: Actor | None = None) -> Actor:
    """The system, acting because of someone's request (kept in the audit log's device and request)."""
    if on_behalf_of is None:
        return Actor(user_id=None, role=None)
    return dataclasses.replace(on_behalf_of, user_id=None, role=None, department_id=None)


def _store_state(referral: Referral, state: ReferralState) -> None:
    for name in _COLUMNS:
        value = getattr(state, name)
        if isinstance(value, enum.Enum):
            value = value.value
        if getattr(referral, name) != value:
            setattr(referral, name, value)
    current = {row.department_id: row for row in referral.co_departments}
    for department_id in set(current) - state.co_department_ids:
        referral.co_departments.remove(current[department_id])
    for department_id in sorted(state.co_department_ids - set(current)):
        referral.co_departments.append(ReferralDepartment(department_id=department_id))


@contextmanager
def _rules() -> Iterator[None]:
    """The domain's refusals as the API's errors."""
    try:
        yield
    except rules.ReferralPermissionError as e:
        raise ApiError(403, e.message, details={"reason": e.code}) from e
    except rules.TransitionError as e:
        raise ApiError(409, e.message, code=e.code) from e
    except rules.ReferralRuleError as e:
        raise ApiError(422, errors={e.field: [e.message]}) from e


def build_action(name: ReferralAction, data: dict[str, Any]) -> Action:
    """The domain action for an API body (its fields as the schemas in schemas/referrals.py load them)."""
    match name:
        case ReferralAction.sign:
            return rules.Sign()
        case ReferralAction.request_return:
            return rules.RequestReturn(grounds=data["grounds"])
        case ReferralAction.decide_return:
            co = data.get("co_department_ids")
            return rules.DecideReturn(
                approve=data["approve"],
                reassign_to=data.get("reassign_to"),
                co_department_ids=None if co is None else frozenset(co),
                reason=data.get("reason", ""),
            )
        case ReferralAction.request_extension:
            return rules.RequestExtension(until=data["until"], reason=data["reason"])
        case ReferralAction.decide_extension:
            until, reason = data.get("until"), data.get("reason", "")
            return rules.DecideExtension(approve=data["approve"], until=until, reason=reason)
        case ReferralAction.respond:
            return rules.Respond(
                outcome=data["outcome"],
                done=data["done"],
                plan=data.get("plan", ""),
                next_date=data.get("next_date"),
                reason=data.get("reason", ""),
            )
        case ReferralAction.review:
            return rules.Review(accept=data["accept"], reason=data.get("reason", ""), workdays=data.get("workdays"))
        case ReferralAction.reopen:
            return rules.Reopen(reason=data["reason"], workdays=data.get("workdays", REOPEN_WORKDAYS))
        case ReferralAction.cancel:
            return rules.Cancel(reason=data["reason"])
    raise ValueError(f"not an action taken through apply: {name}")


# Who reads what -------------------------------------------------------------------------------


def visible(query: Select[Any], actor: Actor) -> Select[Any]:
    """Supervisors, admins and the system read every referral; department staff those their
    department leads or co-handles; cadres those of problems they raised or revisit."""
    if actor.reads_everything or actor.role is None:
        return query
    if actor.role is Role.department_staff:
        co = select(ReferralDepartment.referral_id).where(ReferralDepartment.department_id == actor.department_id)
        return query.where(or_(Referral.lead_department_id == actor.department_id, Referral.id.in_(co)))
    if actor.role is Role.cadre:
        raised = (
            select(ReferralProblem.referral_id)
            .join(Problem, Problem.id == ReferralProblem.problem_id)
            .where(Problem.cadre_id == actor.user_id)
        )
        revisits = select(FollowUp.referral_id).where(
            FollowUp.assignee_id == actor.user_id, FollowUp.referral_id.is_not(None)
        )
        return query.where(or_(Referral.id.in_(raised), Referral.id.in_(revisits)))
    raise forbidden()


def get_referral(session: Session, actor: Actor, referral_id: uuid.UUID) -> Referral:
    """One referral the actor may read, else 404."""
    referral = session.scalar(
        visible(select(Referral), actor)
        .where(Referral.id == referral_id)
        .options(selectinload(Referral.co_departments), selectinload(Referral.problems))
    )
    if referral is None:
        raise not_found("Referral")
    return referral


def _locked(session: Session, actor: Actor, referral_id: uuid.UUID) -> Referral:
    """The referral row under a lock held until commit (PostgreSQL; SQLite writers are serial)."""
    referral = session.scalar(
        visible(select(Referral), actor)
        .where(Referral.id == referral_id)
        .with_for_update(of=Referral)
        .execution_options(populate_existing=True)
    )
    if referral is None:
        raise not_found("Referral")
    return referral


def list_referrals(
    session: Session, actor: Actor, args: dict[str, Any], *, limit: int, now: dt.datetime | None = None
) -> Page[Referral]:
    """Referrals the actor may read, newest number first.

    Filters: status, department (lead or co), overdue (open and past the current deadline),
    year, problem, number (as people type it).
    """
    now = now or utcnow()
    query = visible(select(Referral), actor).options(
        selectinload(Referral.co_departments), selectinload(Referral.problems)
    )
    if args.get("status"):
        query = query.where(Referral.status == args["status"])
    if args.get("department"):
        co = select(ReferralDepartment.referral_id).where(ReferralDepartment.department_id == args["department"])
        query = query.where(or_(Referral.lead_department_id == args["department"], Referral.id.in_(co)))
    if args.get("overdue") is not None:
        late = Referral.status.in_(OPEN_VALUES) & (Referral.deadline < now)
        query = query.where(late if args["overdue"] else not_(late))
    if args.get("year"):
        query = query.where(Referral.year == args["year"])
    if args.get("problem"):
        query = query.where(
            Referral.id.in_(select(ReferralProblem.referral_id).where(ReferralProblem.problem_id == args["problem"]))
        )
    if args.get("number"):
        try:
            number = parse_referral_number(args["number"])
        except ValueError as e:
            raise invalid("number", "Not a referral number, e.g. 徐工信交〔2026〕第0001号.") from e
        if number.seq > INT32_MAX:
            raise invalid("number", "No referral has such a number.")
        query = query.where(Referral.year == number.year, Referral.seq == number.seq)
    try:
        return paginate(
            session, query, [Referral.year, Referral.seq], cursor=args.get("cursor"), limit=limit, descending=True
        )
    except (OverflowError, DataError) as e:  # a forged cursor with a number no column holds
        raise ApiError(400, "Invalid cursor.", code="invalid_cursor") from e


def open_referrals(session: Session) -> list[Referral]:
    """Every open referral with its co-departments, for the scheduler's sweep (map with `state_of`)."""
    return list(
        session.scalars(
            select(Referral)
            .where(Referral.status.in_(OPEN_VALUES))
            .options(selectinload(Referral.co_departments))
            .order_by(Referral.deadline, Referral.id)
        )
    )


# Issuing ------------------------------------------------------------------------------------


def next_number(session: Session, year: int) -> int:
    """The next sequence number of `year`, from the counter row locked until commit: gapless, unique."""
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    session.execute(
        insert(ReferralCounter).values(year=year, last_seq=0).on_conflict_do_nothing(index_elements=["year"])
    )
    seq = session.execute(
        update(ReferralCounter)
        .where(ReferralCounter.year == year)
        .values(last_seq=ReferralCounter.last_seq + 1)
        .returning(ReferralCounter.last_seq)
    ).scalar_one()
    return int(seq)


def _check_departments(session: Session, field: str, ids: Sequence[uuid.UUID]) -> None:
    if not ids:
        return
    found = set(session.scalars(select(Department.id).where(Department.id.in_(ids), Department.active.is_(True))))
    if set(ids) - found:
        raise invalid(field, "No such active department.")


def issue_referral(
    session: Session,
    actor: Actor,
    data: dict[str, Any],
    *,
    now: dt.datetime | None = None,
    calendar: WorkCalendar | None = None,
) -> Referral:
    """A supervisor hands problems to a lead department: numbered per year, the clock starts now.

    `data`: problem_ids, lead_department_id, co_department_ids, requirements, workdays.
    """
    actor.require(Role.supervisor)
    now = now or utcnow()
    calendar = calendar or load_calendar(session)
    ids = list(data["problem_ids"])
    problems = {p.id: p for p in session.scalars(select(Problem).where(Problem.id.in_(ids)))}
    if set(ids) - set(problems):
        raise invalid("problem_ids", "No such problem.")
    if any(p.duplicate_of_id is not None for p in problems.values()):
        raise invalid("problem_ids", "A merged duplicate cannot be referred; refer the problem it was merged into.")
    lead, co = data["lead_department_id"], list(data.get("co_department_ids") or ())
    _check_departments(session, "lead_department_id", [lead])
    _check_departments(session, "co_department_ids", co)
    with _rules():
        transition = rules.issue(lead, data["workdays"], actor_info(actor), now, calendar, co)
    requirements = (data.get("requirements") or "").strip()
    if not requirements:
        raise invalid("requirements", "Say what the department is asked to do.")
    year = local_date(now).year
    seq = next_number(session, year)
    referral = Referral(
        number=referral_number(year, seq),
        year=year,
        seq=seq,
        issued_by_id=actor.user_id,
        requirements=requirements,
        version=1,
    )
    _store_state(referral, transition.state)
    referral.problems = [ReferralProblem(problem_id=pid, problem=problems[pid]) for pid in ids]
    session.add(referral)
    session.flush()
    extra = {"number": referral.number, "requirements": requirements, "problem_ids": ids}
    _record(session, actor, referral, transition, now, extra)
    _follow_problems(session, actor, referral, now, lead_changed=True)
    return referral


# Acting -------------------------------------------------------------------------------------


def act(
    session: Session,
    actor: Actor,
    referral_id: uuid.UUID,
    name: ReferralAction,
    data: dict[str, Any],
    *,
    now: dt.datetime | None = None,
    calendar: WorkCalendar | None = None,
    revisit_workdays: int = followups.REVISIT_WORKDAYS,
) -> Referral:
    """Take the action `name` with its fields `data` (including the `version` read) on a referral."""
    rule = RULES[name]
    if rule.actor is None or actor.role is not rule.actor:
        who = rule.actor.value.replace("_", " ") if rule.actor else "the system"
        raise forbidden(f"Only {who} may do this.")
    referral = _locked(session, actor, referral_id)
    if referral.version != data.get("version"):
        raise version_conflict(referral.version)
    now = now or utcnow()
    calendar = calendar or load_calendar(session)
    with _rules():
        transition = rules.apply(state_of(referral), build_action(name, data), actor_info(actor), now, calendar)
    _check_references(session, transition, now)
    _write(session, actor, referral, transition, now, calendar, revisit_workdays)
    return referral


def _check_references(session: Session, t: Transition, now: dt.datetime) -> None:
    """What the pure rules cannot know: that departments exist, that dates are not absurdly far."""
    if t.event is ReferralEvent.reassigned:
        _check_departments(session, "reassign_to", [t.state.lead_department_id])
        _check_departments(session, "co_department_ids", sorted(t.state.co_department_ids))
    horizon = local_date(now) + DATE_HORIZON
    for field in ("until", "next_date"):
        day = t.details.get(field)
        if isinstance(day, dt.date) and day > horizon:
            raise invalid(field, "The date is more than two years ahead.")


def reopen_referral(
    session: Session,
    referral_id: uuid.UUID,
    reason: str,
    *,
    on_behalf_of: Actor | None = None,
    now: dt.datetime | None = None,
    calendar: WorkCalendar | None = None,
    workdays: int = REOPEN_WORKDAYS,
) -> Referral:
    """The system reopens a closed referral (an unsatisfied revisit) with a new allowance."""
    actor = system_actor(on_behalf_of)
    referral = _locked(session, actor, referral_id)
    now = now or utcnow()
    calendar = calendar or load_calendar(session)
    with _rules():
        transition = rules.apply(
            state_of(referral), rules.Reopen(reason=reason, workdays=workdays), rules.SYSTEM, now, calendar
        )
    _write(session, actor, referral, transition, now, calendar, followups.REVISIT_WORKDAYS)
    return referral


def _write(
    session: Session,
    actor: Actor,
    referral: Referral,
    t: Transition,
    now: dt.datetime,
    calendar: WorkCalendar,
    revisit_workdays: int,
) -> None:
    lead_changed = t.previous is not None and t.previous.lead_department_id != t.state.lead_department_id
    _store_state(referral, t.state)
    referral.version += 1
    if t.state.status is ReferralStatus.return_requested:
        referral.pending_reason = str(t.details.get("grounds", ""))
    elif t.state.status is ReferralStatus.extension_requested:
        referral.pending_reason = str(t.details.get("reason", ""))
    else:
        referral.pending_reason = None
    if t.answer is not None:
        referral.answer = audit.jsonable({k: v for k, v in dataclasses.asdict(t.answer).items() if v not in (None, "")})
    _record(session, actor, referral, t, now)
    _follow_problems(session, actor, referral, now, lead_changed=lead_changed)
    if needs_revisit(t):
        followups.create_revisits(session, actor, referral, now=now, calendar=calendar, workdays=revisit_workdays)
    if t.state.status is ReferralStatus.cancelled:
        followups.cancel_open_followups(session, actor, referral.id)


def _record(
    session: Session,
    actor: Actor,
    referral: Referral,
    t: Transition,
    now: dt.datetime,
    extra: dict[str, Any] | None = None,
) -> None:
    """One history line and one audit entry for a transition."""
    changes = t.changes
    details: dict[str, Any] = dict(t.details)
    for field in ("deadline", "lead_department_id", "co_department_ids"):
        if field in changes:
            details[field] = changes[field][1]
    if t.previous is not None and "lead_department_id" in changes:
        details["from_department_id"] = t.previous.lead_department_id
    details["status"] = t.state.status.value
    department = t.previous.lead_department_id if t.previous is not None else t.state.lead_department_id
    referral.events.append(
        ReferralEventRow(
            event=t.event.value,
            actor_id=actor.user_id,
            department_id=department,
            at=now,
            details=audit.jsonable(_sorted_sets(details)),
        )
    )
    audit_changes = t.audit_changes() | {"event": [None, t.event.value]}
    audit_changes["version"] = [referral.version - 1, referral.version]
    if extra:
        audit_changes |= {k: [None, v] for k, v in extra.items()}
    audit.record(session, actor, t.action.value, "referral", referral.id, _sorted_sets(audit_changes))


def _sorted_sets(value: Any) -> Any:
    """Sets (co-departments) as sorted lists, so JSON can hold them."""
    if isinstance(value, frozenset | set):
        return sorted(value, key=str)
    if isinstance(value, dict):
        return {k: _sorted_sets(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_sorted_sets(v) for v in value]
    return value


@dataclasses.dataclass(frozen=True)
class _Standing:
    """A referral as `problem_status_for` sees it."""

    status: ReferralStatus
    outcome: ProblemOutcome | None
    answer: dict[str, Any] | None


def _follow_problems(
    session: Session, actor: Actor, referral: Referral, now: dt.datetime, *, lead_changed: bool
) -> None:
    """Each problem of the referral takes its status from all its referrals; its department is the lead."""
    for link in referral.problems:
        problem = link.problem
        rows = session.execute(
            select(Referral.status, Referral.outcome, Referral.answer, Referral.closed_at)
            .join(ReferralProblem, ReferralProblem.referral_id == Referral.id)
            .where(ReferralProblem.problem_id == problem.id)
            .order_by(Referral.closed_at.desc(), Referral.id)
        ).all()
        standings = [
            _Standing(member(ReferralStatus, s), member(ProblemOutcome, o) if o else None, a) for s, o, a, _ in rows
        ]
        # A merged duplicate stays closed whatever an old referral of it does (reopened after a revisit).
        verdict = rules.problem_status_for(standings) if problem.duplicate_of_id is None else None
        data: dict[str, Any] = {}
        if lead_changed:
            data["department_id"] = referral.lead_department_id
        if verdict is not None:
            data["status"] = verdict.status
            data["outcome"] = verdict.outcome
            if verdict.outcome != problem.outcome:
                data["outcome_at"] = now if verdict.outcome is not None else None
            if verdict.status != problem.status:
                data["closed_at"] = now if verdict.status is ProblemStatus.closed else None
            # The accepted answer that decided the outcome (the latest closed, if several).
            answer = next(
                (
                    s.answer
                    for s in standings
                    if s.status is ReferralStatus.closed and s.outcome is verdict.outcome and s.answer
                ),
                None,
            )
            if answer is not None:
                data["outcome_note"] = answer.get("done")
                if verdict.outcome is ProblemOutcome.deferred:
                    data["outcome_reason"] = answer.get("reason")
        changed = audit.apply(problem, data)
        if changed:
            problem.version += 1
            changed["referral_id"] = [None, str(referral.id)]
            audit.record(session, actor, "follow_referral", "problem", problem.id, changed)


# Follow-ups reporting back --------------------------------------------------------------------


def record_revisit(
    session: Session,
    actor: Actor,
    followup: FollowUp,
    satisfaction: Satisfaction,
    note: str,
    *,
    now: dt.datetime,
    calendar: WorkCalendar,
) -> None:
    """A revisit's result on the referral's history; 不满意 reopens the referral (if it is closed)."""
    if followup.referral_id is None:
        return
    referral = _locked(session, system_actor(actor), followup.referral_id)
    details = {"followup_id": followup.id, "satisfaction": satisfaction.value, "note": note or None}
    _note_event(session, actor, referral, REVISITED, details, now)
    if satisfaction is Satisfaction.unsatisfied and referral.status == ReferralStatus.closed.value:
        reason = f"回访不满意：{note}" if note else "回访不满意"
        reopen_referral(session, referral.id, reason, on_behalf_of=actor, now=now, calendar=calendar)


def record_progress(
    session: Session, actor: Actor, followup: FollowUp, note: str, next_date: dt.date | None, *, now: dt.datetime
) -> None:
    """A progress check's note on the referral's history; a new next date moves the coordinating answer's."""
    if followup.referral_id is None:
        return
    referral = _locked(session, system_actor(actor), followup.referral_id)
    answer = dict(referral.answer or {})
    if next_date is not None and answer.get("outcome") == ProblemOutcome.coordinating.value:
        referral.answer = answer | {"next_date": next_date.isoformat()}
    details = {"followup_id": followup.id, "note": note, "next_date": next_date}
    _note_event(session, actor, referral, PROGRESS_REPORTED, details, now)


def _note_event(
    session: Session, actor: Actor, referral: Referral, event: str, details: dict[str, Any], now: dt.datetime
) -> None:
    clean = audit.jsonable({k: v for k, v in details.items() if v is not None})
    referral.events.append(
        ReferralEventRow(
            event=event, actor_id=actor.user_id, department_id=referral.lead_department_id, at=now, details=clean
        )
    )
    referral.version += 1
    audit.record(
        session,
        actor,
        event,
        "referral",
        referral.id,
        {k: [None, v] for k, v in clean.items()} | {"version": [referral.version - 1, referral.version]},
    )


# What people read -----------------------------------------------------------------------------


def event_label(event: str) -> str:
    try:
        return member(ReferralEvent, event).label
    except ValueError:
        return EXTRA_EVENT_LABELS.get(event, event)


def present(
    session: Session,
    actor: Actor,
    referrals: Sequence[Referral],
    *,
    detail: bool = False,
    now: dt.datetime | None = None,
    calendar: WorkCalendar | None = None,
) -> list[dict[str, Any]]:
    """Referrals as the API shows them (schemas/referrals.py): names, labels, whose move, your actions.

    With `detail`, also the history and the follow-ups.
    """
    now = now or utcnow()
    calendar = calendar or load_calendar(session)
    department_ids: set[uuid.UUID] = set()
    user_ids: set[uuid.UUID] = set()
    for r in referrals:
        department_ids |= {r.lead_department_id, *(d.department_id for d in r.co_departments)}
        user_ids.add(r.issued_by_id)
        if detail:
            department_ids |= {e.department_id for e in r.events if e.department_id}
            user_ids |= {e.actor_id for e in r.events if e.actor_id}
    departments = _by_id(session, Department, department_ids)
    users = _by_id(session, User, user_ids)
    followups_of: dict[uuid.UUID, list[dict[str, Any]]] = {}
    if detail and referrals:
        rows = session.scalars(
            select(FollowUp)
            .where(FollowUp.referral_id.in_([r.id for r in referrals]))
            .order_by(FollowUp.created_at, FollowUp.id)
        ).all()
        for view in followups.describe(session, rows):
            followups_of.setdefault(view["referral_id"], []).append(view)
    info = actor_info(actor)
    out = []
    for r in referrals:
        view = _view(r, departments, users, info, now, calendar)
        if detail:
            view["history"] = [
                {
                    "id": e.id,
                    "event": e.event,
                    "event_label": event_label(e.event),
                    "at": e.at,
                    "actor_id": e.actor_id,
                    "actor_name": users[e.actor_id].display_name if e.actor_id in users else None,
                    "department_id": e.department_id,
                    "department_name": departments[e.department_id].name if e.department_id in departments else None,
                    "details": e.details,
                }
                for e in r.events
            ]
            view["followups"] = followups_of.get(r.id, [])
        out.append(view)
    return out


def _view(
    r: Referral,
    departments: dict[uuid.UUID, Department],
    users: dict[uuid.UUID, User],
    info: ActorInfo,
    now: dt.datetime,
    calendar: WorkCalendar,
) -> dict[str, Any]:
    state = state_of(r)
    status = state.status
    outcome = state.outcome
    overdue = state.is_open and now > state.deadline
    whose = rules.awaiting(status)
    issuer = users.get(r.issued_by_id)
    co = sorted((departments[d] for d in state.co_department_ids if d in departments), key=lambda d: d.name)
    problems = sorted((link.problem for link in r.problems), key=lambda p: (p.raised_at, p.position, p.id))
    return {
        **{name: getattr(r, name) for name in ("id", "number", "year", "seq", "issued_by_id", "issued_at")},
        **{name: getattr(r, name) for name in ("workdays", "original_deadline", "deadline", "requirements")},
        **{name: getattr(r, name) for name in ("signed_at", "return_to", "requested_until", "pending_reason")},
        **{name: getattr(r, name) for name in ("responded_at", "closed_at", "on_time", "version")},
        "created_at": r.created_at,
        "updated_at": r.updated_at,
        "status": status.value,
        "status_label": status.label,
        "lead_department": _department_ref(departments.get(r.lead_department_id), r.lead_department_id),
        "co_departments": [_department_ref(d, d.id) for d in co],
        "issued_by_name": issuer.display_name if issuer else None,
        "due_day": state.due_day,
        "outcome": outcome,
        "outcome_label": outcome.label if outcome else None,
        "answer": _answer_view(r.answer),
        "overdue": overdue,
        "overdue_workdays": calendar.overdue_workdays(state.deadline, now) if overdue else 0,
        "awaiting": whose.value if whose else None,
        "allowed_actions": [a.value for a in rules.allowed_actions(state, info)],
        "problems": [
            {
                "id": p.id,
                "target_id": p.target_id,
                "target_name": p.target.name,
                "target_kind": p.target.kind,
                "cadre_id": p.cadre_id,
                "category": p.category,
                "category_label": p.category.label,
                "description": p.description,
                "status": p.status,
                "outcome": p.outcome,
            }
            for p in problems
        ],
    }


def _department_ref(department: Department | None, department_id: uuid.UUID) -> dict[str, Any]:
    if department is None:
        return {"id": department_id, "name": "", "short_name": None}
    return {"id": department.id, "name": department.name, "short_name": department.short_name}


def _answer_view(answer: dict[str, Any] | None) -> dict[str, Any] | None:
    if not answer or "outcome" not in answer:
        return None
    outcome = member(ProblemOutcome, answer["outcome"])
    next_date = answer.get("next_date")
    return {
        "outcome": outcome,
        "outcome_label": outcome.label,
        "done": answer.get("done", ""),
        "plan": answer.get("plan"),
        "next_date": dt.date.fromisoformat(next_date) if next_date else None,
        "reason": answer.get("reason"),
    }


def _by_id(session: Session, model: Any, ids: set[uuid.UUID]) -> dict[uuid.UUID, Any]:
    if not ids:
        return {}
    return {row.id: row for row in session.scalars(select(model).where(model.id.in_(ids))).unique()}
