"""Problems: the list with filters and Chinese search, export to XLSX, and one problem's page, where a
supervisor merges a duplicate into another problem of the same target (or takes it back out)."""

from __future__ import annotations

import uuid
from typing import Any

from flask import Response, flash, redirect, render_template, request, url_for
from marshmallow import ValidationError
from sqlalchemy import select

from schemas.enums import ProblemCategory, ProblemOutcome, ProblemStatus, Role, TargetKind
from schemas.visits import ProblemListArgsSchema, ProblemMergeSchema, ProblemUnmergeSchema
from server import db
from server.console import actor, bp, login_required
from server.console.forms import Refused, form_data, submit, typed
from server.console.referrals import problem_referrals
from server.db.models import AuditEntry, Department
from server.errors import ApiError
from server.services import problems as problem_service
from server.services.directory import list_campaigns, list_departments
from server.services.target_io import to_xlsx
from server.services.visits import get_visit

FILTERS = (
    "campaign", "kind", "category", "status", "outcome", "department", "from", "to", "q", "duplicates", "cursor"
)  # fmt: skip
DUPLICATES = {"hide": "不显示", "include": "一并显示", "only": "只看已合并的"}
ACTIONS = {
    "create": "登记",
    "update": "修改",
    "merge": "合并至其他问题",
    "unmerge": "撤销合并",
    "follow_referral": "随交办单更新",
}
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
        duplicates=DUPLICATES,
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
    rows: list[list[Any]] = [
        ["提出时间", "走访对象", "类别", "问题描述", "承办部门", "状态", "办理结果", "说明", "合并"]
    ]
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
                    "已合并至其他问题" if p.duplicate_of_id else "",
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


def _detail_page(
    problem_id: uuid.UUID,
    *,
    failed: str | None = None,
    form: dict[str, Any] | None = None,
    errors: dict[str, list[str]] | None = None,
    status: int = 200,
) -> Any:
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
    survivor = None
    if item.duplicate_of_id is not None:
        try:
            survivor = problem_service.get_problem(session, who, item.duplicate_of_id)
        except ApiError:  # a survivor this reader may not see: the page says merged, without a link
            survivor = None
    merging = who.role is Role.supervisor and item.duplicate_of_id is None
    return render_template(
        "console/problem.html",
        problem=item,
        visit=visit,
        history=history,
        actions=ACTIONS,
        departments=departments,
        referrals=problem_referrals(session, who, problem_id),
        survivor=survivor,
        duplicates=problem_service.duplicates_of(session, who, problem_id),
        candidates=problem_service.merge_candidates(session, who, item) if merging else [],
        failed=failed,
        form=form or {},
        errors=errors or {},
    ), status


@bp.get("/problems/<uuid:problem_id>")
@login_required()
def problem(problem_id: uuid.UUID) -> Any:
    return _detail_page(problem_id)


@bp.post("/problems/<uuid:problem_id>/merge")
@login_required(Role.supervisor)
def problem_merge(problem_id: uuid.UUID) -> Any:
    return _merge_action(problem_id, "merge")


@bp.post("/problems/<uuid:problem_id>/unmerge")
@login_required(Role.supervisor)
def problem_unmerge(problem_id: uuid.UUID) -> Any:
    return _merge_action(problem_id, "unmerge")


def _merge_action(problem_id: uuid.UUID, name: str) -> Any:
    """Merge into the chosen problem, or take the duplicate back out; a refusal comes back on the page."""
    session, who = db.session(), actor()
    schema = ProblemMergeSchema() if name == "merge" else ProblemUnmergeSchema()
    move = problem_service.merge_problem if name == "merge" else problem_service.unmerge_problem
    done = submit(schema, form_data(schema), lambda data: move(session, who, problem_id, data))
    if isinstance(done, Refused):
        return _detail_page(problem_id, failed=name, form=typed(), errors=done.errors, status=done.status)
    flash("已合并为重复问题，不再单独计数。" if name == "merge" else "已撤销合并，问题重新单独计数。", "success")
    return redirect(url_for("console.problem", problem_id=problem_id))
