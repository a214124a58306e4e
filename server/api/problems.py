"""Problems: read by role and row; triaged by supervisors, who also merge duplicates."""

from __future__ import annotations

import uuid
from typing import Any

from flask.views import MethodView

from schemas.common import page_of
from schemas.visits import (
    ProblemListArgsSchema,
    ProblemMergeSchema,
    ProblemSchema,
    ProblemTriageSchema,
    ProblemUnmergeSchema,
)
from server import db
from server.api.blueprint import Blueprint
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


@blp.route("/<uuid:problem_id>/merge")
class ProblemMerge(MethodView):
    @blp.arguments(ProblemMergeSchema)
    @blp.response(200, ProblemSchema)
    @blp.alt_response(
        409,
        description="Stale version; the problem is already merged (already_merged), `into` is a merged duplicate "
        "(survivor_merged, details.survivor_id), or the problem is in an open referral (open_referral)",
    )
    def post(self, data: dict[str, Any], problem_id: uuid.UUID) -> Any:
        """Merge this problem, as a duplicate, into another problem of the same target (supervisors).

        The duplicate is closed, keeps its outcome, points at the survivor (`duplicate_of_id`) and
        drops out of reports and of default lists.
        """
        session = db.session()
        problem = problems.merge_problem(session, current_actor(), problem_id, data)
        session.commit()
        return problem


@blp.route("/<uuid:problem_id>/unmerge")
class ProblemUnmerge(MethodView):
    @blp.arguments(ProblemUnmergeSchema)
    @blp.response(200, ProblemSchema)
    @blp.alt_response(409, description="Stale version, or the problem is not a merged duplicate (not_merged)")
    def post(self, data: dict[str, Any], problem_id: uuid.UUID) -> Any:
        """Take a merged duplicate back out (supervisors): its status follows its outcome again."""
        session = db.session()
        problem = problems.unmerge_problem(session, current_actor(), problem_id, data)
        session.commit()
        return problem
