"""Problems: read by role and row; triaged by supervisors."""

from __future__ import annotations

import uuid
from typing import Any

from flask.views import MethodView
from flask_smorest import Blueprint

from schemas.common import page_of
from schemas.visits import ProblemListArgsSchema, ProblemSchema, ProblemTriageSchema
from server import db
from server.api.security import current_actor
from server.api.visits import page_limit
from server.services import problems

PREFIX = "/problems"
blp = Blueprint("problems", __name__, description="Problems (问题/诉求) raised by firms")


@blp.route("")
class Problems(MethodView):
    @blp.arguments(ProblemListArgsSchema, location="query")
    @blp.response(200, page_of(ProblemSchema, "ProblemPage"))
    def get(self, args: dict[str, Any]) -> Any:
        """Problems, newest first; department staff see their department's only."""
        page = problems.list_problems(db.session(), current_actor(), args, limit=page_limit(args["limit"]))
        return {"items": page.items, "next_cursor": page.next_cursor}


@blp.route("/<uuid:problem_id>")
class ProblemById(MethodView):
    @blp.response(200, ProblemSchema)
    def get(self, problem_id: uuid.UUID) -> Any:
        return problems.get_problem(db.session(), current_actor(), problem_id)

    @blp.arguments(ProblemTriageSchema)
    @blp.response(200, ProblemSchema)
    @blp.alt_response(409, description="The problem changed since you read it (version)")
    def patch(self, data: dict[str, Any], problem_id: uuid.UUID) -> Any:
        """Triage (supervisors: department, outcome with reason) or reword (the cadre, before triage)."""
        session = db.session()
        problem = problems.update_problem(session, current_actor(), problem_id, data)
        session.commit()
        return problem
