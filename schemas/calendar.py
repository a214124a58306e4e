"""The working-day calendar's override table on the wire: a day marked working or off by an admin."""

from __future__ import annotations

import datetime as dt

from marshmallow import fields, validate

from schemas.common import Boolean, LocalDateTime, WireSchema


class CalendarOverrideSchema(WireSchema):
    day = fields.Date(
        required=True,
        validate=validate.Range(dt.date(2000, 1, 1), dt.date(2099, 12, 31)),
        metadata={"description": "A day from 2000-01-01 to 2099-12-31"},
    )
    workday = Boolean(required=True, metadata={"description": "true: a working day; false: a day off"})
    note = fields.String(load_default=None, allow_none=True, validate=validate.Length(max=200))
    updated_by_id = fields.UUID(dump_only=True, allow_none=True)
    updated_at = LocalDateTime(dump_only=True)


class CalendarListArgsSchema(WireSchema):
    year = fields.Integer(load_default=None, validate=validate.Range(1000, 9999))
