"""Users and departments."""

from __future__ import annotations

from marshmallow import ValidationError, fields, validate, validates_schema

from schemas.common import Boolean, LocalDateTime, WireSchema, version_field
from schemas.enums import Role

_username = validate.Regexp(r"^[A-Za-z0-9_.-]{2,64}$", error="2-64 letters, digits, '_', '.' or '-'.")
_password = validate.Length(min=10, max=200, error="At least 10 characters.")


class DepartmentSchema(WireSchema):
    id = fields.UUID(dump_only=True)
    code = fields.String(required=True, validate=validate.Regexp(r"^[a-z0-9_-]{2,40}$"))
    name = fields.String(required=True, validate=validate.Length(min=1, max=80))
    short_name = fields.String(load_default=None, validate=validate.Length(max=40))
    email = fields.Email(load_default=None, allow_none=True)
    head_name = fields.String(load_default=None, allow_none=True, validate=validate.Length(max=80))
    head_email = fields.Email(load_default=None, allow_none=True)
    active = Boolean(load_default=True)
    version = fields.Integer(dump_only=True)


class DepartmentUpdateSchema(WireSchema):
    name = fields.String(validate=validate.Length(min=1, max=80))
    short_name = fields.String(allow_none=True, validate=validate.Length(max=40))
    email = fields.Email(allow_none=True)
    head_name = fields.String(allow_none=True, validate=validate.Length(max=80))
    head_email = fields.Email(allow_none=True)
    active = Boolean()
    version = version_field()


class UserSchema(WireSchema):
    id = fields.UUID(dump_only=True)
    username = fields.String(required=True, validate=_username)
    display_name = fields.String(required=True, validate=validate.Length(min=1, max=80))
    role = fields.Enum(Role, by_value=True, required=True)
    department_id = fields.UUID(load_default=None, allow_none=True)
    email = fields.Email(load_default=None, allow_none=True)
    phone = fields.String(load_default=None, allow_none=True, validate=validate.Length(max=40))
    title = fields.String(load_default=None, allow_none=True, validate=validate.Length(max=80))
    active = Boolean(load_default=True)
    password = fields.String(required=True, load_only=True, validate=_password)
    version = fields.Integer(dump_only=True)
    created_at = LocalDateTime(dump_only=True)

    @validates_schema
    def _department_iff_staff(self, data: dict, **_kwargs: object) -> None:
        staff = data.get("role") is Role.department_staff
        if staff and not data.get("department_id"):
            raise ValidationError("Department staff must belong to a department.", "department_id")
        if not staff and data.get("department_id"):
            raise ValidationError("Only department staff belong to a department.", "department_id")


class UserUpdateSchema(WireSchema):
    display_name = fields.String(validate=validate.Length(min=1, max=80))
    role = fields.Enum(Role, by_value=True)
    department_id = fields.UUID(allow_none=True)
    email = fields.Email(allow_none=True)
    phone = fields.String(allow_none=True, validate=validate.Length(max=40))
    title = fields.String(allow_none=True, validate=validate.Length(max=80))
    active = Boolean()
    password = fields.String(load_only=True, validate=_password)
    version = version_field()


class UserListArgsSchema(WireSchema):
    role = fields.Enum(Role, by_value=True, load_default=None)
    department = fields.UUID(load_default=None)
    active = fields.Boolean(load_default=None)
