"""Log in, log out, and each role's home page."""

from __future__ import annotations

import datetime as dt
from typing import Any
from urllib.parse import urlparse

from flask import current_app, redirect, render_template, request, session, url_for

from server import db
from server.console import HOME, bp, current_user
from server.errors import ApiError
from server.extensions import limiter
from server.services.console_sessions import close_session, open_session


def _safe_next(target: str | None) -> str | None:
    # Only local paths: never an open redirect to another site.
    if target and target.startswith("/") and not target.startswith("//") and not urlparse(target).netloc:
        return target
    return None


def _login_limit() -> str:
    return str(current_app.config["LOGIN_RATE_LIMIT"])


@bp.route("/login", methods=["GET", "POST"])
@limiter.limit(_login_limit, methods=["POST"])
def login() -> Any:
    if request.method == "GET":
        if current_user() is not None:
            return redirect(url_for("console.home"))
        return render_template("console/login.html", username="", error=None)
    username = request.form.get("username", "").strip()
    password = request.form.get("password", "")
    try:
        with db.session_scope() as s:
            sid, user = open_session(
                s,
                username,
                password,
                ttl=dt.timedelta(hours=current_app.config["CONSOLE_SESSION_HOURS"]),
                user_agent=request.user_agent.string,
                remote_addr=request.remote_addr,
            )
            role = user.role
    except ApiError:
        return render_template("console/login.html", username=username, error="用户名或密码错误。"), 401
    session.clear()  # a fresh session (and CSRF token) after login: no session fixation
    session["sid"] = sid
    session.permanent = True
    return redirect(_safe_next(request.args.get("next")) or url_for(HOME[role]))


@bp.post("/logout")
def logout() -> Any:
    sid = session.get("sid")
    if sid:
        with db.session_scope() as s:
            close_session(s, sid)
    session.clear()
    return redirect(url_for("console.login"))


@bp.get("/")
def home() -> Any:
    user = current_user()
    if user is None:
        return redirect(url_for("console.login"))
    return redirect(url_for(HOME[user.role]))
