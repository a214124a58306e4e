"""Problems: who may read which, and a supervisor's triage (department, outcome)."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from schemas.enums import Role
from server.db.models import Department, Problem
from server.db.types import utcnow
from server.domain.problems import OutcomeError, check_outcome, status_for
from server.errors import forbidden, invalid, not_found
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
    ):
        if args.get(arg) is not None:
            query = query.where(column == args[arg])
    query = filter_by_days(query, Problem.raised_at, args)
    keys = [Problem.raised_at, Problem.id]
    if args.get("q"):
        return search.page(
            session, query, kind="problem", id_column=Problem.id, text_column=Problem.description, q=args["q"],
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
