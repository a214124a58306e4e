"""Referrals (交办单) in the console: the list by state and department, issuing one from problems, a
referral's page with the moves its reader may make, the printable sheet, and a department's inbox.

Every page calls server/services/referrals.py with the console user's Actor, so the rows and the
moves are the API's: staff of another department get 404 for a referral, co-departments read
only, and a move the rules refuse comes back on the same page with the reason in Chinese.
"""

from __future__ import annotations

import datetime as dt
import re
import uuid
from typing import Any

from flask import Response, current_app, flash, redirect, render_template, request, url_for
from marshmallow import Schema, ValidationError
from sqlalchemy import select

from schemas.enums import ProblemOutcome, Role
from schemas.followups import Satisfaction
from schemas.referrals import (
    PROBLEMS_MAX,
    CancelSchema,
    DecideExtensionSchema,
    DecideReturnSchema,
    ReferralIssueSchema,
    ReferralListArgsSchema,
    RequestExtensionSchema,
    RequestReturnSchema,
    RespondSchema,
    ReviewSchema,
    SignSchema,
)
from server import db
from server.api.referrals import _day, _moment
from server.console import actor, bp, login_required
from server.console.forms import Refused, form_data, submit, typed, zh_errors
from server.db.models import Department
from server.db.types import utcnow
from server.domain.periods import SHANGHAI, local_date
from server.domain.referrals import ReferralAction, ReferralStatus
from server.domain.workdays import end_of_day
from server.errors import ApiError
from server.services import followups
from server.services import referrals as referral_service
from server.services.actors import Actor
from server.services.calendar import load_calendar
from server.services.directory import list_departments
from server.services.followups import member
from server.services.pagination import Page
from server.services.problems import get_problem
from server.services.target_io import to_xlsx

PAGE = 50
EXPORT_MAX = 20_000
EXPORT_HEADER = ["编号", "主办单位", "协办单位", "交办问题", "状态", "交办时间"]
EXPORT_HEADER += ["原定期限", "当前期限", "逾期", "办结时间", "按时办结"]
SOON_WORKDAYS = 5  # "due soon", as the weekly digest counts it
ACTIONS: dict[ReferralAction, type[Schema]] = {
    ReferralAction.sign: SignSchema,
    ReferralAction.request_return: RequestReturnSchema,
    ReferralAction.decide_return: DecideReturnSchema,
    ReferralAction.request_extension: RequestExtensionSchema,
    ReferralAction.decide_extension: DecideExtensionSchema,
    ReferralAction.respond: RespondSchema,
    ReferralAction.review: ReviewSchema,
    ReferralAction.cancel: CancelSchema,
}
# What the flash says after a move, by action and by the form's variant where one action has two ends.
DONE = {
    "sign": "已签收。请在期限内办理并反馈。",
    "request_return": "已申请退回，等待督查人员审核。",
    "decide_return:approve": "已同意退回，交办单已改派。",
    "decide_return:refuse": "已不同意退回，交办单退回原单位继续办理。",
    "request_extension": "已申请延期，等待督查人员审核。",
    "decide_extension:approve": "已同意延期。",
    "decide_extension:reject": "已不同意延期。",
    "respond": "已反馈办理结果，等待督查人员审核。",
    "review:accept": "已审核通过，交办单办结。",
    "review:send_back": "已退回重办。",
    "cancel": "交办单已撤销。",
}
STATES = [
    *((s.value, s.label) for s in ReferralStatus),
    ("overdue", "已逾期"),
    ("due_soon", f"{SOON_WORKDAYS}个工作日内到期"),
]
LIST_ARGS = ("state", "status", "department", "year", "number", "cursor")
DETAIL_LABELS = {
    "lead_department_id": "主办单位",
    "from_department_id": "原主办单位",
    "co_department_ids": "协办单位",
    "deadline": "期限",
    "grounds": "退回理由",
    "until": "延期至",
    "outcome": "办理结果",
    "done": "办理情况",
    "plan": "推进计划",
    "next_date": "下一步日期",
    "reason": "理由",
    "workdays": "办理时限",
    "satisfaction": "满意度",
    "note": "说明",
}
_STYLE = re.compile(r"<style>(.*?)</style>", re.S)


@bp.app_template_filter("referral_status")
def referral_status(value: str) -> str:
    """A referral's state in Chinese (the dashboard lists rows, not views)."""
    return member(ReferralStatus, value).label if value in ReferralStatus.values() else value


def problem_referrals(session: Any, who: Actor, problem_id: uuid.UUID) -> list[dict[str, Any]]:
    """The referrals of a problem that the reader may see, for the problem's page."""
    page = referral_service.list_referrals(session, who, {"problem": problem_id}, limit=20)
    return referral_service.present(session, who, page.items)


# The list ----------------------------------------------------------------------------------


def _department_arg(session: Any, value: str) -> str:
    """A department by id or by code (the weekly digest links by code, e.g. department=rsj)."""
    try:
        return str(uuid.UUID(value))
    except ValueError:
        found = session.scalar(select(Department.id).where(Department.code == value))
        return str(found) if found else value


def _list_args(session: Any, raw: dict[str, str]) -> tuple[dict[str, Any], bool, dict[str, list[str]]]:
    """The service's filters for the console's (state covers both status and overdue); due_soon apart."""
    wire: dict[str, Any] = {k: raw[k] for k in ("year", "number", "cursor") if k in raw}
    state = raw.get("state") or raw.get("status") or ""
    due_soon = state == "due_soon"
    if state == "overdue":
        wire["overdue"] = "true"
    elif state and not due_soon:
        wire["status"] = state
    if raw.get("department"):
        wire["department"] = _department_arg(session, raw["department"])
    try:
        return ReferralListArgsSchema().load(wire), due_soon, {}
    except ValidationError as e:
        errors = zh_errors(e)
        if "status" in errors:
            errors["state"] = errors.pop("status")
        return ReferralListArgsSchema().load({}), False, errors


def _due_soon(session: Any, who: Actor, args: dict[str, Any]) -> list[Any]:
    """Open referrals in the lead department's hands, due within SOON_WORKDAYS working days, soonest first."""
    now = utcnow()
    soon = end_of_day(load_calendar(session).add_workdays(local_date(now), SOON_WORKDAYS))
    found: list[Any] = []
    for status in (ReferralStatus.issued.value, ReferralStatus.signed.value):
        query = {**args, "status": status, "overdue": False, "cursor": None}
        for _ in range(4):  # at most 2,000 rows per state: an inbox, not an archive
            page = referral_service.list_referrals(session, who, query, limit=500, now=now)
            found += [r for r in page.items if r.deadline <= soon]
            if not page.next_cursor:
                break
            query["cursor"] = page.next_cursor
    return sorted(found, key=lambda r: (r.deadline, r.number))[:PAGE]


@bp.get("/referrals")
@login_required()
def referrals() -> Any:
    session, who = db.session(), actor()
    raw = {k: v.strip() for k, v in request.args.items() if k in LIST_ARGS and v.strip()}
    if "status" in raw:  # the API's name for it: shown in the form as state
        raw.setdefault("state", raw.pop("status"))
    args, due_soon, errors = _list_args(session, raw)
    page: Page[Any] = Page([], None)
    try:
        if due_soon:
            page = Page(_due_soon(session, who, args), None)
        else:
            page = referral_service.list_referrals(session, who, args, limit=PAGE)
    except ApiError as e:  # a number nobody could type, a stale cursor
        errors |= zh_errors(e)
        if e.status == 400:
            errors = {"cursor": ["分页已失效，请从第一页重新查看。"]}
    views = referral_service.present(session, who, page.items)
    return render_template(
        "console/referrals.html",
        items=views,
        next_cursor=page.next_cursor,
        form=raw,
        errors=errors,
        states=STATES,
        departments=list_departments(session),
    )


@bp.get("/referrals.xlsx")
@login_required()
def referrals_xlsx() -> Response:
    """The filtered list as a spreadsheet with Chinese headers."""
    session, who = db.session(), actor()
    raw = {k: v.strip() for k, v in request.args.items() if k in LIST_ARGS and v.strip()}
    raw.pop("cursor", None)
    args, due_soon, _errors = _list_args(session, raw)
    rows: list[list[Any]] = [EXPORT_HEADER]
    items: list[Any] = _due_soon(session, who, args) if due_soon else []
    cursor = None
    while not due_soon and len(rows) + len(items) <= EXPORT_MAX:
        page = referral_service.list_referrals(session, who, {**args, "cursor": cursor}, limit=500)
        items += page.items
        if not page.next_cursor:
            break
        cursor = page.next_cursor
    for r in referral_service.present(session, who, items[:EXPORT_MAX]):
        rows.append(
            [
                r["number"],
                r["lead_department"]["name"],
                "、".join(d["name"] for d in r["co_departments"]),
                "；".join(p["description"] for p in r["problems"]),
                r["status_label"],
                _local(r["issued_at"]),
                _local(r["original_deadline"], "%Y-%m-%d"),
                _local(r["deadline"], "%Y-%m-%d"),
                f"逾期{r['overdue_workdays']}个工作日" if r["overdue"] else "",
                _local(r["closed_at"]),
                "" if r["on_time"] is None else ("是" if r["on_time"] else "否"),
            ]
        )
    return Response(
        to_xlsx(rows, "交办单"),
        mimetype="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        headers={"Content-Disposition": "attachment; filename=referrals.xlsx"},
    )


def _local(value: dt.datetime | None, fmt: str = "%Y-%m-%d %H:%M") -> str:
    return value.astimezone(SHANGHAI).strftime(fmt) if value else ""


# Issuing -----------------------------------------------------------------------------------


def _problem_ids(values: list[str]) -> list[uuid.UUID]:
    ids: list[uuid.UUID] = []
    for value in values:
        try:
            pid = uuid.UUID(value.strip())
        except ValueError:
            continue
        if pid not in ids:
            ids.append(pid)
    return ids


def _issue_page(ids: list[uuid.UUID], form: dict[str, Any], errors: dict[str, list[str]], status: int = 200) -> Any:
    session, who = db.session(), actor()
    problems = []
    for pid in ids[:PROBLEMS_MAX]:
        try:
            problems.append(get_problem(session, who, pid))
        except ApiError:
            errors.setdefault("problem_ids", []).append("有问题不存在，已从清单中去掉。")
    if len(ids) > PROBLEMS_MAX:
        errors.setdefault("problem_ids", []).append(f"一份交办单最多交办{PROBLEMS_MAX}个问题。")
    if not form:
        # The department the problems were triaged to, when they agree on one.
        triaged = {p.department_id for p in problems}
        lead = triaged.pop() if len(triaged) == 1 else None
        form = {"lead_department_id": str(lead) if lead else "", "workdays": "5", "co_department_ids": []}
    return render_template(
        "console/referral_new.html",
        problems=problems,
        departments=list_departments(session, active=True),
        form=form,
        errors=errors,
    ), status


@bp.get("/referrals/new")
@login_required(Role.supervisor)
def new_referral() -> Any:
    return _issue_page(_problem_ids(request.args.getlist("problem")), {}, {})


@bp.post("/referrals")
@login_required(Role.supervisor)
def issue_referral() -> Any:
    session, who = db.session(), actor()
    ids = _problem_ids(request.form.getlist("problem_ids"))
    schema = ReferralIssueSchema()
    data = form_data(schema, lists=("co_department_ids",))
    data["problem_ids"] = [str(i) for i in ids]
    done = submit(schema, data, lambda loaded: referral_service.issue_referral(session, who, loaded))
    if isinstance(done, Refused):
        return _issue_page(ids, typed(lists=("co_department_ids",)), done.errors, done.status)
    flash(f"已交办，编号 {done.number}。", "success")
    return redirect(url_for("console.referral", referral_id=done.id))


# One referral ------------------------------------------------------------------------------


def _detail_value(key: str, value: Any, names: dict[str, str]) -> str:
    if key in ("lead_department_id", "from_department_id"):
        return names.get(str(value), "")
    if key == "co_department_ids":
        return "、".join(names.get(str(v), "") for v in value or []) or "无"
    if key == "deadline":
        try:
            return dt.datetime.fromisoformat(str(value)).astimezone(SHANGHAI).strftime("%Y-%m-%d")
        except ValueError:
            return str(value)
    if key == "outcome":
        return member(ProblemOutcome, str(value)).label if value in ProblemOutcome.values() else str(value)
    if key == "satisfaction":
        return member(Satisfaction, str(value)).label if value in Satisfaction.values() else str(value)
    if key == "workdays":
        return f"{value}个工作日"
    return str(value)


def _history(view: dict[str, Any], names: dict[str, str]) -> list[dict[str, Any]]:
    """Each history line with its details as (label, text) pairs, in Chinese."""
    out = []
    for event in view["history"]:
        details = event["details"] or {}
        pairs = [
            (label, _detail_value(key, details[key], names))
            for key, label in DETAIL_LABELS.items()
            if details.get(key) not in (None, "", [])
            and not (event["event"] == "issued" and key in ("co_department_ids", "workdays"))
            and not (key == "deadline" and "until" in details)  # an extension: 延期至 says it
        ]
        out.append(event | {"pairs": pairs})
    return out


def _may_open_problem(who: Actor, view: dict[str, Any], problem: dict[str, Any]) -> bool:
    """Whether the problem's page would open for this reader (else the list shows the text only)."""
    if who.reads_everything:
        return True
    if who.role is Role.department_staff:
        return who.department_id == view["lead_department"]["id"]
    return problem["cadre_id"] == who.user_id


def _detail_page(
    referral_id: uuid.UUID,
    *,
    failed: str | None = None,
    form: dict[str, Any] | None = None,
    errors: dict[str, list[str]] | None = None,
    status: int = 200,
) -> Any:
    session, who = db.session(), actor()
    item = referral_service.get_referral(session, who, referral_id)
    view = referral_service.present(session, who, [item], detail=True)[0]
    departments = list_departments(session)
    names = {str(d.id): d.name for d in departments}
    calendar = load_calendar(session)
    today = local_date(utcnow())
    return render_template(
        "console/referral.html",
        r=view,
        history=_history(view, names),
        departments=[d for d in departments if d.active],
        may_open={p["id"]: _may_open_problem(who, view, p) for p in view["problems"]},
        is_co=who.role is Role.department_staff and who.department_id != view["lead_department"]["id"],
        suggested_until=calendar.add_workdays(view["due_day"], SOON_WORKDAYS),
        tomorrow=today + dt.timedelta(days=1),
        failed=failed,
        form=form or {},
        errors=errors or {},
    ), status


@bp.get("/referrals/<uuid:referral_id>")
@login_required()
def referral(referral_id: uuid.UUID) -> Any:
    return _detail_page(referral_id)


@bp.post("/referrals/<uuid:referral_id>/<action>")
@login_required()
def referral_act(referral_id: uuid.UUID, action: str) -> Any:
    try:
        name = member(ReferralAction, action)
    except ValueError:
        raise ApiError(404) from None
    if name not in ACTIONS:
        raise ApiError(404)
    session, who = db.session(), actor()
    variant = request.form.get("variant", "")
    key = f"{name.value}:{variant}" if variant else name.value
    schema = ACTIONS[name]()
    raw = form_data(schema, lists=("co_department_ids",))
    if request.form.get("co_given") and "co_department_ids" not in raw:
        raw["co_department_ids"] = []  # every box unticked: no co-departments (absent would keep them)
    revisit_workdays = current_app.config.get("REVISIT_WORKDAYS", followups.REVISIT_WORKDAYS)
    done = submit(
        schema,
        raw,
        lambda data: referral_service.act(session, who, referral_id, name, data, revisit_workdays=revisit_workdays),
    )
    if isinstance(done, Refused):
        lists = ("co_department_ids",)
        return _detail_page(referral_id, failed=key, form=typed(lists=lists), errors=done.errors, status=done.status)
    flash(DONE.get(key, "已保存。"), "success")
    return redirect(url_for("console.referral", referral_id=referral_id))


# The printable sheet: the API's template, made to pass the console's Content Security Policy.


def _sheet_css() -> str:
    env = current_app.jinja_env
    assert env.loader is not None
    source = env.loader.get_source(env, "referrals/sheet.html")[0]
    match = _STYLE.search(source)
    return match.group(1) if match else ""


@bp.get("/referrals/sheet.css")
@login_required()
def referral_sheet_css() -> Response:
    return Response(_sheet_css(), mimetype="text/css")


@bp.get("/referrals/<uuid:referral_id>/print")
@login_required()
def referral_print(referral_id: uuid.UUID) -> Response:
    """The A4 sheet the API serves, with its inline style and print button moved to files of this server."""
    session, who = db.session(), actor()
    view = referral_service.present(
        session, who, [referral_service.get_referral(session, who, referral_id)], detail=True
    )[0]
    signer = next((e["actor_name"] for e in reversed(view["history"]) if e["event"] == "signed"), None)
    html = render_template(
        "referrals/sheet.html",
        referral=view,
        signer=signer if view["signed_at"] else None,
        printed_at=utcnow(),
        day=_day,
        moment=_moment,
    )
    css = url_for("console.referral_sheet_css")
    script = url_for("static", filename="console/print.js")
    back = url_for("console.referral", referral_id=referral_id)
    html = _STYLE.sub(f'<link rel="stylesheet" href="{css}">\n<link rel="icon" href="data:,">', html, count=1)
    html = html.replace(' onclick="window.print()"', " data-print")
    html = html.replace('<div class="tools">', f'<div class="tools"><a href="{back}">返回交办单</a> ', 1)
    html = html.replace("</body>", f'<script src="{script}"></script>\n</body>', 1)
    return Response(html, mimetype="text/html")


# A department's inbox ----------------------------------------------------------------------

INBOX = [
    ("issued", "待签收", (ReferralStatus.issued,)),
    ("signed", "办理中", (ReferralStatus.signed,)),
    (
        "waiting",
        "等待督查人员审核",
        (ReferralStatus.return_requested, ReferralStatus.extension_requested, ReferralStatus.responded),
    ),
]


@bp.get("/inbox")
@login_required(Role.department_staff)
def inbox() -> Any:
    """The department's open referrals: those it leads to act on, those it co-handles to read."""
    session, who = db.session(), actor()
    calendar = load_calendar(session)
    now = utcnow()
    sections = []
    for key, title, statuses in INBOX:
        rows: list[Any] = []
        more = False
        for status in statuses:
            args = {"department": who.department_id, "status": status.value}
            page = referral_service.list_referrals(session, who, args, limit=PAGE, now=now)
            rows += page.items
            more = more or page.next_cursor is not None
        rows.sort(key=lambda r: (r.deadline, r.number))
        views = referral_service.present(session, who, rows, now=now, calendar=calendar)
        sections.append({"key": key, "title": title, "rows": views, "more": more})
    department = session.get(Department, who.department_id) if who.department_id else None
    return render_template("console/inbox.html", sections=sections, department=department)


# Mail sent before its links were built from these routes (server/services/links.py) points under
# /console/; the console lives at the root, so those links are redirected to the same page.


@bp.get("/console/")
@bp.get("/console/<path:rest>")
def console_link(rest: str = "") -> Any:
    query = request.query_string.decode("utf-8", "replace")
    target = "/" + rest.lstrip("/\\")  # never "//host" or "/\\host": an open redirect
    return redirect(target + (f"?{query}" if query else ""))
