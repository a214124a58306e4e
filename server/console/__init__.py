"""The web console (Chinese, server-rendered): supervisors, department staff and admins at a desk.

Same rules as the API: every page calls the same services with the same Actor, so a role sees
and does exactly what the API allows it. Sessions are server-side (see services/console_sessions),
every form carries a CSRF token (Flask-WTF), and every page is sent with a strict Content
Security Policy: scripts, styles and fonts come only from this server.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

from flask import Blueprint, Flask, Response, current_app, g, redirect, request, session, url_for
from flask_wtf.csrf import CSRFProtect

from schemas.common import SHANGHAI
from schemas.enums import Role
from server.db.models import User
from server.services.actors import Actor
from server.services.console_sessions import user_for

bp = Blueprint("console", __name__)
csrf = CSRFProtect()
F = TypeVar("F", bound=Callable[..., Any])

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; font-src 'self'; "
    "connect-src 'self'; object-src 'none'; base-uri 'self'; form-action 'self'; frame-ancestors 'none'"
)
HOME = {
    Role.supervisor: "console.dashboard",
    Role.admin: "console.admin_users",
    Role.department_staff: "console.problems",
    Role.cadre: "console.problems",
}


def current_user() -> User | None:
    if "console_user" not in g:
        sid = session.get("sid")
        g.console_user = None
        if sid:
            with current_app.extensions["db_sessionmaker"]() as s:
                user = user_for(s, sid)
                if user is not None:
                    s.expunge(user)
                g.console_user = user
    return g.console_user


def actor() -> Actor:
    user = current_user()
    assert user is not None, "views call actor() only behind login_required"
    return Actor(user.id, user.role, user.department_id, request_id=None, remote_addr=request.remote_addr)


def login_required(*roles: Role) -> Callable[[F], F]:
    """Send anonymous visitors to the login page; refuse other roles with 403."""

    def decorate(view: F) -> F:
        @wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            user = current_user()
            if user is None:
                return redirect(url_for("console.login", next=request.full_path.rstrip("?")))
            if roles and user.role not in roles:
                from server.errors import ApiError

                raise ApiError(403, "您的角色无权访问此页面。")
            return view(*args, **kwargs)

        return wrapper  # type: ignore[return-value]

    return decorate


def _security_headers(response: Response) -> Response:
    if not request.path.startswith("/api/"):
        response.headers.setdefault("Content-Security-Policy", CSP)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "same-origin")
        if response.mimetype == "text/html":
            response.headers.setdefault("Cache-Control", "no-store")
    return response


def _local(value: dt.datetime | None, fmt: str = "%Y-%m-%d %H:%M") -> str:
    if value is None:
        return ""
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    return value.astimezone(SHANGHAI).strftime(fmt)


@bp.before_request
def _csrf() -> None:
    if request.method == "POST":
        csrf.protect()


def init_app(app: Flask) -> None:
    app.config.setdefault("WTF_CSRF_CHECK_DEFAULT", False)  # the API uses bearer tokens, not cookies
    app.config.setdefault("WTF_CSRF_TIME_LIMIT", None)  # the token lives as long as the session
    app.config["SESSION_COOKIE_HTTPONLY"] = True
    app.config["SESSION_COOKIE_SAMESITE"] = "Lax"
    app.config["SESSION_COOKIE_NAME"] = "fv_session"
    csrf.init_app(app)
    from server.console import admin, auth, calendar, dashboard, digests, followups, problems, referrals  # noqa: F401

    app.register_blueprint(bp)
    app.after_request(_security_headers)
    app.jinja_env.filters["local"] = _local
    app.jinja_env.filters["dict_merge"] = lambda a, b: {**a, **b}

    @app.context_processor
    def _globals() -> dict[str, Any]:
        return {"current_user": current_user, "Role": Role}
