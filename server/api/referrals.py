"""Referrals (交办单): issue, read, list, one route per action, and the printable sheet."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from flask import Response, current_app, render_template
from flask.views import MethodView
from marshmallow import Schema

from schemas.common import page_of
from schemas.referrals import (
    CancelSchema,
    DecideExtensionSchema,
    DecideReturnSchema,
    ReferralDetailSchema,
    ReferralIssueSchema,
    ReferralListArgsSchema,
    ReferralSchema,
    RequestExtensionSchema,
    RequestReturnSchema,
    RespondSchema,
    ReviewSchema,
    SignSchema,
)
from server import db
from server.api.blueprint import Blueprint
from server.api.security import current_actor
from server.api.visits import page_limit
from server.db.types import utcnow
from server.domain.periods import SHANGHAI, local_date
from server.domain.referrals import ReferralAction
from server.services import followups, referrals

PREFIX = "/referrals"
blp = Blueprint("referrals", __name__, description="Referrals (交办单): key problems handed to a lead department")


def _detail(referral: Any) -> dict[str, Any]:
    session = db.session()
    return referrals.present(session, current_actor(), [referral], detail=True)[0]


@blp.route("")
class Referrals(MethodView):
    @blp.arguments(ReferralListArgsSchema, location="query")
    @blp.response(200, page_of(ReferralSchema, "ReferralPage"))
    def get(self, args: dict[str, Any]) -> Any:
        """Referrals you may read, newest number first; department staff see their department's."""
        session, actor = db.session(), current_actor()
        page = referrals.list_referrals(session, actor, args, limit=page_limit(args["limit"]))
        return {"items": referrals.present(session, actor, page.items), "next_cursor": page.next_cursor}

    @blp.arguments(ReferralIssueSchema)
    @blp.response(201, ReferralDetailSchema)
    def post(self, data: dict[str, Any]) -> Any:
        """Issue a referral for one or more problems (supervisors); the clock starts now."""
        session = db.session()
        referral = referrals.issue_referral(session, current_actor(), data)
        view = _detail(referral)
        session.commit()
        return view


@blp.route("/<uuid:referral_id>")
class ReferralById(MethodView):
    @blp.response(200, ReferralDetailSchema)
    def get(self, referral_id: uuid.UUID) -> Any:
        """One referral with its problems, co-departments, history and follow-ups."""
        return _detail(referrals.get_referral(db.session(), current_actor(), referral_id))


@blp.route("/<uuid:referral_id>/sheet")
class ReferralSheet(MethodView):
    @blp.response(200, description="The referral as a printable one-page A4 sheet (HTML, Chinese)")
    def get(self, referral_id: uuid.UUID) -> Response:
        """The printable sheet (交办单) of a referral."""
        session, actor = db.session(), current_actor()
        view = referrals.present(session, actor, [referrals.get_referral(session, actor, referral_id)], detail=True)[0]
        signer = next((e["actor_name"] for e in reversed(view["history"]) if e["event"] == "signed"), None)
        html = render_template(
            "referrals/sheet.html",
            referral=view,
            signer=signer if view["signed_at"] else None,
            printed_at=utcnow(),
            day=_day,
            moment=_moment,
        )
        return Response(html, mimetype="text/html")


def _day(value: dt.date | dt.datetime) -> str:
    """2026年2月25日, the Beijing day of a moment."""
    day = local_date(value) if isinstance(value, dt.datetime) else value
    return f"{day.year}年{day.month}月{day.day}日"


def _moment(value: dt.datetime) -> str:
    local = value.astimezone(SHANGHAI)
    return f"{_day(local)} {local:%H:%M}"


def _action_route(action: ReferralAction, schema: type[Schema], doc: str) -> None:
    """POST /referrals/<id>/<action>: the action's body, the referral as it is after it."""

    def post(self: MethodView, data: dict[str, Any], referral_id: uuid.UUID) -> Any:
        session = db.session()
        referral = referrals.act(
            session,
            current_actor(),
            referral_id,
            action,
            data,
            revisit_workdays=current_app.config.get("REVISIT_WORKDAYS", followups.REVISIT_WORKDAYS),
        )
        view = _detail(referral)
        session.commit()
        return view

    post.__doc__ = doc
    view = blp.arguments(schema)(post)
    view = blp.response(200, ReferralDetailSchema)(view)
    view = blp.alt_response(409, description="Stale version, or the action does not apply in this state")(view)
    cls = type(f"Referral_{action.value}", (MethodView,), {"post": view})
    blp.route(f"/<uuid:referral_id>/{action.value}", endpoint=f"referral_{action.value}")(cls)


for _action, _schema, _doc in (
    (ReferralAction.sign, SignSchema, "Sign for a referral (签收; the lead department)."),
    (ReferralAction.request_return, RequestReturnSchema, "Ask to return a misrouted referral (申请退回; the lead)."),
    (ReferralAction.decide_return, DecideReturnSchema, "Reassign or refuse a return (审核退回; supervisors)."),
    (ReferralAction.request_extension, RequestExtensionSchema, "Ask for more time (申请延期; the lead)."),
    (ReferralAction.decide_extension, DecideExtensionSchema, "Approve or reject an extension (supervisors)."),
    (ReferralAction.respond, RespondSchema, "Answer with an outcome (办理反馈; the lead department)."),
    (ReferralAction.review, ReviewSchema, "Accept the answer or send it back (审核反馈; supervisors)."),
    (ReferralAction.cancel, CancelSchema, "Cancel an open referral (撤销; supervisors)."),
):
    _action_route(_action, _schema, _doc)
