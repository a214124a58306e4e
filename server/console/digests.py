"""The weekly digest (周报) preview: any department's digest, or the bureau summary, for any week.

It renders with server/services/digests.py's `preview` and records and sends nothing. The page
shows the mail's text; its HTML version (inline styles, as mail needs) is offered as a download
rather than shown, so the console keeps its Content Security Policy without exceptions.
"""

from __future__ import annotations

from typing import Any

from flask import Response, current_app, render_template, request

from schemas.enums import Role
from server import db
from server.console import bp, login_required
from server.db.types import utcnow
from server.domain.periods import local_date
from server.errors import ApiError
from server.services.directory import list_departments

try:  # the mail and digest services may be absent from a deployment that does not send mail
    from server.services import digests
except ImportError:  # pragma: no cover - present in this repository
    digests = None  # type: ignore[assignment]

SUPERVISORS = "supervisors"


def _preview() -> tuple[dict[str, str], dict[str, list[str]], Any]:
    """(what was asked, errors, the rendered mail or None)."""
    if digests is None:
        raise ApiError(404)
    who = request.args.get("who", "").strip() or SUPERVISORS
    week_text = request.args.get("week", "").strip()
    errors: dict[str, list[str]] = {}
    try:
        week = digests.parse_week(week_text) if week_text else digests.iso_week(local_date(utcnow()))
    except ValueError:
        week = digests.iso_week(local_date(utcnow()))
        errors["week"] = ["周次格式不对，例如 2026-W48。"]
    form = {"who": who, "week": week_text if errors else week}
    mail = None
    if not errors:
        base_url = current_app.config["PUBLIC_BASE_URL"]
        try:
            mail = digests.preview(db.session(), who, week, base_url=base_url)
        except LookupError:
            errors["who"] = ["没有这个单位，或该单位已停用。"]
    return form, errors, mail


@bp.get("/admin/digests")
@login_required(Role.admin, Role.supervisor)
def digest_preview() -> Any:
    form, errors, mail = _preview()
    departments = [d for d in list_departments(db.session(), active=True) if d.code]
    return render_template(
        "console/digest.html",
        form=form,
        errors=errors,
        mail=mail,
        departments=departments,
        supervisors=SUPERVISORS,
        week_label=digests.week_label(form["week"]) if mail is not None else "",
    ), (422 if errors else 200)


@bp.get("/admin/digests/mail.html")
@login_required(Role.admin, Role.supervisor)
def digest_preview_html() -> Response:
    form, errors, mail = _preview()
    if errors or mail is None or not mail.html:
        raise ApiError(404)
    return Response(
        mail.html,
        mimetype="text/html",
        headers={"Content-Disposition": f"attachment; filename=digest-{form['who']}-{form['week']}.html"},
    )
