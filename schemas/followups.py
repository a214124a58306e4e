"""Follow-ups (跟进任务) on the wire: what a cadre or a department has to do, and its result.

A revisit (回访) records the firm's satisfaction; a progress check (进展跟踪) a note and maybe the
date of the next step. Devices receive their follow-ups through the sync pull (entity
"followup") and may complete them offline (change kind "followup.complete").
"""

from __future__ import annotations

from marshmallow import fields, validate

from schemas.common import LocalDateTime, PageArgsSchema, WireSchema, version_field
from schemas.enums import LabelledEnum

NOTE_MAX = 5_000


class FollowUpKind(LabelledEnum):
    revisit = ("revisit", "回访")
    progress_check = ("progress_check", "进展跟踪")
    reminder = ("reminder", "催办")
    escalation = ("escalation", "督办")


class FollowUpStatus(LabelledEnum):
    open = ("open", "待办")
    done = ("done", "已完成")
    cancelled = ("cancelled", "已取消")


class Satisfaction(LabelledEnum):
    """The firm's answer at a revisit; unsatisfied reopens the referral."""

    satisfied = ("satisfied", "满意")
    basically_satisfied = ("basically_satisfied", "基本满意")
    unsatisfied = ("unsatisfied", "不满意")


class FollowUpSchema(WireSchema):
    id = fields.UUID()
    kind = fields.Enum(FollowUpKind, by_value=True)
    kind_label = fields.String()
    status = fields.Enum(FollowUpStatus, by_value=True)
    status_label = fields.String()
    title = fields.String()
    assignee_id = fields.UUID(allow_none=True, metadata={"description": "null: the department's, or unassigned"})
    assignee_name = fields.String(allow_none=True)
    department_id = fields.UUID(allow_none=True)
    department_name = fields.String(allow_none=True)
    referral_id = fields.UUID(allow_none=True)
    referral_number = fields.String(allow_none=True)
    problem_id = fields.UUID(allow_none=True)
    problem_description = fields.String(allow_none=True)
    target_id = fields.UUID(allow_none=True)
    target_name = fields.String(allow_none=True)
    answer_done = fields.String(allow_none=True, metadata={"description": "What the department reported doing"})
    due_on = fields.Date(allow_none=True)
    completed_at = LocalDateTime(allow_none=True)
    satisfaction = fields.Enum(Satisfaction, by_value=True, allow_none=True)
    satisfaction_label = fields.String(allow_none=True)
    result_note = fields.String(allow_none=True)
    version = fields.Integer()
    created_at = LocalDateTime()
    updated_at = LocalDateTime()


class FollowUpListArgsSchema(PageArgsSchema):
    status = fields.Enum(FollowUpStatus, by_value=True, load_default=None)
    kind = fields.Enum(FollowUpKind, by_value=True, load_default=None)
    assignee = fields.UUID(load_default=None)
    referral = fields.UUID(load_default=None)


class FollowUpResultSchema(WireSchema):
    """The result of a follow-up; the payload of the sync change "followup.complete"."""

    satisfaction = fields.Enum(
        Satisfaction, by_value=True, load_default=None, allow_none=True, metadata={"description": "Revisits only"}
    )
    note = fields.String(load_default="", validate=validate.Length(max=NOTE_MAX))
    next_date = fields.Date(
        load_default=None,
        allow_none=True,
        metadata={"description": "Progress checks: the date of the next step, if it moved"},
    )


class FollowUpCompleteSchema(FollowUpResultSchema):
    version = version_field()


class FollowUpReassignSchema(WireSchema):
    assignee_id = fields.UUID(required=True)
    version = version_field()
