"""The working-day calendar's overrides in the console: everyone reads them, admins add and remove.

A change counts for deadlines computed from then on; stored deadlines never move
(server/services/calendar.py).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from flask import flash, redirect, render_template, request, url_for

from schemas.calendar import CalendarOverrideSchema
from schemas.enums import Role
from server import db
from server.console import actor, bp, login_required
from server.console.forms import Refused, form_data, submit, typed
from server.db.types import utcnow
from server.domain.periods import local_date
from server.domain.workdays import WorkCalendar
from server.errors import ApiError
from server.services import calendar as calendar_service

WEEKDAYS = "一二三四五六日"


def _year() -> tuple[int, dict[str, list[str]]]:
    today = local_date(utcnow())
    raw = request.args.get("year", "").strip()
    if not raw:
        return today.year, {}
    if raw.isdigit() and 2000 <= int(raw) <= 2099:
        return int(raw), {}
    return today.year, {"year": ["请填写 2000 到 2099 之间的年份。"]}


def _page(form: dict[str, Any], errors: dict[str, list[str]], status: int = 200) -> Any:
    year, year_errors = _year()
    rows = calendar_service.list_overrides(db.session(), year)
    china = WorkCalendar()  # China's calendar without the overrides: what each override changes
    return render_template(
        "console/calendar.html",
        year=year,
        rows=[
            {
                "row": r,
                "weekday": WEEKDAYS[r.day.weekday()],
                "china": china.is_workday(r.day),
            }
            for r in rows
        ],
        form=form,
        errors=errors,
        year_errors=year_errors,
    ), status


@bp.get("/admin/calendar")
@login_required()
def admin_calendar() -> Any:
    return _page({"workday": "false"}, {})


@bp.post("/admin/calendar")
@login_required(Role.admin)
def set_calendar_override() -> Any:
    session, schema = db.session(), CalendarOverrideSchema()
    done = submit(schema, form_data(schema), lambda data: calendar_service.set_override(session, actor(), data))
    if isinstance(done, Refused):
        return _page(typed(), done.errors, done.status)
    row, created = done
    day = row.day
    flash(f"已{'添加' if created else '修改'} {day.isoformat()} 的设置。", "success")
    return redirect(url_for("console.admin_calendar", year=day.year))


@bp.post("/admin/calendar/<day>/delete")
@login_required(Role.admin)
def delete_calendar_override(day: str) -> Any:
    try:
        parsed = dt.date.fromisoformat(day)
    except ValueError:
        raise ApiError(404) from None
    session = db.session()
    calendar_service.delete_override(session, actor(), parsed)
    session.commit()
    flash(f"已删除 {parsed.isoformat()} 的设置，这一天恢复按国家规定的安排。", "success")
    return redirect(url_for("console.admin_calendar", year=parsed.year))
