"""The sync protocol's endpoints (docs/sync-protocol.md): push, pull, devices, conflicts."""

from __future__ import annotations

import uuid
from typing import Any

from flask import current_app, request
from flask.views import MethodView
from marshmallow import fields, validate
from packaging.version import InvalidVersion, Version

from schemas.common import WireSchema
from schemas.protocol import PROTOCOL_VERSION
from schemas.sync import (
    ConflictSchema,
    DeviceStatusSchema,
    PullResultSchema,
    PullSchema,
    PushResultSchema,
    PushSchema,
    RejectionSchema,
    ResolveConflictSchema,
)
from server import db
from server.api.blueprint import Blueprint
from server.api.security import current_actor
from server.errors import ApiError
from server.services import sync

PREFIX = "/sync"
blp = Blueprint("sync", __name__, description="Offline sync: push the outbox, pull changes (docs/sync-protocol.md)")

CLIENT_HEADERS = {
    "parameters": [
        {
            "in": "header",
            "name": "X-Client-Protocol",
            "required": True,
            "description": "The sync protocol the app speaks; another than the server's is 426",
            "schema": {"type": "integer", "enum": [PROTOCOL_VERSION]},
        },
        {
            "in": "header",
            "name": "X-Client-Version",
            "required": True,
            "description": "The app's version, e.g. 1.4.2; below MIN_CLIENT_VERSION a pull is 426",
            "schema": {"type": "string", "pattern": r"^[0-9]+(\.[0-9]+)*$"},
        },
    ]
}


def client_info(*, allow_too_old: bool) -> sync.Client:
    """Check the client's protocol and app version headers (426 when it must update)."""
    raw_protocol = request.headers.get("X-Client-Protocol", "")
    raw_version = request.headers.get("X-Client-Version", "")
    if not raw_protocol.isdigit() or not raw_version:
        raise ApiError(400, "Send X-Client-Protocol and X-Client-Version headers.", code="missing_client_version")
    protocol = int(raw_protocol)
    if protocol != PROTOCOL_VERSION:
        raise ApiError(
            426,
            f"This server speaks sync protocol {PROTOCOL_VERSION}, not {protocol}; update the app.",
            code="unsupported_protocol",
        )
    try:
        too_old = Version(raw_version) < Version(current_app.config["MIN_CLIENT_VERSION"])
    except InvalidVersion:
        raise ApiError(400, "X-Client-Version is not a version number.", code="missing_client_version") from None
    if too_old and not allow_too_old:
        raise ApiError(
            426,
            f"请升级应用：此版本（{raw_version}）过旧，最低需要 {current_app.config['MIN_CLIENT_VERSION']}。"
            " The app is too old for this server; your queued notes are still accepted by push.",
            code="client_too_old",
        )
    return sync.Client(protocol=protocol, version=raw_version[:40], too_old=too_old)


@blp.route("/push")
class Push(MethodView):
    @blp.doc(**CLIENT_HEADERS)
    @blp.arguments(PushSchema)
    @blp.response(200, PushResultSchema)
    @blp.alt_response(409, description="sequence_gap (details.expected_seq) or device_mismatch")
    @blp.alt_response(426, description="unsupported_protocol")
    def post(self, data: dict[str, Any]) -> Any:
        """Apply a batch of the device's outbox, exactly once per change, in seq order."""
        actor = current_actor()
        client = client_info(allow_too_old=True)  # an old app's notes are still accepted
        session = db.session()
        result = sync.push(session, actor, data, client)
        session.commit()
        return result


@blp.route("/pull")
class Pull(MethodView):
    @blp.doc(**CLIENT_HEADERS)
    @blp.arguments(PullSchema)
    @blp.response(200, PullResultSchema)
    @blp.alt_response(410, description="cursor_expired: clear the cache (not the outbox) and pull from 0")
    @blp.alt_response(426, description="client_too_old or unsupported_protocol")
    def post(self, data: dict[str, Any]) -> Any:
        """Changes after the cursor that this user receives, oldest first, in pages."""
        actor = current_actor()
        client = client_info(allow_too_old=False)
        # Read in a read transaction of its own: a pull never holds the write lock.
        with db.read_session() as session:
            result = sync.pull(session, actor, data)
        with db.session_scope() as session:
            sync.touch_pull(session, actor.device_id, client)  # type: ignore[arg-type]
        return result


class ConflictArgsSchema(WireSchema):
    status = fields.String(load_default="open", validate=validate.OneOf(["open", "resolved"]))


class RejectionArgsSchema(WireSchema):
    device = fields.UUID(load_default=None)


@blp.route("/devices")
class Devices(MethodView):
    @blp.response(200, DeviceStatusSchema(many=True))
    def get(self) -> Any:
        """Per device: last contact, queue depth, last seq, rejected changes, open conflicts."""
        return sync.device_status(db.session(), current_actor())


@blp.route("/rejections")
class Rejections(MethodView):
    @blp.arguments(RejectionArgsSchema, location="query")
    @blp.response(200, RejectionSchema(many=True))
    def get(self, args: dict[str, Any]) -> Any:
        """Changes refused for good, with their reasons (your own; all for supervisors)."""
        return sync.rejections(db.session(), current_actor(), args["device"])


@blp.route("/conflicts")
class Conflicts(MethodView):
    @blp.arguments(ConflictArgsSchema, location="query")
    @blp.response(200, ConflictSchema(many=True))
    def get(self, args: dict[str, Any]) -> Any:
        """Edits made on an outdated version: both versions (your own; all for supervisors)."""
        return sync.list_conflicts(db.session(), current_actor(), args["status"])


@blp.route("/conflicts/<uuid:conflict_id>/resolve")
class ResolveConflict(MethodView):
    @blp.arguments(ResolveConflictSchema)
    @blp.response(200, ConflictSchema)
    def post(self, data: dict[str, Any], conflict_id: uuid.UUID) -> Any:
        """Keep the server's version, or apply the device's edit on top of it."""
        session = db.session()
        conflict = sync.resolve_conflict(session, current_actor(), conflict_id, data["resolution"])
        session.commit()
        return conflict
