"""Visit notes on the device: built and checked with the very schemas the server uses (schemas/)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from marshmallow import Schema, ValidationError

from client_sync.errors import NoteInvalid
from schemas.common import SHANGHAI
from schemas.enums import ProblemCategory, ServiceCategory
from schemas.sync import AttachmentAddSchema, ProblemCreateSchema, ProblemRewordSchema, VisitEditSchema
from schemas.visits import VisitNoteSchema

# The fields of a note a cadre may edit after writing it (visit.update).
EDITABLE = ("visited_at", "service_categories", "summary", "latitude", "longitude", "location_text")
# Fields a fix may change on a note the server never accepted (visit.create sent again).
CREATABLE = (*EDITABLE, "target_id", "campaign_id")

PAYLOAD_SCHEMAS: dict[str, type[Schema]] = {
    "visit.create": VisitNoteSchema,
    "visit.update": VisitEditSchema,
    "problem.create": ProblemCreateSchema,
    "problem.update": ProblemRewordSchema,
    "attachment.add": AttachmentAddSchema,
}


def checked(kind: str, payload: dict[str, Any]) -> dict[str, Any]:
    """The payload as the shared schema normalises it, or NoteInvalid with the field errors."""
    if kind == "visit.delete":
        return {}
    schema = PAYLOAD_SCHEMAS[kind]()
    try:
        return dict(schema.dump(schema.load(payload)))
    except ValidationError as e:
        errors = e.normalized_messages()
        raise NoteInvalid(f"The {kind} change does not pass the shared schema: {errors}", errors) from e
    except (TypeError, AttributeError) as e:  # not a JSON object at all
        raise NoteInvalid(f"The {kind} payload is not an object.", {"_schema": [str(e)]}) from e


def _by_value_or_label(enum: Any, text: str) -> str:
    text = text.strip()
    for member in enum:
        if text in (member.value, member.label):
            return str(member.value)
    return text  # the schema will refuse it with the list of valid values


def service_category(text: str) -> str:
    """`research` or its Chinese label `走访调研` -> `research`."""
    return _by_value_or_label(ServiceCategory, text)


def problem_category(text: str) -> str:
    """`financing` or its Chinese label `融资` -> `financing`."""
    return _by_value_or_label(ProblemCategory, text)


def problem(category: str, description: str, problem_id: str | None = None) -> dict[str, Any]:
    return {"id": problem_id or str(uuid.uuid4()), "category": problem_category(category), "description": description}


def parse_problem(text: str) -> dict[str, Any]:
    """`融资:流动资金贷款利率偏高` (or a full-width colon) -> a problem with a new id."""
    for sep in (":", "："):
        if sep in text:
            category, description = text.split(sep, 1)
            return problem(category, description.strip())
    return problem("other", text.strip())


def now_shanghai() -> str:
    return datetime.now(SHANGHAI).isoformat(timespec="seconds")


def new_note(
    *,
    target_id: str,
    campaign_id: str,
    summary: str,
    service_categories: list[str],
    visited_at: str | None = None,
    problems: list[dict[str, Any]] | None = None,
    attachments: list[dict[str, Any]] | None = None,
    location_text: str | None = None,
    latitude: float | None = None,
    longitude: float | None = None,
    note_id: str | None = None,
) -> dict[str, Any]:
    """A visit.create payload with client-made ids, checked by VisitNoteSchema."""
    payload = {
        "id": note_id or str(uuid.uuid4()),
        "campaign_id": campaign_id,
        "target_id": target_id,
        "visited_at": visited_at or now_shanghai(),
        "service_categories": [service_category(c) for c in service_categories],
        "summary": summary,
        "location_text": location_text,
        "latitude": latitude,
        "longitude": longitude,
        "problems": [{**p, "id": p.get("id") or str(uuid.uuid4())} for p in problems or []],
        "attachments": attachments or [],
    }
    return checked("visit.create", payload)


def edit(fields: dict[str, Any]) -> dict[str, Any]:
    """A visit.update payload: only the fields given, checked by VisitEditSchema."""
    unknown = set(fields) - set(EDITABLE)
    if unknown:
        raise NoteInvalid("These fields cannot be edited.", {f: ["Unknown field."] for f in sorted(unknown)})
    if not fields:
        raise NoteInvalid("Nothing to change.", {"_schema": ["Nothing to change."]})
    if "service_categories" in fields:
        fields = {**fields, "service_categories": [service_category(c) for c in fields["service_categories"]]}
    return checked("visit.update", fields)


def merged(note: dict[str, Any], change_kind: str, record_id: str, payload: dict[str, Any]) -> dict[str, Any]:
    """The note as the cadre sees it once the change (`change_kind` on `record_id`) applies."""
    note = dict(note)
    if change_kind == "visit.create":
        return dict(payload)
    if change_kind == "visit.update":
        note.update(payload)
    elif change_kind == "problem.create":
        item = {k: payload[k] for k in ("id", "category", "description")}
        note["problems"] = [*note.get("problems", []), item]
    elif change_kind == "problem.update":
        note["problems"] = [{**p, **payload} if p["id"] == record_id else p for p in note.get("problems", [])]
    elif change_kind == "attachment.add":
        item = {k: v for k, v in payload.items() if k != "visit_id"}
        note["attachments"] = [*note.get("attachments", []), item]
    return note
