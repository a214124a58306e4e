"""The summary report: problems by outcome, category and department, and visit coverage."""

from __future__ import annotations

import datetime as dt
import uuid
from collections import defaultdict
from collections.abc import Iterable
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session
from sqlalchemy.sql.expression import UnaryExpression
from sqlalchemy.sql.operators import custom_op

from schemas.enums import ProblemCategory, ProblemOutcome, Role, TargetKind
from server.db.models import Department, Problem, Target, Visit
from server.domain.periods import day_bounds
from server.domain.reports import Counts, summary_sentence
from server.services.actors import Actor


def _counts(pairs: Iterable[tuple[ProblemOutcome | None, int]]) -> Counts:
    """Counts from (outcome, number of problems) pairs."""
    n: dict[ProblemOutcome | None, int] = defaultdict(int)
    for outcome, count in pairs:
        n[outcome] += count
    return Counts(
        sum(n.values()), n[ProblemOutcome.solved], n[ProblemOutcome.coordinating], n[ProblemOutcome.deferred], n[None]
    )


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
        if at is Problem.raised_at and session.get_bind().dialect.name == "sqlite":
            # `+raised_at` keeps SQLite (which has no statistics here) off the date indexes: a date
            # index would fetch every problem of the period from the table; the covering
            # ix_problems_report answers any period by reading index entries only.
            at = UnaryExpression(Problem.__table__.c.raised_at, operator=custom_op("+"), type_=Problem.raised_at.type)
        if campaign:
            query = query.where(model.campaign_id == campaign)
        if start is not None:
            query = query.where(at >= start)
        if end is not None:
            query = query.where(at < end)
        return query

    # One pass over the problems, grouped in the order of ix_problems_report (a covering index),
    # so that neither database sorts or reads the table; the three cuts are summed up here.
    # Merged duplicates are counted once, as their survivor (the index holds duplicate_of_id too).
    groups = session.execute(
        scoped(
            select(Problem.campaign_id, Problem.category, Problem.department_id, Problem.outcome, func.count()),
            Problem,
            Problem.raised_at,
        )
        .where(Problem.duplicate_of_id.is_(None))
        .group_by(Problem.campaign_id, Problem.category, Problem.department_id, Problem.outcome)
    ).all()
    totals = _counts((outcome, n) for _, _, _, outcome, n in groups)
    by_category = {
        cat: _counts((outcome, n) for _, c, _, outcome, n in groups if c == cat) for cat in {g[1] for g in groups}
    }
    by_department = {
        dept: _counts((outcome, n) for _, _, d, outcome, n in groups if d == dept) for dept in {g[2] for g in groups}
    }
    departments = {d.id: d for d in session.scalars(select(Department))}
    # Visited targets: one index probe per target, not a DISTINCT over every visit.
    visited_in_scope = scoped(select(Visit.id).where(Visit.target_id == Target.id), Visit, Visit.visited_at)
    visited: dict[TargetKind, int] = dict(
        session.execute(select(Target.kind, func.count()).where(visited_in_scope.exists()).group_by(Target.kind)).all()
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
            for dept_id, c in sorted(
                by_department.items(),
                key=lambda kv: (-kv[1].collected, departments[kv[0]].name if kv[0] in departments else ""),
            )
        ],
        "coverage": [
            {"kind": kind, "label": kind.label, "visited": v, "total": t} for kind, (v, t) in coverage.items()
        ],
        "sentence": summary_sentence(totals, coverage),
    }
