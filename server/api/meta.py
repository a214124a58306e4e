"""GET /api/v1/version: what this server speaks. Cheap (no database), so clients may poll it."""

from __future__ import annotations

from typing import Any

from flask.views import MethodView
from marshmallow import Schema, fields

import server
from schemas.protocol import PROTOCOL_VERSION
from server.api.blueprint import Blueprint

PREFIX = ""
blp = Blueprint("meta", __name__, description="Server version and protocol")


class VersionSchema(Schema):
    server_version = fields.String()
    protocol_version = fields.Integer(metadata={"description": "Sync protocol version (docs/sync-protocol.md)"})
    api = fields.String()


@blp.route("/version")
class Version(MethodView):
    public = True  # server.api.PUBLIC: no token needed

    @blp.doc(security=[])
    @blp.response(200, VersionSchema)
    def get(self) -> dict[str, Any]:
        """The server's version and the sync protocol version it speaks (no login needed)."""
        return {"server_version": server.__version__, "protocol_version": PROTOCOL_VERSION, "api": "v1"}
