"""Follow-ups (跟进任务) in the console: who has what to do, a revisit's result, reassigning.

Supervisors and admins see every follow-up, cadres theirs, department staff their department's
(server/services/followups.py decides). A person completes what is assigned to them; a
department's task, its staff; supervisors give open ones to another cadre or supervisor.
"""

from __future__ import annotations

import uuid
from typing import Any

from flask import flash, redirect, render_template, request, url_for
from marshmallow import ValidationError

from schemas.enums import Role
from schemas.followups import (
    FollowUpCompleteSchema,
    FollowUpKind,
    FollowUpListArgsSchema,
    FollowUpReassignSchema,
    FollowUpStatus,
    Satisfaction,
)
from server import db
from server.console import actor, bp, login_required
from server.console.forms import Refused, form_data, submit, typed, zh_errors
from server.db.models import User
from server.db.types import utcnow
from server.domain.periods import local_date
from server.errors import ApiError
from server.services import followups as followup_service
from server.services.actors import Actor
from server.services.directory import list_users

PAGE = 50
LIST_ARGS = ("status", "kind", "assignee", "cursor")
DONE = {"complete": "已记录结果。", "reassign": "已改派。"}


def _may_complete(who: Actor, view: dict[str, Any]) -> bool:
    """The service's rule, to decide which forms to show (it checks again on submit)."""
    if view["status"] is not FollowUpStatus.open:
        return False
    if view["assignee_id"] is not None:
        return bool(view["assignee_id"] == who.user_id)
    return who.department_id is not None and view["department_id"] == who.department_id


def _page(failed: str | None = None, form: dict[str, Any] | None = None, errors: dict[str, Any] | None = None) -> Any:
    session, who = db.session(), actor()
    raw = {k: v.strip() for k, v in request.args.items() if k in LIST_ARGS and v.strip()}
    raw.setdefault("status", FollowUpStatus.open.value)
    wire = {k: v for k, v in raw.items() if not (k == "status" and v == "all")}
    list_errors: dict[str, list[str]] = {}
    try:
        args = FollowUpListArgsSchema().load(wire)
    except ValidationError as e:
        list_errors = zh_errors(e)
        args = FollowUpListArgsSchema().load({"status": FollowUpStatus.open.value})
    try:
        page = followup_service.list_followups(session, who, args, limit=PAGE)
    except ApiError as e:
        if e.status != 400:
            raise
        list_errors = {"cursor": ["分页已失效，请从第一页重新查看。"]}
        page = followup_service.list_followups(session, who, {**args, "cursor": None}, limit=PAGE)
    views = followup_service.describe(session, page.items)
    supervisor = who.role is Role.supervisor
    assignees: list[User] = []
    loads: list[tuple[User, int]] = []
    if who.reads_everything:
        people = [u for u in list_users(session, who, active=True) if u.role in followup_service.ASSIGNABLE_ROLES]
        assignees = sorted(people, key=lambda u: (u.role is not Role.cadre, u.display_name))
        counts = followup_service.cadre_loads(session)
        loads = sorted(((u, counts[u.id]) for u in assignees if u.id in counts), key=lambda x: (-x[1], x[0].username))
    query = {k: v for k, v in request.args.items() if k in LIST_ARGS}
    return render_template(
        "console/followups.html",
        query=query,
        today=local_date(utcnow()),
        items=views,
        next_cursor=page.next_cursor,
        filters=raw,
        list_errors=list_errors,
        kinds=FollowUpKind,
        statuses=FollowUpStatus,
        satisfactions=Satisfaction,
        may_complete={v["id"]: _may_complete(who, v) for v in views},
        may_reassign=supervisor,
        assignees=assignees,
        loads=loads,
        failed=failed,
        form=form or {},
        errors=errors or {},
    ), (422 if errors and failed else 200)


@bp.get("/followups")
@login_required()
def followups() -> Any:
    return _page()


def _act(followup_id: uuid.UUID, what: str) -> Any:
    session, who = db.session(), actor()
    schema = FollowUpCompleteSchema() if what == "complete" else FollowUpReassignSchema()
    move = followup_service.complete_followup if what == "complete" else followup_service.reassign_followup
    done = submit(schema, form_data(schema), lambda data: move(session, who, followup_id, data))
    if isinstance(done, Refused):
        body, _status = _page(failed=f"{what}:{followup_id}", form=typed(), errors=done.errors)
        return body, done.status
    flash(DONE[what], "success")
    query: dict[str, Any] = {k: v for k, v in request.args.items() if k in LIST_ARGS}
    return redirect(url_for("console.followups", **query))


@bp.post("/followups/<uuid:followup_id>/complete")
@login_required()
def complete_followup(followup_id: uuid.UUID) -> Any:
    return _act(followup_id, "complete")


@bp.post("/followups/<uuid:followup_id>/reassign")
@login_required(Role.supervisor)
def reassign_followup(followup_id: uuid.UUID) -> Any:
    return _act(followup_id, "reassign")
