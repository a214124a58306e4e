"""Admin pages: users (create, edit, deactivate), devices (revoke a lost phone), targets (import/export)."""

from __future__ import annotations

import uuid
from typing import Any

from flask import Response, flash, redirect, render_template, request, url_for
from marshmallow import ValidationError

from schemas.enums import Role
from schemas.users import UserSchema, UserUpdateSchema
from server import db
from server.console import actor, bp, login_required
from server.console.forms import json_value, zh_errors
from server.errors import ApiError
from server.services import auth, directory, sync, target_io

USER_FIELDS = ("username", "display_name", "role", "department_id", "email", "phone", "title", "password")


def _form(fields: tuple[str, ...]) -> dict[str, Any]:
    """The submitted fields, blanks dropped (they mean "not given"), as the schemas expect."""
    data: dict[str, Any] = {k: request.form.get(k, "").strip() for k in fields}
    return {k: v for k, v in data.items() if v}


@bp.get("/admin/users")
@login_required(Role.admin, Role.supervisor)
def admin_users() -> Any:
    session = db.session()
    return render_template(
        "console/users.html",
        users=directory.list_users(session, actor()),
        departments=directory.list_departments(session),
        form={},
        errors={},
    )


@bp.post("/admin/users")
@login_required(Role.admin)
def create_user() -> Any:
    session = db.session()
    raw = _form(USER_FIELDS)
    try:
        user = directory.create_user(session, actor(), UserSchema().load(raw))
        session.commit()
    except (ApiError, ValidationError) as e:
        session.rollback()
        return render_template(
            "console/users.html",
            users=directory.list_users(session, actor()),
            departments=directory.list_departments(session),
            form=raw,
            errors=zh_errors(e),
        ), 422
    flash(f"已创建用户 {user.username}。", "success")
    return redirect(url_for("console.admin_users"))


@bp.route("/admin/users/<uuid:user_id>", methods=["GET", "POST"])
@login_required(Role.admin)
def edit_user(user_id: uuid.UUID) -> Any:
    session = db.session()
    user = directory.get_user(session, actor(), user_id)
    departments = directory.list_departments(session)
    if request.method == "GET":
        form = {f: getattr(user, f) for f in ("display_name", "email", "phone", "title")}
        form |= {"role": user.role.value, "department_id": str(user.department_id or ""), "active": user.active}
        return render_template("console/user.html", user=user, departments=departments, form=form, errors={})
    raw = _form(("display_name", "role", "department_id", "email", "phone", "title", "password"))
    raw["active"] = request.form.get("active") == "on"
    raw["version"] = json_value(UserUpdateSchema().fields["version"], request.form.get("version", "").strip())
    if "department_id" not in raw:
        raw["department_id"] = None
    try:
        directory.update_user(session, actor(), user_id, UserUpdateSchema().load(raw))
        session.commit()
    except (ApiError, ValidationError) as e:
        session.rollback()
        return render_template(
            "console/user.html", user=user, departments=departments, form=raw, errors=zh_errors(e)
        ), 409 if isinstance(e, ApiError) and e.status == 409 else 422
    flash("已保存。", "success")
    return redirect(url_for("console.admin_users"))


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


@bp.get("/admin/targets")
@login_required(Role.admin, Role.supervisor)
def admin_targets() -> Any:
    return render_template("console/targets.html", result=None, errors={})


@bp.post("/admin/targets/import")
@login_required(Role.admin)
def import_targets() -> Any:
    upload = request.files.get("file")
    session = db.session()
    if upload is None or not upload.filename:
        return render_template("console/targets.html", result=None, errors={"file": ["请选择要导入的文件。"]}), 422
    try:
        result = target_io.import_targets(session, actor(), upload.filename, upload.read())
        session.commit()
    except ApiError as e:
        session.rollback()
        return render_template("console/targets.html", result=None, errors=zh_errors(e)), e.status
    return render_template("console/targets.html", result=result, errors={})


@bp.get("/admin/targets.<fmt>")
@login_required(Role.admin, Role.supervisor)
def export_targets(fmt: str) -> Response:
    if fmt not in ("csv", "xlsx"):
        raise ApiError(404)
    rows = target_io.export_rows(db.session())
    if fmt == "csv":
        body, mime = target_io.to_csv(rows), "text/csv; charset=utf-8"
    else:
        body, mime = target_io.to_xlsx(rows), "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    return Response(body, mimetype=mime, headers={"Content-Disposition": f"attachment; filename=targets.{fmt}"})
