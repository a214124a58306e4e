"""Targets (parks, projects, firms), portfolios and campaigns."""

from __future__ import annotations

from marshmallow import ValidationError, fields, validate, validates_schema

from schemas.common import Boolean, LocalDateTime, PageArgsSchema, WireSchema, version_field
from schemas.enums import ParkType, TargetKind

_TEXT = {
    "district": 40,
    "address": 200,
    "industry": 80,
    "contact_name": 80,
    "contact_phone": 40,
}


class TargetSchema(WireSchema):
    id = fields.UUID(load_default=None)
    kind = fields.Enum(TargetKind, by_value=True, required=True)
    name = fields.String(required=True, validate=validate.Length(min=1, max=120))
    code = fields.String(load_default=None, allow_none=True, validate=validate.Length(max=40))
    park_type = fields.Enum(ParkType, by_value=True, load_default=None, allow_none=True)
    park_id = fields.UUID(load_default=None, allow_none=True)
    park_name = fields.Function(
        lambda t: t.park.name if getattr(t, "park", None) else None, dump_only=True, allow_none=True
    )
    district = fields.String(load_default=None, allow_none=True, validate=validate.Length(max=40))
    address = fields.String(load_default=None, allow_none=True, validate=validate.Length(max=200))
    industry = fields.String(load_default=None, allow_none=True, validate=validate.Length(max=80))
    contact_name = fields.String(load_default=None, allow_none=True, validate=validate.Length(max=80))
    contact_phone = fields.String(load_default=None, allow_none=True, validate=validate.Length(max=40))
    notes = fields.String(load_default=None, allow_none=True, validate=validate.Length(max=5000))
    active = Boolean(load_default=True)
    version = fields.Integer(dump_only=True)
    updated_at = LocalDateTime(dump_only=True)

    @validates_schema
    def _kind_rules(self, data: dict, **_kwargs: object) -> None:
        check_kind_rules(data.get("kind"), data)


def check_kind_rules(kind: TargetKind | None, data: dict) -> None:
    if kind is TargetKind.park:
        if data.get("park_id"):
            raise ValidationError("A park does not sit in another park.", "park_id")
        if "park_type" in data and data.get("park_type") is None:
            raise ValidationError("A park needs its type.", "park_type")
    elif kind is not None and data.get("park_type"):
        raise ValidationError("Only parks have a park type.", "park_type")


class TargetUpdateSchema(WireSchema):
    name = fields.String(validate=validate.Length(min=1, max=120))
    code = fields.String(allow_none=True, validate=validate.Length(max=40))
    park_type = fields.Enum(ParkType, by_value=True, allow_none=True)
    park_id = fields.UUID(allow_none=True)
    district = fields.String(allow_none=True, validate=validate.Length(max=40))
    address = fields.String(allow_none=True, validate=validate.Length(max=200))
    industry = fields.String(allow_none=True, validate=validate.Length(max=80))
    contact_name = fields.String(allow_none=True, validate=validate.Length(max=80))
    contact_phone = fields.String(allow_none=True, validate=validate.Length(max=40))
    notes = fields.String(allow_none=True, validate=validate.Length(max=5000))
    active = Boolean()
    version = version_field()


class TargetListArgsSchema(PageArgsSchema):
    kind = fields.Enum(TargetKind, by_value=True, load_default=None)
    park = fields.UUID(load_default=None, metadata={"description": "Targets sitting in this park"})
    cadre = fields.UUID(load_default=None, metadata={"description": "Targets in this cadre's portfolio"})
    q = fields.String(load_default=None, validate=validate.Length(max=100), metadata={"description": "Name contains"})
    active = fields.Boolean(load_default=None)


class TargetImportResultSchema(WireSchema):
    created = fields.Integer()
    updated = fields.Integer()
    unchanged = fields.Integer()


class PortfolioSchema(WireSchema):
    user_id = fields.UUID(dump_only=True)
    target_ids = fields.List(fields.UUID(), required=True, validate=validate.Length(max=2000))


class CampaignSchema(WireSchema):
    id = fields.UUID(dump_only=True)
    code = fields.String(required=True, validate=validate.Regexp(r"^[a-z0-9_-]{2,40}$"))
    name = fields.String(required=True, validate=validate.Length(min=1, max=80))
    starts_on = fields.Date(required=True)
    ends_on = fields.Date(load_default=None, allow_none=True)
    description = fields.String(load_default=None, allow_none=True, validate=validate.Length(max=5000))
    version = fields.Integer(dump_only=True)

    @validates_schema
    def _period(self, data: dict, **_kwargs: object) -> None:
        if data.get("ends_on") and data.get("starts_on") and data["ends_on"] < data["starts_on"]:
            raise ValidationError("The campaign cannot end before it starts.", "ends_on")


class CampaignUpdateSchema(WireSchema):
    name = fields.String(validate=validate.Length(min=1, max=80))
    starts_on = fields.Date()
    ends_on = fields.Date(allow_none=True)
    description = fields.String(allow_none=True, validate=validate.Length(max=5000))
    version = version_field()
