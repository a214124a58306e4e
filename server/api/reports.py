"""Reports in the article's terms."""

from __future__ import annotations

from typing import Any

from flask.views import MethodView

from schemas.reports import SummaryArgsSchema, SummarySchema
from server import db
from server.api.blueprint import Blueprint
from server.api.security import current_actor
from server.services import reports

PREFIX = "/reports"
blp = Blueprint("reports", __name__, description="Figures: solved / coordinating / deferred, coverage")


@blp.route("/summary")
class Summary(MethodView):
    @blp.arguments(SummaryArgsSchema, location="query")
    @blp.response(200, SummarySchema)
    def get(self, args: dict[str, Any]) -> Any:
        """Problems by outcome, category and department; visit coverage; one Chinese sentence."""
        return reports.summary(db.session(), current_actor(), args["campaign"], args["from_"], args["to"])
