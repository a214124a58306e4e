"""Targets (parks, projects, firms), their import/export, and cadres' portfolios."""

from __future__ import annotations

import uuid
from typing import Any

from flask import Response, request
from flask.views import MethodView
from marshmallow import Schema, fields, validate

from schemas.common import page_of
from schemas.enums import Role
from schemas.targets import (
    PortfolioSchema,
    TargetImportResultSchema,
    TargetListArgsSchema,
    TargetSchema,
    TargetUpdateSchema,
)
from server import db
from server.api import ACCEPTS_NON_JSON
from server.api.blueprint import Blueprint
from server.api.security import current_actor
from server.api.visits import page_limit
from server.errors import ApiError
from server.services import target_io, targets

PREFIX = ""
blp = Blueprint("targets", __name__, description="Targets (走访对象): parks, projects, firms; portfolios (包挂)")


class ExportArgsSchema(Schema):
    format = fields.String(load_default="xlsx", validate=validate.OneOf(["csv", "xlsx"]))


@blp.route("/targets")
class Targets(MethodView):
    @blp.arguments(TargetListArgsSchema, location="query")
    @blp.response(200, page_of(TargetSchema, "TargetPage"))
    def get(self, args: dict[str, Any]) -> Any:
        """Targets by name; filter by kind, park, a cadre's portfolio or part of the name."""
        current_actor()
        page = targets.list_targets(db.session(), args, limit=page_limit(args["limit"]))
        return {"items": page.items, "next_cursor": page.next_cursor}

    @blp.arguments(TargetSchema)
    @blp.response(201, TargetSchema)
    @blp.alt_response(409, description="integrity_conflict: the id or code is taken")
    def post(self, data: dict[str, Any]) -> Any:
        """Add a target (admins)."""
        session = db.session()
        target = targets.create_target(session, current_actor(), data)
        session.commit()
        return target


@blp.route("/targets/export")
class TargetExport(MethodView):
    @blp.arguments(ExportArgsSchema, location="query")
    @blp.response(200, description="The target list as CSV or XLSX, with Chinese headers")
    def get(self, args: dict[str, Any]) -> Response:
        """Download every target (supervisors, admins)."""
        current_actor().require(Role.supervisor, Role.admin)
        rows = target_io.export_rows(db.session())
        if args["format"] == "csv":
            body, mime = target_io.to_csv(rows), "text/csv; charset=utf-8"
        else:
            body, mime = target_io.to_xlsx(rows), "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
        filename = f"targets.{args['format']}"
        return Response(body, mimetype=mime, headers={"Content-Disposition": f"attachment; filename={filename}"})


@blp.route("/targets/import")
class TargetImport(MethodView):
    @blp.response(200, TargetImportResultSchema)
    @blp.alt_response(415, description="unsupported_file_type: not a .csv or .xlsx file")
    @blp.alt_response(422, description="No file, an unreadable one (unreadable_file), or invalid rows")
    @blp.doc(
        requestBody={
            "content": {
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "properties": {"file": {"type": "string", "format": "binary"}},
                        "required": ["file"],
                    }
                }
            }
        }
    )
    def post(self) -> Any:
        """Load a CSV or XLSX list of targets (admins); all rows or none."""
        actor = current_actor()
        upload = request.files.get("file")
        if upload is None or not upload.filename:
            raise ApiError(422, errors={"file": ["Send the list as a multipart field named 'file'."]})
        session = db.session()
        result = target_io.import_targets(session, actor, upload.filename, upload.read())
        session.commit()
        return result


setattr(TargetImport, ACCEPTS_NON_JSON, True)


@blp.route("/targets/<uuid:target_id>")
class TargetById(MethodView):
    @blp.response(200, TargetSchema)
    def get(self, target_id: uuid.UUID) -> Any:
        current_actor()
        return targets.get_target(db.session(), target_id)

    @blp.arguments(TargetUpdateSchema)
    @blp.response(200, TargetSchema)
    @blp.alt_response(409, description="version_conflict, or integrity_conflict: the code is taken")
    def patch(self, data: dict[str, Any], target_id: uuid.UUID) -> Any:
        """Change a target (admins); send the version you read."""
        session = db.session()
        target = targets.update_target(session, current_actor(), target_id, data)
        session.commit()
        return target

    @blp.response(204)
    @blp.alt_response(409, description="target_in_use: it has visits, or targets sit in this park")
    def delete(self, target_id: uuid.UUID) -> Response:
        """Delete a target nobody has visited (admins); deactivate visited ones instead."""
        session = db.session()
        targets.delete_target(session, current_actor(), target_id)
        session.commit()
        return Response(status=204)


@blp.route("/users/<uuid:user_id>/portfolio")
class Portfolio(MethodView):
    @blp.response(200, PortfolioSchema)
    def get(self, user_id: uuid.UUID) -> Any:
        """The targets a cadre is responsible for (包挂)."""
        current_actor()
        return {"user_id": user_id, "target_ids": targets.portfolio(db.session(), user_id)}

    @blp.arguments(PortfolioSchema)
    @blp.response(200, PortfolioSchema)
    def put(self, data: dict[str, Any], user_id: uuid.UUID) -> Any:
        """Replace a cadre's portfolio (admins)."""
        session = db.session()
        ids = targets.set_portfolio(session, current_actor(), user_id, data["target_ids"])
        session.commit()
        return {"user_id": user_id, "target_ids": ids}
