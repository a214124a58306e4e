"""What the console's forms share: reading a submitted form for a schema, and errors in plain Chinese.

The services and schemas speak English (the API's language); people at the console read Chinese.
Every message a form can show is translated here, by exact text or by pattern; anything not
listed falls back to a generic Chinese sentence rather than showing English.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar

from flask import request
from marshmallow import Schema, ValidationError, fields

from server import db
from server.console import bp
from server.errors import ApiError

FIELD_LABELS = {
    "problem_ids": "交办问题",
    "lead_department_id": "主办单位",
    "co_department_ids": "协办单位",
    "requirements": "办理要求",
    "workdays": "办理时限",
    "grounds": "退回理由",
    "reason": "理由",
    "until": "延期至",
    "outcome": "办理结果",
    "done": "办理情况",
    "plan": "推进计划",
    "next_date": "下一步日期",
    "reassign_to": "改派单位",
    "approve": "审核意见",
    "accept": "审核意见",
    "satisfaction": "满意度",
    "note": "说明",
    "assignee_id": "指派给",
    "day": "日期",
    "workday": "类型",
    "version": "版本",
    "status": "状态",
    "department": "单位",
    "year": "年度",
    "number": "编号",
    "cursor": "分页",
    "kind": "类型",
    "assignee": "负责人",
    "week": "周次",
    "who": "对象",
    "into": "合并至",
    "_schema": "提交内容",
}

EXACT = {
    "Missing data for required field.": "必填。",
    "Field may not be null.": "必填。",
    "Shorter than minimum length 1.": "必填。",
    "Not a valid date.": "日期格式不对，例如 2026-03-02。",
    "Not a valid integer.": "请填写整数。",
    "Not a valid UUID.": "选项无效，请重新选择。",
    "Not a valid boolean.": "选项无效，请重新选择。",
    "Not a valid list.": "选项无效，请重新选择。",
    "Not a valid string.": "内容无效。",
    "Unknown field.": "无法识别的内容。",
    "Text may not contain NUL characters.": "内容含有无法保存的字符。",
    "Each at most once.": "不能重复选择。",
    "No such active department.": "没有这个单位，或该单位已停用。",
    "No such department.": "没有这个单位。",
    "No such problem.": "问题不存在。",
    "Say what the department is asked to do.": "请写明办理要求。",
    "The lead department cannot also be a co-department.": "主办单位不能同时是协办单位。",
    "Choose the department to reassign the referral to.": "请选择改派的单位。",
    "Reassign to a department other than the current lead.": "请改派给当前主办单位以外的单位。",
    "Give the day the deadline moves to.": "请填写延期到哪一天。",
    "Say why the referral should go to another department.": "请说明申请退回的理由。",
    "Say why the return is refused.": "请说明不同意退回的理由。",
    "Say why more time is needed.": "请说明延期的理由。",
    "Say why the extension is refused.": "请说明不同意延期的理由。",
    "Say what must be redone.": "请说明需要重新办理的内容。",
    "Say why the referral is cancelled.": "请说明撤销的理由。",
    "Say why the referral is reopened.": "请说明重新办理的理由。",
    "Say what was done.": "请填写办理情况。",
    "A coordinating answer needs a plan.": "正在协调解决的，请填写推进计划。",
    "A coordinating answer needs the date of the next step.": "正在协调解决的，请填写下一步日期。",
    "The date of the next step must be in the future.": "下一步日期须在今天之后。",
    "The date of the next step must be in the future (within two years).": "下一步日期须在今天之后、两年之内。",
    "A deferred answer needs a reason.": "暂不具备解决条件的，请说明原因。",
    "The date is more than two years ahead.": "日期不能在两年以后。",
    "A revisit records the firm's satisfaction.": "请选择企业的满意度。",
    "Say why the firm is not satisfied.": "不满意的，请说明原因。",
    "Only a revisit records satisfaction.": "只有回访才记录满意度。",
    "Say how far the work has come.": "请填写工作进展。",
    "Only a progress check moves the date of the next step.": "只有进展跟踪才能调整下一步日期。",
    "Choose an active cadre or supervisor.": "请选择在岗的干部或督查人员。",
    "Not a referral number, e.g. 徐工信交〔2026〕第0001号.": "编号格式不对，例如 徐工信交〔2026〕第0001号。",
    "A problem cannot be merged into itself.": "不能合并至问题本身，请选择另一个问题。",
    "The problems belong to different targets.": "只能合并至同一走访对象的问题。",
    "A merged duplicate cannot be referred; refer the problem it was merged into.": (
        "已合并的重复问题不能交办，请交办它所合并至的问题。"
    ),
}
PATTERNS = [
    (re.compile(r"^Must be greater than or equal to (\d+) and less than or equal to (\d+)\.$"), r"应在\1到\2之间。"),
    (re.compile(r"^Must be greater than or equal to (\S+)\.$"), r"不能小于 \1。"),
    (re.compile(r"^Longer than maximum length (\d+)\.$"), r"不能超过 \1 个字。"),
    (re.compile(r"^Length must be between 1 and (\d+)\.$"), r"请选择 1 到 \1 项。"),
    (re.compile(r"^Length must be between (\d+) and (\d+)\.$"), r"数量应在 \1 到 \2 之间。"),
    (re.compile(r"^Must be one of: .*\.$"), "选项无效，请重新选择。"),
    (re.compile(r"^Give between 1 and (\d+) working days\.$"), r"工作日数应在 1 到 \1 之间。"),
    (re.compile(r"^The new date must be after the current deadline \((.+)\)\.$"), r"新期限须晚于当前期限（\1）。"),
    (re.compile(r"^(\d{4}-\d{2}-\d{2}) is not a working day\.$"), r"\1 不是工作日，请另选一天。"),
]
# Refusals by code: the 409s and 403s an action can meet.
CODES = {
    "version_conflict": "这份记录刚被他人修改过。页面已显示最新内容，请核对后再提交。",
    "invalid_transition": "交办单的状态已经变化，这一步不再适用。页面已显示最新内容。",
    "deadline_passed": "已过办理期限，不能再申请延期。",
    "followup_closed": "这项任务已经处理过了。",
    "co_department": "协办单位只能查看交办单，由主办单位办理。",
    "department": "这份交办单属于其他单位。",
    "role": "您的角色不能进行这一步操作。",
    "already_merged": "这个问题已经合并至其他问题。如需改并，请先撤销合并。",
    "survivor_merged": "所选问题本身已合并至另一个问题，请改为合并至那个问题。",
    "open_referral": "这个问题有尚未办结的交办单，不能合并掉。可以把另一个问题合并至本问题。",
    "not_merged": "这个问题没有合并，无需撤销。",
    "problem_merged": "这个问题已合并至其他问题，请先撤销合并再修改。",
}
GENERIC = "填写有误，请检查。"
BY_STATUS = {403: "您无权进行这一步操作。", 404: "记录不存在，或您无权查看。", 409: CODES["invalid_transition"]}


def chinese(message: str) -> str:
    """A service or schema message in Chinese (Chinese messages pass through)."""
    if message in EXACT:
        return EXACT[message]
    if any("\u4e00" <= ch <= "\u9fff" for ch in message):
        return message
    for pattern, replacement in PATTERNS:
        if pattern.match(message):
            return pattern.sub(replacement, message)
    return GENERIC


def _messages(value: Any) -> list[str]:
    if isinstance(value, str):
        return [chinese(value)]
    if isinstance(value, dict):  # a list field's errors by index: {0: [...]}
        return sorted({m for v in value.values() for m in _messages(v)})
    if isinstance(value, list | tuple):
        return [m for v in value for m in _messages(v)]
    return [GENERIC]


def zh_errors(e: ApiError | ValidationError) -> dict[str, list[str]]:
    """{field: [Chinese messages]} for a refused form; refusals without a field under "_schema"."""
    if isinstance(e, ValidationError):
        raw: Any = e.normalized_messages()
    elif e.errors:
        raw = e.errors
    else:
        reason = (e.details or {}).get("reason") if e.details else None
        text = CODES.get(e.code) or CODES.get(str(reason)) or chinese(e.message)
        if text == GENERIC:
            text = BY_STATUS.get(e.status, GENERIC)
        return {"_schema": [text]}
    if not isinstance(raw, dict):
        return {"_schema": _messages(raw)}
    return {str(field): _messages(msgs) for field, msgs in raw.items()}


_BOOLEANS = {"true": True, "false": False}
# At most 18 digits: int() refuses a string of over 4,300 (ValueError); a longer one is left
# for the schema to refuse.
_DIGITS = re.compile(r"[+-]?[0-9]{1,18}")


def json_value(field: fields.Field, value: str) -> Any:
    """A form's text as the JSON value a field of the schemas takes: "true"/"false" (radios,
    hidden inputs) as booleans, digits (a version, working days) as integers; anything else is
    left for the schema to refuse."""
    if isinstance(field, fields.Boolean):
        return _BOOLEANS.get(value, value)
    if isinstance(field, fields.Integer) and _DIGITS.fullmatch(value):
        return int(value)
    return value


def form_data(schema: Schema, lists: Iterable[str] = ()) -> dict[str, Any]:
    """The submitted fields the schema knows, stripped; blanks dropped (they mean "not given")."""
    data: dict[str, Any] = {}
    for name in schema.fields:
        if schema.fields[name].dump_only:
            continue
        if name in lists:
            values = [v.strip() for v in request.form.getlist(name) if v.strip()]
            if values:
                data[name] = values
            continue
        value = request.form.get(name, "").strip()
        if value:
            data[name] = json_value(schema.fields[name], value)
    return data


T = TypeVar("T")


@dataclass
class Refused:
    """A form the services refused: the messages to show beside it, and the page's status."""

    errors: dict[str, list[str]]
    status: int


def submit(schema: Schema, raw: dict[str, Any], apply: Callable[[dict[str, Any]], T]) -> T | Refused:
    """Load `raw` (the posted fields) with `schema`, `apply` the data and commit; `apply`'s result.

    Invalid input (422) or a move the state does not allow (409 …) is rolled back and comes back
    as `Refused`, for the page to show again with what was typed; 403 and 404 go on to the
    console's error pages.
    """
    session = db.session()
    try:
        result = apply(schema.load(raw))
        session.commit()
    except (ValidationError, ApiError) as e:
        session.rollback()
        if isinstance(e, ApiError) and e.status in (403, 404):
            raise
        return Refused(zh_errors(e), e.status if isinstance(e, ApiError) else 422)
    return result


def typed(lists: Iterable[str] = ()) -> dict[str, Any]:
    """What the user typed, to put back into the form (lists as lists)."""
    out: dict[str, Any] = {k: v for k, v in request.form.items() if k != "csrf_token"}
    for name in lists:
        out[name] = request.form.getlist(name)
    return out


@bp.app_template_filter("field_label")
def field_label(field: str) -> str:
    return FIELD_LABELS.get(field, field)
