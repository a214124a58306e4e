"""Building blocks of the wire format: the error body, pages, time handling."""

from __future__ import annotations

import datetime as dt
from typing import Any
from zoneinfo import ZoneInfo

from marshmallow import Schema, fields

SHANGHAI = ZoneInfo("Asia/Shanghai")


class StrictSchema(Schema):
    """Unknown fields are refused (the marshmallow default), so a typo never passes silently."""


class LocalDateTime(fields.AwareDateTime):
    """An ISO 8601 time with its offset; a time sent without one is read as Asia/Shanghai.

    Times are always written in Asia/Shanghai (+08:00), whatever zone they were stored in.
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(format="iso", default_timezone=SHANGHAI, **kwargs)

    def _serialize(self, value: dt.datetime | None, attr: str | None, obj: Any, **kwargs: Any) -> Any:
        if value is None:
            return None
        if value.tzinfo is None:
            value = value.replace(tzinfo=dt.UTC)
        return super()._serialize(value.astimezone(SHANGHAI), attr, obj, **kwargs)

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> dt.datetime:
        result: dt.datetime = super()._deserialize(value, attr, data, **kwargs)
        return result.astimezone(dt.UTC)


class ErrorSchema(Schema):
    """The one error body of the whole API."""

    status = fields.Integer(required=True, metadata={"description": "HTTP status code"})
    code = fields.String(
        required=True,
        metadata={"description": "Stable machine-readable error code, e.g. validation_error"},
    )
    message = fields.String(required=True, metadata={"description": "What went wrong, for people"})
    errors = fields.Dict(
        keys=fields.String(),
        values=fields.Raw(),
        metadata={"description": "Field errors: field name -> list of messages (422 and some 409)"},
    )
    details = fields.Dict(
        keys=fields.String(),
        values=fields.Raw(),
        metadata={"description": "Extra facts, e.g. the current version on a 409 conflict"},
    )


class PageArgsSchema(Schema):
    cursor = fields.String(load_default=None, metadata={"description": "Opaque cursor from `next_cursor`"})
    limit = fields.Integer(load_default=None, metadata={"description": "Page size (default 50, at most 500)"})


def page_of(item: type[Schema], name: str) -> type[Schema]:
    """The schema of one page of a list: {items: [...], next_cursor}."""
    return Schema.from_dict(
        {
            "items": fields.List(fields.Nested(item), required=True),
            "next_cursor": fields.String(
                allow_none=True, metadata={"description": "Pass as `cursor` for the next page; null on the last page"}
            ),
        },
        name=name,
    )
