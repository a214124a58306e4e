"""Problems: who may read which, a supervisor's triage (department, outcome), and merging duplicates.

Merging (issue #5): two cadres often record the same problem of the same firm. A supervisor
merges one into the other; the duplicate points at the survivor (`duplicate_of_id`), is closed,
keeps its outcome, and drops out of reports and of default lists. Rules, checked in this order:

- only supervisors merge and unmerge (403; admins do not triage problems either);
- the problem must exist (404) and be at the version the request read (409 `version_conflict`);
- `into` must be another existing problem of the same target (422 on `into`);
- a problem already merged is unmerged first (409 `already_merged`), a problem cannot be merged
  into a duplicate: the error names that duplicate's survivor (409 `survivor_merged`,
  `details.survivor_id`), and a problem with an open referral stays (409 `open_referral`,
  `details.referrals`), since a department is working on it;
- duplicates of the merged problem move to the survivor, so a survivor is never a duplicate.

Unmerging gives the status back from the outcome (`status_for`). A merged duplicate is read-only:
triage and rewording answer 409 `problem_merged`; referrals refuse it.
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from schemas.enums import ProblemStatus, Role
from server.db.followup_models import Referral, ReferralProblem
from server.db.models import Department, Problem
from server.db.types import utcnow
from server.domain.problems import OutcomeError, check_outcome, status_for
from server.domain.referrals import OPEN_STATUSES
from server.errors import ApiError, forbidden, invalid, not_found
from server.services import audit, search
from server.services.actors import Actor
from server.services.directory import check_version
from server.services.pagination import Page, paginate
from server.services.visits import filter_by_days, filter_by_target

CADRE_FIELDS = {"category", "description", "version"}


def visible(query: Select[Any], actor: Actor) -> Select[Any]:
    """Supervisors and admins read every problem; cadres those they raised; staff their department's."""
    if actor.reads_everything:
        return query
    if actor.role in (Role.cadre,):
        return query.where(Problem.cadre_id == actor.user_id)
    if actor.role is Role.department_staff:
        return query.where(Problem.department_id == actor.department_id)
    raise forbidden()


def get_problem(session: Session, actor: Actor, problem_id: uuid.UUID) -> Problem:
    problem = session.scalar(visible(select(Problem), actor).where(Problem.id == problem_id))
    if problem is None:
        raise not_found("Problem")
    return problem


def list_problems(session: Session, actor: Actor, args: dict[str, Any], *, limit: int) -> Page[Problem]:
    query = filter_by_target(visible(select(Problem), actor), Problem, args)
    for arg, column in (
        ("campaign", Problem.campaign_id),
        ("cadre", Problem.cadre_id),
        ("category", Problem.category),
        ("status", Problem.status),
        ("outcome", Problem.outcome),
        ("department", Problem.department_id),
        ("duplicate_of", Problem.duplicate_of_id),
    ):
        if args.get(arg) is not None:
            query = query.where(column == args[arg])
    duplicates = args.get("duplicates") or "hide"
    if duplicates == "hide" and args.get("duplicate_of") is None:
        query = query.where(Problem.duplicate_of_id.is_(None))
    elif duplicates == "only":
        query = query.where(Problem.duplicate_of_id.is_not(None))
    query = filter_by_days(query, Problem.raised_at, args)
    keys = [Problem.raised_at, Problem.id]
    if args.get("q"):
        return search.page(
            session, query, kind="problem", id_column=Problem.id, text_columns=[Problem.description], q=args["q"],
            keys=keys, cursor=args.get("cursor"), limit=limit,
        )  # fmt: skip
    return paginate(session, query, keys, cursor=args.get("cursor"), limit=limit, descending=True)


def update_problem(session: Session, actor: Actor, problem_id: uuid.UUID, data: dict[str, Any]) -> Problem:
    """A supervisor triages; the cadre who raised it may reword it until it is triaged."""
    problem = get_problem(session, actor, problem_id)
    if actor.role is Role.supervisor:
        pass
    elif actor.role is Role.cadre and problem.cadre_id == actor.user_id:
        if set(data) - CADRE_FIELDS:
            raise forbidden("Only a supervisor sets the department and the outcome.")
        if problem.department_id is not None or problem.outcome is not None:
            raise forbidden("The problem has been triaged; ask a supervisor to change it.")
    else:
        raise forbidden()
    check_version(problem, data)
    if problem.duplicate_of_id is not None:
        raise merged_error(problem)
    if data.get("department_id") is not None and session.get(Department, data["department_id"]) is None:
        raise invalid("department_id", "No such department.")
    outcome = data.get("outcome", problem.outcome)
    reason = data.get("outcome_reason", problem.outcome_reason)
    try:
        check_outcome(outcome, reason)
    except OutcomeError as e:
        raise invalid(e.field, str(e)) from e
    now = utcnow()
    if "outcome" in data and data["outcome"] != problem.outcome:
        data["outcome_at"] = now if outcome is not None else None
    status = status_for(outcome)
    if status != problem.status:
        data["status"] = status
        data["closed_at"] = now if status.value == "closed" else None
    changes = audit.apply(problem, data)
    if "description" in changes:
        search.index(session, "problem", problem.id, problem.description)
    audit.record(session, actor, "update", "problem", problem.id, changes)
    return problem


# Duplicates ---------------------------------------------------------------------------------


def _merged_conflict(code: str, message: str, survivor_id: uuid.UUID | None) -> ApiError:
    """409 about a merged duplicate, naming the problem it was merged into."""
    return ApiError(409, message, code=code, details={"survivor_id": str(survivor_id)})


def merged_error(problem: Problem) -> ApiError:
    return _merged_conflict(
        "problem_merged",
        "The problem was merged into another as a duplicate; unmerge it first.",
        problem.duplicate_of_id,
    )


def open_referral_numbers(session: Session, problem_id: uuid.UUID) -> list[str]:
    """The numbers of the open referrals (not closed, not cancelled) that carry the problem."""
    return list(
        session.scalars(
            select(Referral.number)
            .join(ReferralProblem, ReferralProblem.referral_id == Referral.id)
            .where(ReferralProblem.problem_id == problem_id, Referral.status.in_([s.value for s in OPEN_STATUSES]))
            .order_by(Referral.number)
        )
    )


def merge_problem(session: Session, actor: Actor, problem_id: uuid.UUID, data: dict[str, Any]) -> Problem:
    """Merge the problem, as a duplicate, into `data["into"]` (the survivor). Rules: the module's docstring."""
    actor.require(Role.supervisor)
    problem = get_problem(session, actor, problem_id)
    check_version(problem, data)
    into = data["into"]
    if into == problem.id:
        raise invalid("into", "A problem cannot be merged into itself.")
    survivor = session.get(Problem, into)
    if survivor is None:
        raise invalid("into", "No such problem.")
    if survivor.target_id != problem.target_id:
        raise invalid("into", "The problems belong to different targets.")
    if problem.duplicate_of_id is not None:
        raise _merged_conflict(
            "already_merged", "The problem is already merged into another; unmerge it first.", problem.duplicate_of_id
        )
    if survivor.duplicate_of_id is not None:
        message = "That problem is itself a merged duplicate; merge into the problem it was merged into."
        raise _merged_conflict("survivor_merged", message, survivor.duplicate_of_id)
    numbers = open_referral_numbers(session, problem.id)
    if numbers:
        raise ApiError(
            409,
            "The problem is in an open referral; merge the other problem into this one, or wait until the referral"
            " closes.",
            code="open_referral",
            details={"referrals": numbers},
        )
    now = utcnow()
    changes = audit.apply(
        problem,
        {
            "duplicate_of_id": survivor.id,
            "merged_at": now,
            "merged_by_id": actor.user_id,
            "status": ProblemStatus.closed,
        },
    )
    if "status" in changes:
        changes |= audit.apply(problem, {"closed_at": now})
    audit.record(session, actor, "merge", "problem", problem.id, changes)
    # Its own duplicates follow it to the survivor: duplicates never point at a duplicate.
    for moved in session.scalars(select(Problem).where(Problem.duplicate_of_id == problem.id)):
        moved.version += 1
        audit.record(session, actor, "merge", "problem", moved.id, audit.apply(moved, {"duplicate_of_id": survivor.id}))
    return problem


def unmerge_problem(session: Session, actor: Actor, problem_id: uuid.UUID, data: dict[str, Any]) -> Problem:
    """Take a merged duplicate back out: it lists and counts again, its status follows its outcome."""
    actor.require(Role.supervisor)
    problem = get_problem(session, actor, problem_id)
    check_version(problem, data)
    if problem.duplicate_of_id is None:
        raise ApiError(409, "The problem is not a merged duplicate.", code="not_merged")
    status = status_for(problem.outcome)
    fields: dict[str, Any] = {"duplicate_of_id": None, "merged_at": None, "merged_by_id": None, "status": status}
    if status is ProblemStatus.open:
        fields["closed_at"] = None
    changes = audit.apply(problem, fields)
    audit.record(session, actor, "unmerge", "problem", problem.id, changes)
    return problem


def duplicates_of(session: Session, actor: Actor, problem_id: uuid.UUID) -> list[Problem]:
    """The duplicates merged into a problem that the reader may see, earliest raised first."""
    query = visible(select(Problem), actor).where(Problem.duplicate_of_id == problem_id)
    return list(session.scalars(query.order_by(Problem.raised_at, Problem.id)))


def merge_candidates(session: Session, actor: Actor, problem: Problem, limit: int = 200) -> list[Problem]:
    """The problems `problem` may be merged into: open, not merged, of the same target; newest first."""
    query = visible(select(Problem), actor).where(
        Problem.target_id == problem.target_id,
        Problem.id != problem.id,
        Problem.duplicate_of_id.is_(None),
        Problem.status == ProblemStatus.open,
    )
    return list(session.scalars(query.order_by(Problem.raised_at.desc(), Problem.id.desc()).limit(limit)))
