"""Login, the current user and devices."""

from __future__ import annotations

from marshmallow import fields, validate

from schemas.common import LocalDateTime, WireSchema
from schemas.enums import Role


class LoginSchema(WireSchema):
    username = fields.String(required=True, validate=validate.Length(min=1, max=64))
    password = fields.String(required=True, validate=validate.Length(min=1, max=200), load_only=True)
    device_id = fields.UUID(
        load_default=None, metadata={"description": "The install's id; a new device is registered on first login"}
    )
    device_name = fields.String(load_default=None, validate=validate.Length(max=120))
    app_version = fields.String(load_default=None, validate=validate.Length(max=40))


class UserBriefSchema(WireSchema):
    id = fields.UUID()
    username = fields.String()
    display_name = fields.String()
    role = fields.Enum(Role, by_value=True)
    department_id = fields.UUID(allow_none=True)


class TokenSchema(WireSchema):
    token = fields.String(metadata={"description": "Send as 'Authorization: Bearer <token>'"})
    token_type = fields.String(dump_default="Bearer")
    expires_at = LocalDateTime()
    device_id = fields.UUID()
    user = fields.Nested(UserBriefSchema)


class DeviceSchema(WireSchema):
    id = fields.UUID()
    user_id = fields.UUID()
    name = fields.String(allow_none=True)
    app_version = fields.String(allow_none=True)
    created_at = LocalDateTime()
    last_seen_at = LocalDateTime(allow_none=True)
    revoked_at = LocalDateTime(allow_none=True)


class DeviceListArgsSchema(WireSchema):
    user = fields.UUID(load_default=None, metadata={"description": "Only this user's devices (supervisors, admins)"})
