"""Log in (a device gets a bearer token), log out, who am I, devices and revoking a lost phone."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from flask import current_app, g, request
from flask.views import MethodView

from schemas.auth import DeviceListArgsSchema, DeviceSchema, LoginSchema, TokenSchema, UserBriefSchema
from server import db
from server.api.blueprint import Blueprint
from server.api.security import current_actor
from server.extensions import limiter, login_username_key
from server.services import auth
from server.services.directory import get_user

PREFIX = ""
blp = Blueprint("auth", __name__, description="Log in, log out and devices")


def _login_limit() -> str:
    return str(current_app.config["LOGIN_RATE_LIMIT"])


@blp.route("/auth/login")
class Login(MethodView):
    public = True  # server.api.PUBLIC: no token needed

    decorators = [limiter.limit(_login_limit), limiter.limit(_login_limit, key_func=login_username_key)]

    @blp.doc(security=[])
    @blp.arguments(LoginSchema)
    @blp.response(200, TokenSchema)
    @blp.alt_response(401, description="Wrong username or password")
    @blp.alt_response(429, description="Too many attempts; see Retry-After")
    def post(self, data: dict[str, Any]) -> dict[str, Any]:
        """Log in with username and password; the token is bound to the device."""
        session = db.session()
        result = auth.login(
            session,
            data["username"],
            data["password"],
            device_id=data.get("device_id"),
            device_name=data.get("device_name"),
            app_version=data.get("app_version"),
            ttl=dt.timedelta(days=current_app.config["TOKEN_TTL_DAYS"]),
            remote_addr=request.remote_addr,
        )
        session.commit()
        return {
            "token": result.token,
            "token_type": "Bearer",
            "expires_at": result.expires_at,
            "device_id": result.device.id,
            "user": result.user,
        }


@blp.route("/auth/logout")
class Logout(MethodView):
    @blp.response(204)
    def post(self) -> None:
        """Revoke the token of this request."""
        actor = current_actor()
        session = db.session()
        auth.logout(session, actor, g.token_id)
        session.commit()


@blp.route("/auth/me")
class Me(MethodView):
    @blp.response(200, UserBriefSchema)
    def get(self) -> Any:
        """The logged-in user."""
        actor = current_actor()
        return get_user(db.session(), actor, actor.user_id)  # type: ignore[arg-type]


@blp.route("/devices")
class Devices(MethodView):
    @blp.arguments(DeviceListArgsSchema, location="query")
    @blp.response(200, DeviceSchema(many=True))
    def get(self, args: dict[str, Any]) -> Any:
        """Devices: your own, or everyone's for supervisors and admins."""
        return auth.list_devices(db.session(), current_actor(), args["user"])


@blp.route("/devices/<uuid:device_id>/revoke")
class RevokeDevice(MethodView):
    @blp.response(200, DeviceSchema)
    def post(self, device_id: uuid.UUID) -> Any:
        """Cut off a device (a lost phone): every token it holds stops working at once."""
        actor = current_actor()
        session = db.session()
        device = auth.revoke_device(session, actor, device_id)
        session.commit()
        return device
