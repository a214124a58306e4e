"""The supervisor dashboard: the article's figures for any period, coverage, what needs attention."""

from __future__ import annotations

from typing import Any

from flask import render_template, request
from marshmallow import ValidationError

from schemas.enums import Role
from schemas.reports import SummaryArgsSchema
from server import db
from server.console import actor, bp, login_required
from server.services import dashboard as figures
from server.services.directory import list_campaigns


@bp.get("/dashboard")
@login_required(Role.supervisor, Role.admin)
def dashboard() -> Any:
    raw = {k: v for k, v in request.args.items() if k in ("campaign", "from", "to") and v}
    errors: dict[str, Any] = {}
    try:
        args = SummaryArgsSchema().load(raw)
    except ValidationError as e:
        errors = e.normalized_messages()
        args = {"campaign": None, "from_": None, "to": None}
    session = db.session()
    data = figures.dashboard(session, actor(), args["campaign"], args["from_"], args["to"])
    chart = {
        "labels": ["已解决", "正在协调解决", "暂不具备解决条件", "尚待办理"],
        "values": [data["summary"]["problems"][k] for k in ("solved", "coordinating", "deferred", "open")],
        "categories": [[c["label"], c["collected"]] for c in data["summary"]["by_category"]],
    }
    chart["rows"] = list(zip(chart["labels"], chart["values"], strict=True))
    return render_template(
        "console/dashboard.html",
        data=data,
        chart=chart,
        campaigns=list_campaigns(session),
        form=raw,
        errors=errors,
    )
