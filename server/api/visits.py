"""Visit notes: cadres write their own; supervisors and admins read all."""

from __future__ import annotations

import uuid
from typing import Any

from flask import Response, current_app
from flask.views import MethodView

from schemas.common import page_of
from schemas.visits import (
    ProblemNoteSchema,
    ProblemSchema,
    VisitListArgsSchema,
    VisitNoteSchema,
    VisitSchema,
    VisitUpdateSchema,
)
from server import db
from server.api.blueprint import Blueprint
from server.api.security import current_actor
from server.services import visits
from server.services.pagination import limit_of

PREFIX = "/visits"
blp = Blueprint("visits", __name__, description="Visit notes (走访记录) and the problems raised in them")


def page_limit(requested: int | None) -> int:
    return limit_of(requested, current_app.config["PAGE_SIZE_DEFAULT"], current_app.config["PAGE_SIZE_MAX"])


@blp.route("")
class Visits(MethodView):
    @blp.arguments(VisitListArgsSchema, location="query")
    @blp.response(200, page_of(VisitSchema, "VisitPage"))
    def get(self, args: dict[str, Any]) -> Any:
        """Visits, newest first, filtered; `q` searches the summaries (Chinese full text)."""
        page = visits.list_visits(db.session(), current_actor(), args, limit=page_limit(args["limit"]))
        return {"items": page.items, "next_cursor": page.next_cursor}

    @blp.arguments(VisitNoteSchema)
    @blp.response(201, VisitSchema)
    @blp.alt_response(200, schema=VisitSchema, description="The same note was already stored (a retry)")
    @blp.alt_response(409, description="A different note with this id exists")
    def post(self, data: dict[str, Any]) -> Any:
        """Record a visit note with its problems. Idempotent on the client-generated id."""
        session = db.session()
        visit_id, created, answer = visits.post_visit(session, current_actor(), data)
        session.commit()
        if answer is None:  # a new note with attachments: is each file there yet?
            db.read_next(session)  # the answer is read without the write lock
            answer = visits.get_note(session, visit_id)
        return answer, 201 if created else 200


@blp.route("/<uuid:visit_id>")
class VisitById(MethodView):
    @blp.response(200, VisitSchema)
    def get(self, visit_id: uuid.UUID) -> Any:
        return visits.get_visit(db.session(), current_actor(), visit_id)

    @blp.arguments(VisitUpdateSchema)
    @blp.response(200, VisitSchema)
    @blp.alt_response(409, description="The note changed since you read it (version)")
    def patch(self, data: dict[str, Any], visit_id: uuid.UUID) -> Any:
        """Change your own visit note; send the version you read."""
        session = db.session()
        visit = visits.update_visit(session, current_actor(), visit_id, data)
        session.commit()
        return visit

    @blp.response(204)
    def delete(self, visit_id: uuid.UUID) -> Response:
        """Withdraw your own visit note, until a supervisor has acted on its problems."""
        session = db.session()
        visits.delete_visit(session, current_actor(), visit_id)
        session.commit()
        return Response(status=204)


@blp.route("/<uuid:visit_id>/problems")
class VisitProblems(MethodView):
    @blp.arguments(ProblemNoteSchema)
    @blp.response(201, ProblemSchema)
    @blp.alt_response(409, description="id_taken: a problem with this id exists")
    def post(self, data: dict[str, Any], visit_id: uuid.UUID) -> Any:
        """Add a problem to your own visit note."""
        session = db.session()
        problem = visits.add_problem(session, current_actor(), visit_id, data)
        session.commit()
        return problem
