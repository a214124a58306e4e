"""Problems: the list with filters and Chinese search, export to XLSX, and one problem's page."""

from __future__ import annotations

import uuid
from typing import Any

from flask import Response, render_template, request
from marshmallow import ValidationError
from sqlalchemy import select

from schemas.enums import ProblemCategory, ProblemOutcome, ProblemStatus, TargetKind
from schemas.visits import ProblemListArgsSchema
from server import db
from server.console import actor, bp, login_required
from server.console.referrals import problem_referrals
from server.db.models import AuditEntry, Department
from server.services import problems as problem_service
from server.services.directory import list_campaigns, list_departments
from server.services.target_io import to_xlsx
from server.services.visits import get_visit

FILTERS = ("campaign", "kind", "category", "status", "outcome", "department", "from", "to", "q", "cursor")
EXPORT_MAX = 20_000


def _args() -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    raw = {k: v for k, v in request.args.items() if k in FILTERS and v}
    try:
        return raw, ProblemListArgsSchema().load(raw), {}
    except ValidationError as e:
        return raw, ProblemListArgsSchema().load({}), e.normalized_messages()


@bp.get("/problems")
@login_required()
def problems() -> Any:
    raw, args, errors = _args()
    session = db.session()
    page = problem_service.list_problems(session, actor(), args, limit=50)
    departments = {d.id: d for d in list_departments(session)}
    return render_template(
        "console/problems.html",
        page=page,
        form=raw,
        errors=errors,
        departments=departments,
        campaigns=list_campaigns(session),
        choices={
            "category": ProblemCategory,
            "status": ProblemStatus,
            "outcome": ProblemOutcome,
            "kind": TargetKind,
        },
    )


@bp.get("/problems.xlsx")
@login_required()
def problems_xlsx() -> Response:
    """The filtered list as a spreadsheet with Chinese headers."""
    _raw, args, _errors = _args()
    session = db.session()
    departments = {d.id: d.name for d in session.scalars(select(Department))}
    rows: list[list[Any]] = [["提出时间", "走访对象", "类别", "问题描述", "承办部门", "状态", "办理结果", "说明"]]
    args["cursor"] = None
    while len(rows) <= EXPORT_MAX:
        page = problem_service.list_problems(session, actor(), args, limit=500)
        for p in page.items:
            rows.append(
                [
                    p.raised_at.astimezone().strftime("%Y-%m-%d %H:%M"),
                    p.target.name,
                    p.category.label,
                    p.description,
                    departments.get(p.department_id, "") if p.department_id else "",
                    p.status.label,
                    p.outcome.label if p.outcome else "",
                    p.outcome_reason or p.outcome_note or "",
                ]
            )
        if not page.next_cursor:
            break
        args["cursor"] = page.next_cursor
    return Response(
        to_xlsx(rows, "问题清单"),
        mimetype="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        headers={"Content-Disposition": "attachment; filename=problems.xlsx"},
    )


@bp.get("/problems/<uuid:problem_id>")
@login_required()
def problem(problem_id: uuid.UUID) -> Any:
    session = db.session()
    who = actor()
    item = problem_service.get_problem(session, who, problem_id)
    visit = None
    if who.role is not None and who.role.value != "department_staff":
        visit = get_visit(session, who, item.visit_id)
    history = list(
        session.scalars(
            select(AuditEntry)
            .where(AuditEntry.entity == "problem", AuditEntry.entity_id == str(problem_id))
            .order_by(AuditEntry.id)
        )
    )
    departments = {d.id: d for d in list_departments(session)}
    return render_template(
        "console/problem.html",
        problem=item,
        visit=visit,
        history=history,
        departments=departments,
        referrals=problem_referrals(session, who, problem_id),
    )
