"""Referrals (交办单) on the wire: issuing one, each action's body, the referral as read, list filters.

The workflow's rules live on the server (server/domain/referrals.py); these schemas only check
shapes and sizes. Text a rule needs (a reason, what was done) is checked there, after stripping.
"""

from __future__ import annotations

from marshmallow import ValidationError, fields, validate, validates_schema

from schemas.common import Boolean, Integer, LocalDateTime, PageArgsSchema, WireSchema, version_field
from schemas.enums import ProblemCategory, ProblemOutcome, ProblemStatus, TargetKind

# The referral states, as server/domain/referrals.py's ReferralStatus names them (a test keeps them equal).
REFERRAL_STATUSES = ("issued", "return_requested", "signed", "extension_requested", "responded", "closed", "cancelled")
# The actions a person takes through the API (reopen is the system's, after an unsatisfied revisit).
REFERRAL_ACTIONS = (
    "sign",
    "request_return",
    "decide_return",
    "request_extension",
    "decide_extension",
    "respond",
    "review",
    "cancel",
)
WORKDAYS_MAX = 250
PROBLEMS_MAX = 50
CO_DEPARTMENTS_MAX = 20
REQUIREMENTS_MAX = 5_000
TEXT_MAX = 5_000
REASON_MAX = 2_000


def _reason(required: bool = False) -> fields.String:
    if required:
        return fields.String(required=True, validate=validate.Length(min=1, max=REASON_MAX))
    return fields.String(load_default="", validate=validate.Length(max=REASON_MAX))


def _distinct(data: dict, field: str) -> None:
    values = data.get(field) or []
    if len(set(values)) != len(values):
        raise ValidationError("Each at most once.", field)


# Writing ----------------------------------------------------------------------------------


class ReferralIssueSchema(WireSchema):
    """A supervisor hands one or more problems to a lead department (POST /referrals)."""

    problem_ids = fields.List(fields.UUID(), required=True, validate=validate.Length(min=1, max=PROBLEMS_MAX))
    lead_department_id = fields.UUID(required=True, metadata={"description": "主办: the department that acts"})
    co_department_ids = fields.List(
        fields.UUID(),
        load_default=list,
        validate=validate.Length(max=CO_DEPARTMENTS_MAX),
        metadata={"description": "协办: departments that read the referral; the lead answers for them"},
    )
    requirements = fields.String(required=True, validate=validate.Length(min=1, max=REQUIREMENTS_MAX))
    workdays = Integer(
        required=True,
        validate=validate.Range(1, WORKDAYS_MAX),
        metadata={"description": "Deadline: the end of this many working days after the day of issue"},
    )

    @validates_schema
    def _distinct_ids(self, data: dict, **_kwargs: object) -> None:
        _distinct(data, "problem_ids")
        _distinct(data, "co_department_ids")


class SignSchema(WireSchema):
    version = version_field()


class RequestReturnSchema(WireSchema):
    grounds = _reason(required=True)
    version = version_field()


class DecideReturnSchema(WireSchema):
    approve = Boolean(required=True, metadata={"description": "true: reassign; false: refuse"})
    reassign_to = fields.UUID(load_default=None, allow_none=True, metadata={"description": "The new lead department"})
    co_department_ids = fields.List(
        fields.UUID(),
        load_default=None,
        allow_none=True,
        validate=validate.Length(max=CO_DEPARTMENTS_MAX),
        metadata={"description": "New co-departments (default: keep them)"},
    )
    reason = _reason()
    version = version_field()

    @validates_schema
    def _distinct_ids(self, data: dict, **_kwargs: object) -> None:
        _distinct(data, "co_department_ids")


class RequestExtensionSchema(WireSchema):
    until = fields.Date(required=True, metadata={"description": "The working day the new deadline ends"})
    reason = _reason(required=True)
    version = version_field()


class DecideExtensionSchema(WireSchema):
    approve = Boolean(required=True)
    until = fields.Date(load_default=None, allow_none=True, metadata={"description": "Default: the day asked for"})
    reason = _reason()
    version = version_field()


class RespondSchema(WireSchema):
    """The department's answer (办理反馈)."""

    outcome = fields.Enum(ProblemOutcome, by_value=True, required=True)
    done = fields.String(required=True, validate=validate.Length(min=1, max=TEXT_MAX))
    plan = fields.String(load_default="", validate=validate.Length(max=TEXT_MAX))
    next_date = fields.Date(load_default=None, allow_none=True, metadata={"description": "Coordinating: next step"})
    reason = fields.String(load_default="", validate=validate.Length(max=TEXT_MAX))
    version = version_field()


class ReviewSchema(WireSchema):
    accept = Boolean(required=True, metadata={"description": "true: close; false: send back to be redone"})
    reason = _reason()
    workdays = Integer(
        load_default=None,
        allow_none=True,
        validate=validate.Range(1, WORKDAYS_MAX),
        metadata={"description": "Send back: a new allowance in working days (default: keep the deadline)"},
    )
    version = version_field()


class CancelSchema(WireSchema):
    reason = _reason(required=True)
    version = version_field()


# Reading ----------------------------------------------------------------------------------


class DepartmentRefSchema(WireSchema):
    id = fields.UUID()
    name = fields.String()
    short_name = fields.String(allow_none=True)


class ReferralProblemSchema(WireSchema):
    id = fields.UUID()
    target_id = fields.UUID()
    target_name = fields.String()
    target_kind = fields.Enum(TargetKind, by_value=True)
    cadre_id = fields.UUID()
    category = fields.Enum(ProblemCategory, by_value=True)
    category_label = fields.String()
    description = fields.String()
    status = fields.Enum(ProblemStatus, by_value=True)
    outcome = fields.Enum(ProblemOutcome, by_value=True, allow_none=True)


class AnswerSchema(WireSchema):
    outcome = fields.Enum(ProblemOutcome, by_value=True)
    outcome_label = fields.String()
    done = fields.String()
    plan = fields.String(allow_none=True)
    next_date = fields.Date(allow_none=True)
    reason = fields.String(allow_none=True)


class ReferralEventSchema(WireSchema):
    id = fields.Integer()
    event = fields.String()
    event_label = fields.String(metadata={"description": "What happened, in Chinese"})
    at = LocalDateTime()
    actor_id = fields.UUID(allow_none=True, metadata={"description": "null: the system"})
    actor_name = fields.String(allow_none=True)
    department_id = fields.UUID(allow_none=True, metadata={"description": "The lead department at the time"})
    department_name = fields.String(allow_none=True)
    details = fields.Dict(allow_none=True)


class ReferralSchema(WireSchema):
    id = fields.UUID()
    number = fields.String(metadata={"description": "e.g. 徐工信交〔2026〕第0001号"})
    year = fields.Integer()
    seq = fields.Integer()
    status = fields.String(metadata={"enum": list(REFERRAL_STATUSES)})
    status_label = fields.String()
    lead_department = fields.Nested(DepartmentRefSchema)
    co_departments = fields.List(fields.Nested(DepartmentRefSchema))
    issued_by_id = fields.UUID()
    issued_by_name = fields.String(allow_none=True)
    issued_at = LocalDateTime(metadata={"description": "When the clock started (again, after a reassignment)"})
    workdays = fields.Integer()
    original_deadline = LocalDateTime()
    deadline = LocalDateTime(metadata={"description": "The current deadline (after extensions)"})
    due_day = fields.Date(metadata={"description": "The working day the current deadline ends (Beijing)"})
    requirements = fields.String()
    signed_at = LocalDateTime(allow_none=True)
    return_to = fields.String(allow_none=True)
    requested_until = fields.Date(allow_none=True, metadata={"description": "A pending extension's day"})
    pending_reason = fields.String(allow_none=True, metadata={"description": "A pending request's grounds"})
    outcome = fields.Enum(ProblemOutcome, by_value=True, allow_none=True)
    outcome_label = fields.String(allow_none=True)
    answer = fields.Nested(AnswerSchema, allow_none=True, metadata={"description": "The latest answer"})
    responded_at = LocalDateTime(allow_none=True)
    closed_at = LocalDateTime(allow_none=True)
    on_time = fields.Boolean(allow_none=True, metadata={"description": "Fixed when closed; null while open"})
    overdue = fields.Boolean(metadata={"description": "Open and past the current deadline"})
    overdue_workdays = fields.Integer()
    awaiting = fields.String(allow_none=True, metadata={"description": "Whose move: department_staff or supervisor"})
    allowed_actions = fields.List(fields.String(), metadata={"description": "The actions you may take now"})
    problems = fields.List(fields.Nested(ReferralProblemSchema))
    version = fields.Integer()
    created_at = LocalDateTime()
    updated_at = LocalDateTime()


class ReferralFollowUpSchema(WireSchema):
    id = fields.UUID()
    kind = fields.String()
    kind_label = fields.String()
    status = fields.String()
    assignee_id = fields.UUID(allow_none=True)
    assignee_name = fields.String(allow_none=True)
    due_on = fields.Date(allow_none=True)
    satisfaction = fields.String(allow_none=True)
    satisfaction_label = fields.String(allow_none=True)
    result_note = fields.String(allow_none=True)
    completed_at = LocalDateTime(allow_none=True)


class ReferralDetailSchema(ReferralSchema):
    history = fields.List(fields.Nested(ReferralEventSchema))
    followups = fields.List(fields.Nested(ReferralFollowUpSchema))


class ReferralListArgsSchema(PageArgsSchema):
    status = fields.String(load_default=None, validate=validate.OneOf(REFERRAL_STATUSES))
    department = fields.UUID(load_default=None, metadata={"description": "Lead or co-department"})
    overdue = fields.Boolean(load_default=None, metadata={"description": "Open and past the current deadline"})
    year = fields.Integer(load_default=None, validate=validate.Range(1000, 9999))
    problem = fields.UUID(load_default=None)
    number = fields.String(
        load_default=None,
        validate=validate.Length(min=1, max=60),
        metadata={"description": "A referral number as people type it: 徐工信交[2026]1号"},
    )
