"""Visit notes and the problems raised in them: the schema the device validates notes with."""

from __future__ import annotations

from marshmallow import ValidationError, fields, validate, validates_schema

from schemas.common import Integer, LocalDateTime, PageArgsSchema, WireSchema, version_field
from schemas.enums import ProblemCategory, ProblemOutcome, ProblemStatus, ServiceCategory, TargetKind

SUMMARY_MAX = 20_000
ATTACHMENTS_MAX = 50
SHA256 = validate.Regexp(r"^[0-9a-f]{64}$", error="A lowercase hex SHA-256.")
DESCRIPTION_MAX = 5_000
PROBLEMS_MAX = 50
DUPLICATES = ("hide", "include", "only")


class AttachmentRefSchema(WireSchema):
    """A photo or file of a visit, named by the SHA-256 of its bytes (which travel separately)."""

    id = fields.UUID(required=True, metadata={"description": "Client-generated UUID"})
    sha256 = fields.String(required=True, validate=SHA256)
    filename = fields.String(required=True, validate=validate.Length(min=1, max=200))
    content_type = fields.String(required=True, validate=validate.Length(min=3, max=100))
    size = Integer(required=True, validate=validate.Range(0, 2**40))
    caption = fields.String(load_default=None, allow_none=True, validate=validate.Length(max=500))


class ProblemNoteSchema(WireSchema):
    """A problem as the cadre writes it in a visit note."""

    id = fields.UUID(load_default=None, metadata={"description": "Client-generated UUID"})
    category = fields.Enum(ProblemCategory, by_value=True, required=True)
    description = fields.String(required=True, validate=validate.Length(min=1, max=DESCRIPTION_MAX))


class VisitNoteSchema(WireSchema):
    """A visit note as the cadre writes it (POST body; the device's outbox record)."""

    id = fields.UUID(load_default=None, metadata={"description": "Client-generated UUID"})
    campaign_id = fields.UUID(required=True)
    target_id = fields.UUID(required=True)
    visited_at = LocalDateTime(required=True)
    service_categories = fields.List(
        fields.Enum(ServiceCategory, by_value=True),
        required=True,
        validate=validate.Length(min=1, max=len(ServiceCategory)),
    )
    summary = fields.String(required=True, validate=validate.Length(min=1, max=SUMMARY_MAX))
    latitude = fields.Float(load_default=None, allow_none=True, validate=validate.Range(-90, 90))
    longitude = fields.Float(load_default=None, allow_none=True, validate=validate.Range(-180, 180))
    location_text = fields.String(load_default=None, allow_none=True, validate=validate.Length(max=200))
    problems = fields.List(
        fields.Nested(ProblemNoteSchema), load_default=list, validate=validate.Length(max=PROBLEMS_MAX)
    )
    attachments = fields.List(
        fields.Nested(AttachmentRefSchema),
        load_default=list,
        validate=validate.Length(max=ATTACHMENTS_MAX),
        metadata={"description": "Photos and files, by hash; their bytes are uploaded separately (tus)"},
    )

    @validates_schema
    def _distinct(self, data: dict, **_kwargs: object) -> None:
        cats = data.get("service_categories") or []
        if len(set(cats)) != len(cats):
            raise ValidationError("Each service category at most once.", "service_categories")
        ids = [p["id"] for p in data.get("problems") or [] if p.get("id")]
        if len(set(ids)) != len(ids):
            raise ValidationError("Problem ids must be distinct.", "problems")
        ids = [a["id"] for a in data.get("attachments") or []]
        if len(set(ids)) != len(ids):
            raise ValidationError("Attachment ids must be distinct.", "attachments")


class VisitUpdateSchema(WireSchema):
    visited_at = LocalDateTime()
    service_categories = fields.List(
        fields.Enum(ServiceCategory, by_value=True), validate=validate.Length(min=1, max=len(ServiceCategory))
    )
    summary = fields.String(validate=validate.Length(min=1, max=SUMMARY_MAX))
    latitude = fields.Float(allow_none=True, validate=validate.Range(-90, 90))
    longitude = fields.Float(allow_none=True, validate=validate.Range(-180, 180))
    location_text = fields.String(allow_none=True, validate=validate.Length(max=200))
    version = version_field()


class ProblemSchema(WireSchema):
    id = fields.UUID()
    visit_id = fields.UUID()
    campaign_id = fields.UUID()
    target_id = fields.UUID()
    target_name = fields.String(attribute="target.name")
    target_kind = fields.Enum(TargetKind, by_value=True, attribute="target.kind")
    cadre_id = fields.UUID()
    raised_at = LocalDateTime()
    category = fields.Enum(ProblemCategory, by_value=True)
    description = fields.String()
    department_id = fields.UUID(allow_none=True)
    status = fields.Enum(ProblemStatus, by_value=True)
    outcome = fields.Enum(ProblemOutcome, by_value=True, allow_none=True)
    outcome_reason = fields.String(allow_none=True)
    outcome_note = fields.String(allow_none=True)
    outcome_at = LocalDateTime(allow_none=True)
    closed_at = LocalDateTime(allow_none=True)
    duplicate_of_id = fields.UUID(
        allow_none=True, metadata={"description": "Set when merged as a duplicate: the problem it was merged into"}
    )
    merged_at = LocalDateTime(allow_none=True)
    merged_by_id = fields.UUID(allow_none=True)
    version = fields.Integer()
    created_at = LocalDateTime()
    updated_at = LocalDateTime()


class AttachmentSchema(WireSchema):
    id = fields.UUID()
    visit_id = fields.UUID()
    sha256 = fields.String()
    filename = fields.String()
    content_type = fields.String()
    size = fields.Integer()
    caption = fields.String(allow_none=True)
    status = fields.String(metadata={"enum": ["pending", "available"], "description": "pending until the bytes arrive"})
    created_at = LocalDateTime()


class VisitSchema(WireSchema):
    id = fields.UUID()
    campaign_id = fields.UUID()
    cadre_id = fields.UUID()
    cadre_name = fields.String(attribute="cadre.display_name")
    target_id = fields.UUID()
    target_name = fields.String(attribute="target.name")
    target_kind = fields.Enum(TargetKind, by_value=True, attribute="target.kind")
    visited_at = LocalDateTime()
    service_categories = fields.List(fields.String(metadata={"enum": ServiceCategory.values()}))
    summary = fields.String()
    latitude = fields.Float(allow_none=True)
    longitude = fields.Float(allow_none=True)
    location_text = fields.String(allow_none=True)
    problems = fields.List(fields.Nested(ProblemSchema))
    attachments = fields.List(fields.Nested(AttachmentSchema))
    version = fields.Integer()
    created_at = LocalDateTime()
    updated_at = LocalDateTime()


class ProblemTriageSchema(WireSchema):
    """A supervisor's change to a problem: where it goes and how it ended."""

    category = fields.Enum(ProblemCategory, by_value=True)
    description = fields.String(validate=validate.Length(min=1, max=DESCRIPTION_MAX))
    department_id = fields.UUID(allow_none=True)
    outcome = fields.Enum(ProblemOutcome, by_value=True, allow_none=True)
    outcome_reason = fields.String(allow_none=True, validate=validate.Length(max=DESCRIPTION_MAX))
    outcome_note = fields.String(allow_none=True, validate=validate.Length(max=DESCRIPTION_MAX))
    version = version_field()


class ProblemMergeSchema(WireSchema):
    """A supervisor merges this problem, as a duplicate, into another problem of the same target."""

    into = fields.UUID(required=True, metadata={"description": "The problem that stays (the survivor)"})
    version = version_field()


class ProblemUnmergeSchema(WireSchema):
    """A supervisor takes a merged duplicate back out: it counts and lists again."""

    version = version_field()


class _RangeArgs(PageArgsSchema):
    campaign = fields.UUID(load_default=None)
    target = fields.UUID(load_default=None)
    kind = fields.Enum(TargetKind, by_value=True, load_default=None)
    park = fields.UUID(load_default=None, metadata={"description": "The park itself and targets in it"})
    cadre = fields.UUID(load_default=None)
    from_ = fields.Date(data_key="from", load_default=None, metadata={"description": "First day (Asia/Shanghai)"})
    to = fields.Date(load_default=None, metadata={"description": "Last day, inclusive (Asia/Shanghai)"})
    q = fields.String(
        load_default=None,
        validate=validate.Length(min=1, max=100),
        metadata={"description": "Chinese full-text search; space-separated terms must all occur"},
    )

    @validates_schema
    def _range(self, data: dict, **_kwargs: object) -> None:
        if data.get("from_") and data.get("to") and data["to"] < data["from_"]:
            raise ValidationError("'to' is before 'from'.", "to")


class VisitListArgsSchema(_RangeArgs):
    category = fields.Enum(ServiceCategory, by_value=True, load_default=None)


class ProblemListArgsSchema(_RangeArgs):
    category = fields.Enum(ProblemCategory, by_value=True, load_default=None)
    status = fields.Enum(ProblemStatus, by_value=True, load_default=None)
    outcome = fields.Enum(ProblemOutcome, by_value=True, load_default=None)
    department = fields.UUID(load_default=None)
    duplicates = fields.String(
        load_default="hide",
        validate=validate.OneOf(DUPLICATES),
        metadata={"description": "Merged duplicates: hide (default), include, or only them"},
    )
    duplicate_of = fields.UUID(
        load_default=None,
        metadata={"description": "The duplicates merged into this problem (whatever `duplicates` says)"},
    )
