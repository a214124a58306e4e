"""The sync protocol's wire format (docs/sync-protocol.md): push, pull, attachments, devices."""

from __future__ import annotations

import itertools
from typing import Any

from marshmallow import ValidationError, fields, validate, validates_schema

from schemas.common import INT32_MAX, Integer, LocalDateTime, WireSchema
from schemas.enums import ProblemCategory
from schemas.visits import DESCRIPTION_MAX, SHA256, AttachmentRefSchema, ProblemNoteSchema, VisitUpdateSchema

BATCH_MAX = 500
PULL_LIMIT_DEFAULT = 500
PULL_LIMIT_MAX = 2000

CHANGE_KINDS = (
    "visit.create",
    "visit.update",
    "visit.delete",
    "problem.create",
    "problem.update",
    "attachment.add",
    "followup.complete",
)
# Kinds that edit an existing record and so must say which version they were based on.
VERSIONED_KINDS = ("visit.update", "visit.delete", "problem.update", "followup.complete")


class AttachmentAddSchema(AttachmentRefSchema):
    visit_id = fields.UUID(required=True)


class ProblemCreateSchema(ProblemNoteSchema):
    id = fields.UUID(required=True, metadata={"description": "Client-generated UUID"})
    visit_id = fields.UUID(required=True)


class ProblemRewordSchema(WireSchema):
    category = fields.Enum(ProblemCategory, by_value=True)
    description = fields.String(validate=validate.Length(min=1, max=DESCRIPTION_MAX))


class VisitEditSchema(VisitUpdateSchema):
    """visit.update's payload: the fields of a visit edit; the version travels beside it."""

    class Meta:
        exclude = ("version",)


class ChangeSchema(WireSchema):
    """One change in the device's outbox."""

    # The payload is loaded by its kind's schema when the change is applied: bad text in it
    # rejects that change alone, not the whole batch.
    text_checked_elsewhere = ("payload",)

    seq = Integer(required=True, validate=validate.Range(1, 2**62))
    kind = fields.String(required=True, validate=validate.OneOf(CHANGE_KINDS))
    record_id = fields.UUID(required=True)
    base_version = Integer(load_default=None, allow_none=True, validate=validate.Range(1, INT32_MAX))
    payload = fields.Dict(load_default=dict, metadata={"description": "The kind's schema (docs/sync-protocol.md)"})
    created_at = LocalDateTime(load_default=None, allow_none=True, metadata={"description": "Device clock, for people"})

    @validates_schema
    def _versioned(self, data: dict[str, Any], **_kwargs: Any) -> None:
        if data["kind"] in VERSIONED_KINDS and data.get("base_version") is None:
            raise ValidationError("This kind of change needs base_version.", "base_version")


class PushSchema(WireSchema):
    text_checked_elsewhere = ("changes",)  # each change checks its own (ChangeSchema)
    device_id = fields.UUID(required=True)
    queue_depth = Integer(load_default=None, allow_none=True, validate=validate.Range(0, 10**9))
    changes = fields.List(fields.Nested(ChangeSchema), required=True, validate=validate.Length(max=BATCH_MAX))

    @validates_schema
    def _contiguous(self, data: dict[str, Any], **_kwargs: Any) -> None:
        seqs = [c["seq"] for c in data.get("changes") or []]
        if any(b != a + 1 for a, b in itertools.pairwise(seqs)):
            raise ValidationError("The changes of a batch must have consecutive seq numbers.", "changes")


class ChangeResultSchema(WireSchema):
    seq = fields.Integer(required=True)
    status = fields.String(required=True, metadata={"enum": ["applied", "rejected", "conflict"]})
    record_id = fields.UUID(allow_none=True)
    version = fields.Integer(allow_none=True)
    code = fields.String(allow_none=True)
    message = fields.String(allow_none=True)
    errors = fields.Dict(allow_none=True)
    conflict_id = fields.UUID(allow_none=True)
    server_version = fields.Integer(allow_none=True)
    replayed = fields.Boolean()


class PushResultSchema(WireSchema):
    last_seq = fields.Integer(required=True, metadata={"description": "The last seq the server has applied"})
    results = fields.List(fields.Nested(ChangeResultSchema), required=True)
    upgrade_required = fields.Boolean(metadata={"description": "The app is older than the server accepts"})
    missing_attachments = fields.List(
        fields.String(), metadata={"description": "SHA-256 of referenced files the server lacks"}
    )


class BackfillSchema(WireSchema):
    target = fields.UUID(required=True)
    after = fields.String(required=True)


class PullSchema(WireSchema):
    cursor = fields.String(load_default="0", validate=validate.Regexp(r"^[0-9]{1,19}$", error="Not a cursor."))
    limit = fields.Integer(load_default=PULL_LIMIT_DEFAULT, validate=validate.Range(1, PULL_LIMIT_MAX))
    targets = fields.List(fields.UUID(), load_default=list, validate=validate.Length(max=5000))
    backfill = fields.Nested(BackfillSchema, load_default=None, allow_none=True)


class PulledChangeSchema(WireSchema):
    entity = fields.String(required=True)
    id = fields.UUID(required=True)
    op = fields.String(required=True, metadata={"enum": ["upsert", "delete"]})
    change_no = fields.Integer(required=True)
    data = fields.Dict(allow_none=True)


class PullResultSchema(WireSchema):
    changes = fields.List(fields.Nested(PulledChangeSchema), required=True)
    cursor = fields.String(required=True)
    has_more = fields.Boolean(required=True)
    complete_targets = fields.List(fields.UUID(), required=True)
    removed_targets = fields.List(fields.UUID(), required=True)
    backfill = fields.Nested(BackfillSchema, allow_none=True)


class MissingAttachmentsSchema(WireSchema):
    sha256 = fields.List(fields.String(validate=SHA256), required=True, validate=validate.Length(max=1000))


class ConflictSchema(WireSchema):
    id = fields.UUID()
    device_id = fields.UUID()
    user_id = fields.UUID()
    seq = fields.Integer()
    entity = fields.String()
    record_id = fields.UUID()
    base_version = fields.Integer()
    server_version = fields.Integer()
    device_payload = fields.Dict()
    server_snapshot = fields.Dict()
    status = fields.String(metadata={"enum": ["open", "resolved"]})
    resolution = fields.String(allow_none=True)
    created_at = LocalDateTime()
    resolved_at = LocalDateTime(allow_none=True)


class ResolveConflictSchema(WireSchema):
    resolution = fields.String(required=True, validate=validate.OneOf(["keep_server", "use_device"]))


class RejectionSchema(WireSchema):
    device_id = fields.UUID()
    user_id = fields.UUID()
    seq = fields.Integer()
    kind = fields.String()
    record_id = fields.UUID()
    code = fields.String()
    message = fields.String()
    errors = fields.Dict(allow_none=True)
    payload = fields.Dict(allow_none=True)
    received_at = LocalDateTime()


class DeviceStatusSchema(WireSchema):
    id = fields.UUID()
    user_id = fields.UUID()
    user_name = fields.String()
    name = fields.String(allow_none=True)
    app_version = fields.String(allow_none=True)
    protocol_version = fields.Integer(allow_none=True)
    last_seen_at = LocalDateTime(allow_none=True)
    last_push_at = LocalDateTime(allow_none=True)
    last_pull_at = LocalDateTime(allow_none=True)
    last_seq = fields.Integer()
    queue_depth = fields.Integer(allow_none=True)
    rejected = fields.Integer()
    open_conflicts = fields.Integer()
    revoked_at = LocalDateTime(allow_none=True)
