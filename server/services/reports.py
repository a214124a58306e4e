"""The summary report: problems by outcome, category and department, and visit coverage."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from schemas.enums import ProblemCategory, ProblemOutcome, Role, TargetKind
from server.db.models import Department, Problem, Target, Visit
from server.domain.periods import day_bounds
from server.domain.reports import Counts, summary_sentence
from server.services.actors import Actor


def _count_columns() -> list[Any]:
    def outcome(value: ProblemOutcome) -> Any:
        return func.coalesce(func.sum(case((Problem.outcome == value, 1), else_=0)), 0)

    return [
        func.count(),
        outcome(ProblemOutcome.solved),
        outcome(ProblemOutcome.coordinating),
        outcome(ProblemOutcome.deferred),
        func.coalesce(func.sum(case((Problem.outcome.is_(None), 1), else_=0)), 0),
    ]


def _counts(row: Any) -> Counts:
    return Counts(*(int(v or 0) for v in row))


def summary(
    session: Session,
    actor: Actor,
    campaign: uuid.UUID | None,
    first: dt.date | None,
    last: dt.date | None,
) -> dict[str, Any]:
    actor.require(Role.supervisor, Role.admin)
    start, end = day_bounds(first, last)

    def scoped(query: Any, model: Any, at: Any) -> Any:
        if campaign:
            query = query.where(model.campaign_id == campaign)
        if start is not None:
            query = query.where(at >= start)
        if end is not None:
            query = query.where(at < end)
        return query

    totals = _counts(session.execute(scoped(select(*_count_columns()), Problem, Problem.raised_at)).one())
    by_category = {
        cat: _counts(rest)
        for cat, *rest in session.execute(
            scoped(select(Problem.category, *_count_columns()), Problem, Problem.raised_at).group_by(Problem.category)
        )
    }
    by_department = {
        dept: _counts(rest)
        for dept, *rest in session.execute(
            scoped(select(Problem.department_id, *_count_columns()), Problem, Problem.raised_at).group_by(
                Problem.department_id
            )
        )
    }
    departments = {d.id: d for d in session.scalars(select(Department))}
    visited: dict[TargetKind, int] = dict(
        session.execute(
            scoped(
                select(Target.kind, func.count(func.distinct(Visit.target_id))).join(
                    Target, Target.id == Visit.target_id
                ),
                Visit,
                Visit.visited_at,
            ).group_by(Target.kind)
        ).all()
    )
    totals_by_kind = dict(
        session.execute(select(Target.kind, func.count()).where(Target.active.is_(True)).group_by(Target.kind)).all()
    )
    coverage = {kind: (int(visited.get(kind, 0)), int(totals_by_kind.get(kind, 0))) for kind in TargetKind}
    visits = session.scalar(scoped(select(func.count()).select_from(Visit), Visit, Visit.visited_at)) or 0

    def figures(c: Counts) -> dict[str, int]:
        return {
            "collected": c.collected,
            "solved": c.solved,
            "coordinating": c.coordinating,
            "deferred": c.deferred,
            "open": c.open,
        }

    return {
        "campaign_id": campaign,
        "from": first,
        "to": last,
        "visits": int(visits),
        "problems": figures(totals),
        "by_category": [
            {"category": cat, "label": cat.label, **figures(by_category[cat])}
            for cat in ProblemCategory
            if cat in by_category
        ],
        "by_department": [
            {
                "department_id": dept_id,
                "department_name": departments[dept_id].name if dept_id in departments else "未分派",
                **figures(c),
            }
            for dept_id, c in sorted(by_department.items(), key=lambda kv: -kv[1].collected)
        ],
        "coverage": [
            {"kind": kind, "label": kind.label, "visited": v, "total": t} for kind, (v, t) in coverage.items()
        ],
        "sentence": summary_sentence(totals, coverage),
    }
