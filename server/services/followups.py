"""Follow-ups (跟进任务): the revisit after a solved referral, progress checks, and who does them.

A follow-up is assigned to a person (`assignee_id`, a cadre for a revisit) or to a department
(`department_id` alone, e.g. a progress check). Cadres receive theirs through the sync pull —
this module registers the entity "followup" with the change log, scoped to the assignee — and
may complete them offline (sync change kind "followup.complete"). A follow-up reassigned to
someone else leaves the previous assignee's phone: their next pull carries its tombstone.

Completing a revisit records the firm's satisfaction on the referral's history; 不满意 reopens
the referral as the system (server/services/referrals.py).
"""

from __future__ import annotations

import datetime as dt
import enum
import uuid
from collections.abc import Iterable, Sequence
from typing import Any, TypeVar

from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session, object_session

from schemas.enums import Role
from schemas.followups import FollowUpKind, FollowUpSchema, FollowUpStatus, Satisfaction
from server.db.followup_models import FollowUp, Referral
from server.db.models import Department, PortfolioEntry, Problem, Target, User
from server.db.types import utcnow
from server.domain.followups import choose_revisit_cadre
from server.domain.periods import local_date
from server.domain.workdays import WorkCalendar
from server.errors import ApiError, forbidden, invalid, not_found
from server.services import audit, changes, sync
from server.services.actors import SYSTEM, Actor
from server.services.calendar import load_calendar
from server.services.directory import check_version
from server.services.pagination import Page, paginate

# A revisit is due this many working days after the answer is accepted (the API reads
# REVISIT_WORKDAYS from the app's config when it is set).
REVISIT_WORKDAYS = 5
# How far ahead a progress check may move the next step: a bound against typing mistakes.
NEXT_DATE_HORIZON = dt.timedelta(days=730)
# Who may be given a follow-up: people who sync to a phone.
ASSIGNABLE_ROLES = (Role.cadre, Role.supervisor)

OPEN = FollowUpStatus.open.value
E = TypeVar("E", bound=enum.Enum)
_FIELDS = ("kind", "status", "title", "assignee_id", "department_id", "referral_id", "problem_id", "target_id")


def member(cls: type[E], value: str) -> E:
    """The member of an enum with this value (a typed lookup; LabelledEnum's constructor takes two)."""
    return cls(value)


# Creating ----------------------------------------------------------------------------------


def create_followup(
    session: Session,
    *,
    kind: FollowUpKind,
    title: str,
    actor: Actor = SYSTEM,
    assignee_id: uuid.UUID | None = None,
    department_id: uuid.UUID | None = None,
    referral_id: uuid.UUID | None = None,
    problem_id: uuid.UUID | None = None,
    target_id: uuid.UUID | None = None,
    due_on: dt.date | None = None,
) -> FollowUp:
    """A new open follow-up, audited; assign it to a person, a department, or both (a revisit)."""
    followup = FollowUp(
        kind=kind.value,
        status=OPEN,
        title=title[:200],
        assignee_id=assignee_id,
        department_id=department_id,
        referral_id=referral_id,
        problem_id=problem_id,
        target_id=target_id,
        due_on=due_on,
    )
    session.add(followup)
    session.flush()
    audit.record(session, actor, "create", "followup", followup.id, audit.snapshot(followup, (*_FIELDS, "due_on")))
    return followup


def cadre_loads(session: Session) -> dict[uuid.UUID, int]:
    """Every active cadre with their number of open follow-ups (0 for none)."""
    cadres = session.scalars(select(User.id).where(User.role == Role.cadre, User.active.is_(True)))
    loads = dict.fromkeys(cadres, 0)
    counts = session.execute(
        select(FollowUp.assignee_id, func.count())
        .where(FollowUp.status == OPEN, FollowUp.assignee_id.in_(list(loads)))
        .group_by(FollowUp.assignee_id)
    )
    for cadre, count in counts:
        if cadre is not None:
            loads[cadre] = int(count)
    return loads


def revisit_cadre(session: Session, target_id: uuid.UUID, loads: dict[uuid.UUID, int]) -> uuid.UUID | None:
    """Who revisits a target: its portfolio cadre (the least loaded, if several), else the least-loaded cadre."""
    holders = session.scalars(
        select(PortfolioEntry.user_id)
        .join(User, User.id == PortfolioEntry.user_id)
        .where(PortfolioEntry.target_id == target_id, User.role == Role.cadre, User.active.is_(True))
    )
    portfolio_cadre = choose_revisit_cadre(None, {c: loads.get(c, 0) for c in holders})
    return choose_revisit_cadre(portfolio_cadre, loads)


def create_revisits(
    session: Session,
    actor: Actor,
    referral: Referral,
    *,
    now: dt.datetime,
    calendar: WorkCalendar,
    workdays: int = REVISIT_WORKDAYS,
) -> list[FollowUp]:
    """One revisit (回访) per target of the referral's problems, due `workdays` working days from now.

    With no cadre at all the revisit stays unassigned, for a supervisor to reassign.
    """
    loads = cadre_loads(session)
    due_on = calendar.add_workdays(local_date(now), workdays)
    created: list[FollowUp] = []
    seen: set[uuid.UUID] = set()
    for problem in sorted((link.problem for link in referral.problems), key=lambda p: (p.raised_at, p.position, p.id)):
        if problem.target_id in seen:
            continue
        seen.add(problem.target_id)
        cadre = revisit_cadre(session, problem.target_id, loads)
        if cadre is not None:
            loads[cadre] = loads.get(cadre, 0) + 1
        created.append(
            create_followup(
                session,
                kind=FollowUpKind.revisit,
                title=f"回访：{problem.target.name}（{referral.number}）",
                actor=actor,
                assignee_id=cadre,
                department_id=referral.lead_department_id,
                referral_id=referral.id,
                problem_id=problem.id,
                target_id=problem.target_id,
                due_on=due_on,
            )
        )
    return created


def cancel_open_followups(session: Session, actor: Actor, referral_id: uuid.UUID) -> int:
    """Cancel a referral's open follow-ups (the referral was cancelled); returns how many."""
    open_ones = session.scalars(select(FollowUp).where(FollowUp.referral_id == referral_id, FollowUp.status == OPEN))
    count = 0
    for followup in open_ones:
        followup.status = FollowUpStatus.cancelled.value
        followup.version += 1
        audit.record(session, actor, "cancel", "followup", followup.id, {"status": [OPEN, followup.status]})
        count += 1
    return count


# Reading -----------------------------------------------------------------------------------


def visible(query: Select[Any], actor: Actor) -> Select[Any]:
    """Supervisors and admins see every follow-up; cadres theirs; department staff their department's."""
    if actor.reads_everything or actor.role is None:
        return query
    if actor.role is Role.cadre:
        return query.where(FollowUp.assignee_id == actor.user_id)
    if actor.role is Role.department_staff:
        return query.where(FollowUp.department_id == actor.department_id)
    raise forbidden()


def get_followup(session: Session, actor: Actor, followup_id: uuid.UUID, *, lock: bool = False) -> FollowUp:
    query = visible(select(FollowUp), actor).where(FollowUp.id == followup_id)
    if lock:
        query = query.with_for_update().execution_options(populate_existing=True)
    followup = session.scalar(query)
    if followup is None:
        raise not_found("Follow-up")
    return followup


def list_followups(session: Session, actor: Actor, args: dict[str, Any], *, limit: int) -> Page[FollowUp]:
    """Follow-ups the actor sees, newest first; filters: status, kind, assignee, referral."""
    query = visible(select(FollowUp), actor)
    for arg, column in (
        ("status", FollowUp.status),
        ("kind", FollowUp.kind),
        ("assignee", FollowUp.assignee_id),
        ("referral", FollowUp.referral_id),
    ):
        value = args.get(arg)
        if value is not None:
            query = query.where(column == getattr(value, "value", value))
    return paginate(
        session, query, [FollowUp.created_at, FollowUp.id], cursor=args.get("cursor"), limit=limit, descending=True
    )


def describe(session: Session, followups: Sequence[FollowUp]) -> list[dict[str, Any]]:
    """Follow-ups with the names a person reads (assignee, department, firm, referral number)."""
    users = _by_id(session, User, {f.assignee_id for f in followups})
    departments = _by_id(session, Department, {f.department_id for f in followups})
    referrals = _by_id(session, Referral, {f.referral_id for f in followups})
    problems = _by_id(session, Problem, {f.problem_id for f in followups})
    targets = _by_id(session, Target, {f.target_id for f in followups})
    out = []
    for f in followups:
        user, department = users.get(f.assignee_id), departments.get(f.department_id)
        referral, problem, target = referrals.get(f.referral_id), problems.get(f.problem_id), targets.get(f.target_id)
        kind, status = member(FollowUpKind, f.kind), member(FollowUpStatus, f.status)
        satisfaction = member(Satisfaction, f.satisfaction) if f.satisfaction else None
        out.append(
            {
                **{name: getattr(f, name) for name in ("id", "title", "assignee_id", "department_id", "referral_id")},
                **{name: getattr(f, name) for name in ("problem_id", "target_id", "due_on", "completed_at")},
                **{name: getattr(f, name) for name in ("result_note", "version", "created_at", "updated_at")},
                "kind": kind,
                "kind_label": kind.label,
                "status": status,
                "status_label": status.label,
                "assignee_name": user.display_name if user else None,
                "department_name": department.name if department else None,
                "referral_number": referral.number if referral else None,
                "problem_description": problem.description if problem else None,
                "target_name": target.name if target else None,
                "answer_done": (referral.answer or {}).get("done") if referral else None,
                "satisfaction": satisfaction,
                "satisfaction_label": satisfaction.label if satisfaction else None,
            }
        )
    return out


def _by_id(session: Session, model: Any, ids: Iterable[uuid.UUID | None]) -> dict[uuid.UUID | None, Any]:
    wanted = [i for i in ids if i is not None]
    if not wanted:
        return {}
    return {row.id: row for row in session.scalars(select(model).where(model.id.in_(wanted))).unique()}


# Acting ------------------------------------------------------------------------------------


def _check_may_complete(followup: FollowUp, actor: Actor) -> None:
    """A person's follow-up is theirs to complete; a department's, its staff's."""
    if followup.assignee_id is not None:
        if actor.user_id != followup.assignee_id:
            raise forbidden("Only the person this follow-up is assigned to completes it.")
    elif followup.department_id is None or actor.department_id != followup.department_id:
        raise forbidden("Only the department's staff complete this follow-up.")


def complete_followup(
    session: Session,
    actor: Actor,
    followup_id: uuid.UUID,
    data: dict[str, Any],
    *,
    now: dt.datetime | None = None,
    calendar: WorkCalendar | None = None,
) -> FollowUp:
    """Record a follow-up's result: a revisit's satisfaction (不满意 reopens the referral), a progress note.

    `data`: satisfaction (revisits, required), note (required for progress checks and for an
    unsatisfied revisit), next_date (progress checks: the next step moved), version.
    """
    followup = get_followup(session, actor, followup_id, lock=True)
    _check_may_complete(followup, actor)
    check_version(followup, data)
    if followup.status != OPEN:
        raise ApiError(409, f"The follow-up is already {followup.status}.", code="followup_closed")
    now = now or utcnow()
    kind = member(FollowUpKind, followup.kind)
    satisfaction: Satisfaction | None = data.get("satisfaction")
    note = (data.get("note") or "").strip()
    next_date: dt.date | None = data.get("next_date")
    if kind is FollowUpKind.revisit:
        if satisfaction is None:
            raise invalid("satisfaction", "A revisit records the firm's satisfaction.")
        if satisfaction is Satisfaction.unsatisfied and not note:
            raise invalid("note", "Say why the firm is not satisfied.")
    elif satisfaction is not None:
        raise invalid("satisfaction", "Only a revisit records satisfaction.")
    if kind is FollowUpKind.progress_check and not note:
        raise invalid("note", "Say how far the work has come.")
    if next_date is not None:
        today = local_date(now)
        if kind is not FollowUpKind.progress_check:
            raise invalid("next_date", "Only a progress check moves the date of the next step.")
        if not today < next_date <= today + NEXT_DATE_HORIZON:
            raise invalid("next_date", "The date of the next step must be in the future (within two years).")
    changed = audit.apply(
        followup,
        {
            "status": FollowUpStatus.done.value,
            "completed_at": now,
            "satisfaction": satisfaction.value if satisfaction else None,
            "result_note": note or None,
        },
    )
    audit.record(session, actor, "complete", "followup", followup.id, changed)
    if followup.referral_id is not None:
        # Imported here: referrals creates revisits through this module, and a revisit reopens referrals.
        from server.services import referrals

        calendar = calendar or load_calendar(session)
        if kind is FollowUpKind.revisit and satisfaction is not None:
            referrals.record_revisit(session, actor, followup, satisfaction, note, now=now, calendar=calendar)
        elif kind is FollowUpKind.progress_check:
            referrals.record_progress(session, actor, followup, note, next_date, now=now)
    return followup


def reassign_followup(session: Session, actor: Actor, followup_id: uuid.UUID, data: dict[str, Any]) -> FollowUp:
    """Give an open follow-up to another cadre or supervisor (supervisors)."""
    actor.require(Role.supervisor)
    followup = get_followup(session, actor, followup_id, lock=True)
    check_version(followup, data)
    if followup.status != OPEN:
        raise ApiError(409, f"The follow-up is already {followup.status}.", code="followup_closed")
    user = session.get(User, data["assignee_id"])
    if user is None or not user.active or user.role not in ASSIGNABLE_ROLES:
        raise invalid("assignee_id", "Choose an active cadre or supervisor.")
    previous = followup.assignee_id
    audit.record(session, actor, "reassign", "followup", followup.id, audit.apply(followup, {"assignee_id": user.id}))
    if previous is not None and previous != user.id:
        changes.revoke(session, followup, previous)  # the previous assignee's phone drops it
    return followup


# Devices receive their follow-ups through the sync pull.


def dump_one(followup: FollowUp) -> dict[str, Any]:
    """A follow-up as devices receive it (FollowUpSchema), names included."""
    session = object_session(followup)
    assert session is not None
    return _FOLLOWUP.dump(describe(session, [followup])[0])


_FOLLOWUP = FollowUpSchema()  # built once: pulls dump one follow-up at a time


changes.register(FollowUp, "followup", lambda f: changes.Scope("owner", f.assignee_id, f.target_id))
sync.register_serializer("followup", FollowUp, dump_one)
