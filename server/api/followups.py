"""Follow-ups (跟进任务): yours to read and complete; supervisors see all and reassign."""

from __future__ import annotations

import uuid
from typing import Any

from flask.views import MethodView

from schemas.common import page_of
from schemas.followups import FollowUpCompleteSchema, FollowUpListArgsSchema, FollowUpReassignSchema, FollowUpSchema
from server import db
from server.api.blueprint import Blueprint
from server.api.security import current_actor
from server.api.visits import page_limit
from server.services import followups

PREFIX = "/followups"
blp = Blueprint("followups", __name__, description="Follow-ups (跟进任务): revisits, progress checks")


@blp.route("")
class FollowUps(MethodView):
    @blp.arguments(FollowUpListArgsSchema, location="query")
    @blp.response(200, page_of(FollowUpSchema, "FollowUpPage"))
    def get(self, args: dict[str, Any]) -> Any:
        """Your follow-ups (department staff: the department's; supervisors and admins: all), newest first."""
        session = db.session()
        page = followups.list_followups(session, current_actor(), args, limit=page_limit(args["limit"]))
        return {"items": followups.describe(session, page.items), "next_cursor": page.next_cursor}


@blp.route("/<uuid:followup_id>")
class FollowUpById(MethodView):
    @blp.response(200, FollowUpSchema)
    def get(self, followup_id: uuid.UUID) -> Any:
        session = db.session()
        return followups.describe(session, [followups.get_followup(session, current_actor(), followup_id)])[0]


@blp.route("/<uuid:followup_id>/complete")
class FollowUpComplete(MethodView):
    @blp.arguments(FollowUpCompleteSchema)
    @blp.response(200, FollowUpSchema)
    @blp.alt_response(409, description="Stale version, or the follow-up is already done")
    def post(self, data: dict[str, Any], followup_id: uuid.UUID) -> Any:
        """Record the result: a revisit's satisfaction (不满意 reopens the referral), a progress note."""
        session = db.session()
        followup = followups.complete_followup(session, current_actor(), followup_id, data)
        view = followups.describe(session, [followup])[0]
        session.commit()
        return view


@blp.route("/<uuid:followup_id>/reassign")
class FollowUpReassign(MethodView):
    @blp.arguments(FollowUpReassignSchema)
    @blp.response(200, FollowUpSchema)
    @blp.alt_response(409, description="Stale version, or the follow-up is already done")
    def post(self, data: dict[str, Any], followup_id: uuid.UUID) -> Any:
        """Give an open follow-up to another cadre or supervisor (supervisors)."""
        session = db.session()
        followup = followups.reassign_followup(session, current_actor(), followup_id, data)
        view = followups.describe(session, [followup])[0]
        session.commit()
        return view
