"""Admin pages: users and devices (revoke a lost phone)."""

from __future__ import annotations

import uuid
from typing import Any

from flask import flash, redirect, render_template, url_for

from schemas.enums import Role
from server import db
from server.console import actor, bp, login_required
from server.services import auth, directory, sync


@bp.get("/admin/users")
@login_required(Role.admin, Role.supervisor)
def admin_users() -> Any:
    session = db.session()
    return render_template("console/users.html", users=directory.list_users(session, actor()))


@bp.get("/admin/devices")
@login_required(Role.admin, Role.supervisor)
def admin_devices() -> Any:
    return render_template("console/devices.html", devices=sync.device_status(db.session(), actor()))


@bp.post("/admin/devices/<uuid:device_id>/revoke")
@login_required(Role.admin)
def revoke_device(device_id: uuid.UUID) -> Any:
    session = db.session()
    auth.revoke_device(session, actor(), device_id)
    session.commit()
    flash("设备已停用，其登录令牌即刻失效。", "success")
    return redirect(url_for("console.admin_devices"))
