"""Building blocks of the wire format: the error body, pages, time handling."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any
from zoneinfo import ZoneInfo

from marshmallow import Schema, ValidationError, fields, pre_load, validate

SHANGHAI = ZoneInfo("Asia/Shanghai")
INT32_MAX = 2**31 - 1


# What no database stores: NUL (PostgreSQL refuses it) and unpaired UTF-16 surrogates, which JSON's
# \uD800-style escapes can carry but UTF-8 cannot encode (both drivers fail on them).
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def _has_unstorable(value: Any) -> bool:
    if isinstance(value, str):
        return _UNSTORABLE.search(value) is not None
    if isinstance(value, dict):
        return any(_has_unstorable(k) or _has_unstorable(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_unstorable(v) for v in value)
    return False


def _unstorable_paths(value: Any, path: str = "") -> list[str]:
    if isinstance(value, str):
        return [path or "_schema"] if _UNSTORABLE.search(value) else []
    if isinstance(value, dict):
        return [
            p
            for k, v in value.items()
            for p in (_unstorable_paths(k, path or "_schema") + _unstorable_paths(v, f"{path}.{k}" if path else str(k)))
        ]
    if isinstance(value, list):
        return [p for i, v in enumerate(value) for p in _unstorable_paths(v, f"{path}.{i}" if path else str(i))]
    return []


class Integer(fields.Integer):
    """A JSON integer and nothing else, in the bodies clients send: fields.Integer also takes "5",
    5.0 and true, which the API does not document. (Query strings, all text, keep fields.Integer;
    the console turns its forms' digits into integers before loading.)"""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(strict=True, **kwargs)


def version_field() -> fields.Integer:
    """The version an edit is based on: the server answers 409 if the record changed since."""
    return Integer(
        required=True,
        validate=validate.Range(1, INT32_MAX),
        metadata={"description": "The version you read (409 if the record changed since)"},
    )


class WireSchema(Schema):
    """Base of every schema on the wire.

    Unknown fields are refused (the marshmallow default), so a typo never passes silently, and
    text may not contain NUL characters or unpaired surrogates, which no database stores.
    """

    # Fields whose text another schema checks when it loads them (nested schemas, opaque payloads).
    text_checked_elsewhere: tuple[str, ...] = ()

    @pre_load
    def _storable_text(self, data: Any, **_kwargs: Any) -> Any:
        mine = data
        if self.text_checked_elsewhere and isinstance(data, dict):
            mine = {k: v for k, v in data.items() if k not in self.text_checked_elsewhere}
        # The quick walk first, the paths only for the rare hit.
        bad = _unstorable_paths(mine) if _has_unstorable(mine) else []
        if bad:
            message = "Text may not contain NUL characters or unpaired surrogates."
            raise ValidationError({path.split(".")[0]: [message] for path in bad})
        return data


def scrub(value: Any) -> Any:
    """`value` with what no database stores (see WireSchema) replaced by U+FFFD: for keeping a
    refused payload, as it came, beside the reason it was refused."""
    if isinstance(value, str):
        return _UNSTORABLE.sub("\ufffd", value)
    if isinstance(value, dict):
        return {scrub(k): scrub(v) for k, v in value.items()}
    if isinstance(value, list):
        return [scrub(v) for v in value]
    return value


class Boolean(fields.Boolean):
    """JSON's true or false and nothing else, in the bodies clients send: fields.Boolean also takes
    1, 0, "yes", "on" and the like, which the API does not document. (Query strings, all text, keep
    fields.Boolean; the console turns its forms' "true"/"false" into booleans before loading.)"""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> bool:
        if not isinstance(value, bool):
            raise self.make_error("invalid", input=value)
        return value


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


class ErrorSchema(WireSchema):
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


class PageArgsSchema(WireSchema):
    cursor = fields.String(load_default=None, metadata={"description": "Opaque cursor from `next_cursor`"})
    limit = fields.Integer(
        load_default=None,
        validate=validate.Range(min=1),
        # The most PAGE_SIZE_MAX allows by default; the server checks the configured one.
        metadata={"description": "Page size (default 50, at most 500)", "maximum": 500},
    )


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
