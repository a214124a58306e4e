"""The working-day calendar's overrides: everyone reads them, admins mark days working or off."""

from __future__ import annotations

import datetime as dt
from typing import Any

from flask import Response
from flask.views import MethodView

from schemas.calendar import CalendarListArgsSchema, CalendarOverrideSchema
from server import db
from server.api.blueprint import Blueprint
from server.api.security import current_actor
from server.errors import not_found
from server.services import calendar

PREFIX = "/calendar"
blp = Blueprint("calendar", __name__, description="Working days (工作日): overrides of China's calendar")


@blp.route("/overrides")
class Overrides(MethodView):
    @blp.arguments(CalendarListArgsSchema, location="query")
    @blp.response(200, CalendarOverrideSchema(many=True))
    def get(self, args: dict[str, Any]) -> Any:
        """The days marked working or off by hand, in day order (optionally of one year)."""
        current_actor()
        return calendar.list_overrides(db.session(), args["year"])

    @blp.arguments(CalendarOverrideSchema)
    @blp.response(201, CalendarOverrideSchema)
    @blp.alt_response(200, schema=CalendarOverrideSchema, description="The day's override was replaced")
    def post(self, data: dict[str, Any]) -> Any:
        """Mark a day a working day or a day off (admins); new deadlines count with it, stored ones stay."""
        session = db.session()
        row, created = calendar.set_override(session, current_actor(), data)
        session.commit()
        return row, 201 if created else 200


@blp.route("/overrides/<day>")
class OverrideByDay(MethodView):
    @blp.response(204)
    def delete(self, day: str) -> Response:
        """Remove a day's override (admins); the day is again what China's calendar says."""
        actor = current_actor()
        try:
            parsed = dt.date.fromisoformat(day)
        except ValueError as e:
            raise not_found("Calendar override") from e
        session = db.session()
        calendar.delete_override(session, actor, parsed)
        session.commit()
        return Response(status=204)
