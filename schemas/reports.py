"""The summary report."""

from __future__ import annotations

from marshmallow import ValidationError, fields, validates_schema

from schemas.common import WireSchema
from schemas.enums import ProblemCategory, TargetKind


class SummaryArgsSchema(WireSchema):
    campaign = fields.UUID(load_default=None)
    from_ = fields.Date(data_key="from", load_default=None, metadata={"description": "First day (Asia/Shanghai)"})
    to = fields.Date(load_default=None, metadata={"description": "Last day, inclusive"})

    @validates_schema
    def _range(self, data: dict, **_kwargs: object) -> None:
        if data.get("from_") and data.get("to") and data["to"] < data["from_"]:
            raise ValidationError("'to' is before 'from'.", "to")


class FiguresSchema(WireSchema):
    collected = fields.Integer(metadata={"description": "Problems raised (共梳理/收集问题)"})
    solved = fields.Integer(metadata={"description": "已解决"})
    coordinating = fields.Integer(metadata={"description": "正在协调解决"})
    deferred = fields.Integer(metadata={"description": "暂不具备解决条件"})
    open = fields.Integer(metadata={"description": "No outcome yet"})


class CategoryFiguresSchema(FiguresSchema):
    category = fields.Enum(ProblemCategory, by_value=True)
    label = fields.String()


class DepartmentFiguresSchema(FiguresSchema):
    department_id = fields.UUID(allow_none=True)
    department_name = fields.String()


class CoverageSchema(WireSchema):
    kind = fields.Enum(TargetKind, by_value=True)
    label = fields.String()
    visited = fields.Integer()
    total = fields.Integer(metadata={"description": "Active targets of this kind"})


class SummarySchema(WireSchema):
    campaign_id = fields.UUID(allow_none=True)
    from_ = fields.Date(data_key="from", attribute="from", allow_none=True)
    to = fields.Date(allow_none=True)
    visits = fields.Integer()
    problems = fields.Nested(FiguresSchema)
    by_category = fields.List(fields.Nested(CategoryFiguresSchema))
    by_department = fields.List(fields.Nested(DepartmentFiguresSchema))
    coverage = fields.List(fields.Nested(CoverageSchema))
    sentence = fields.String(metadata={"description": "The figures as one Chinese sentence, in the article's style"})
