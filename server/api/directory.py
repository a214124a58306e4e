"""Departments, users and campaigns."""

from __future__ import annotations

import uuid
from typing import Any

from flask.views import MethodView

from schemas.targets import CampaignSchema, CampaignUpdateSchema
from schemas.users import (
    DepartmentSchema,
    DepartmentUpdateSchema,
    UserListArgsSchema,
    UserSchema,
    UserUpdateSchema,
)
from server import db
from server.api.blueprint import Blueprint
from server.api.security import current_actor
from server.services import directory

PREFIX = ""
blp = Blueprint("directory", __name__, description="Departments, users and campaigns")


@blp.route("/departments")
class Departments(MethodView):
    @blp.response(200, DepartmentSchema(many=True))
    def get(self) -> Any:
        """All departments (承办单位)."""
        current_actor()
        return directory.list_departments(db.session())

    @blp.arguments(DepartmentSchema)
    @blp.response(201, DepartmentSchema)
    @blp.alt_response(409, description="integrity_conflict: the code is taken")
    def post(self, data: dict[str, Any]) -> Any:
        """Add a department (admins)."""
        session = db.session()
        dept = directory.create_department(session, current_actor(), data)
        session.commit()
        return dept


@blp.route("/departments/<uuid:department_id>")
class DepartmentById(MethodView):
    @blp.response(200, DepartmentSchema)
    def get(self, department_id: uuid.UUID) -> Any:
        current_actor()
        return directory.get_department(db.session(), department_id)

    @blp.arguments(DepartmentUpdateSchema)
    @blp.response(200, DepartmentSchema)
    @blp.alt_response(409, description="version_conflict, or integrity_conflict: the code is taken")
    def patch(self, data: dict[str, Any], department_id: uuid.UUID) -> Any:
        """Change a department (admins); send the version you read."""
        session = db.session()
        dept = directory.update_department(session, current_actor(), department_id, data)
        session.commit()
        return dept


@blp.route("/users")
class Users(MethodView):
    @blp.arguments(UserListArgsSchema, location="query")
    @blp.response(200, UserSchema(many=True))
    def get(self, args: dict[str, Any]) -> Any:
        """Users (supervisors and admins)."""
        return directory.list_users(db.session(), current_actor(), **args)

    @blp.arguments(UserSchema)
    @blp.response(201, UserSchema)
    @blp.alt_response(409, description="integrity_conflict: the username is taken")
    def post(self, data: dict[str, Any]) -> Any:
        """Create a user (admins)."""
        session = db.session()
        user = directory.create_user(session, current_actor(), data)
        session.commit()
        return user


@blp.route("/users/<uuid:user_id>")
class UserById(MethodView):
    @blp.response(200, UserSchema)
    def get(self, user_id: uuid.UUID) -> Any:
        """A user (yourself, or anyone for supervisors and admins)."""
        return directory.get_user(db.session(), current_actor(), user_id)

    @blp.arguments(UserUpdateSchema)
    @blp.response(200, UserSchema)
    @blp.alt_response(409, description="version_conflict, or integrity_conflict: the username is taken")
    def patch(self, data: dict[str, Any], user_id: uuid.UUID) -> Any:
        """Change a user: role, department, password, active (admins)."""
        session = db.session()
        user = directory.update_user(session, current_actor(), user_id, data)
        session.commit()
        return user


@blp.route("/campaigns")
class Campaigns(MethodView):
    @blp.response(200, CampaignSchema(many=True))
    def get(self) -> Any:
        """Campaigns (活动), newest first."""
        current_actor()
        return directory.list_campaigns(db.session())

    @blp.arguments(CampaignSchema)
    @blp.response(201, CampaignSchema)
    @blp.alt_response(409, description="integrity_conflict: the code is taken")
    def post(self, data: dict[str, Any]) -> Any:
        """Start a campaign (supervisors, admins)."""
        session = db.session()
        campaign = directory.create_campaign(session, current_actor(), data)
        session.commit()
        return campaign


@blp.route("/campaigns/<uuid:campaign_id>")
class CampaignById(MethodView):
    @blp.response(200, CampaignSchema)
    def get(self, campaign_id: uuid.UUID) -> Any:
        current_actor()
        return directory.get_campaign(db.session(), campaign_id)

    @blp.arguments(CampaignUpdateSchema)
    @blp.response(200, CampaignSchema)
    @blp.alt_response(409, description="version_conflict, or integrity_conflict: the code is taken")
    def patch(self, data: dict[str, Any], campaign_id: uuid.UUID) -> Any:
        session = db.session()
        campaign = directory.update_campaign(session, current_actor(), campaign_id, data)
        session.commit()
        return campaign
