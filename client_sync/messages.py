"""What cadres read: statuses, reasons and errors in Chinese (the glossary's words)."""

from __future__ import annotations

import re
from typing import Any

from client_sync.errors import (
    ApiError,
    LoginRequired,
    NetworkError,
    NoteInvalid,
    ProtocolError,
    ServerUnavailable,
    StoreError,
    SyncError,
    UpgradeRequired,
    UsageError,
)
from schemas.enums import ProblemCategory, ServiceCategory

STATUS = {
    "queued": "待上传",
    "sent": "已发送，待确认",
    "acknowledged": "已确认",
    "needs_attention": "需处理",
    "conflict": "冲突",
}
KIND = {
    "visit.create": "新建走访记录",
    "visit.update": "修改走访记录",
    "visit.delete": "删除走访记录",
    "problem.create": "新增问题",
    "problem.update": "修改问题",
    "attachment.add": "添加附件",
}
FIELD = {
    "summary": "走访情况",
    "service_categories": "服务内容",
    "target_id": "走访对象",
    "campaign_id": "活动",
    "visited_at": "走访时间",
    "problems": "问题",
    "attachments": "附件",
    "category": "问题类别",
    "description": "问题描述",
    "location_text": "地点",
    "latitude": "纬度",
    "longitude": "经度",
    "filename": "文件名",
    "content_type": "文件类型",
    "size": "文件大小",
    "caption": "附件说明",
    "visit_id": "走访记录",
    "id": "编号",
    "_schema": "记录",
}
CODE = {
    "validation_error": "内容不符合要求",
    "forbidden": "没有权限",
    "not_found": "服务器上没有这条记录",
    "id_taken": "编号已被另一条记录使用",
    "version_conflict": "记录已被他人修改，两个版本都已保留，可与督查人员确认后处理",
    "visit_in_use": "督查人员已处理其中的问题，不能删除",
    "integrity_conflict": "与服务器上的数据冲突",
    "network": "网络不通，联网后会自动重发",
    "unavailable": "服务器暂时繁忙，稍后会自动重发",
    "rate_limited": "尝试次数过多，请稍后再试",
    "payload_too_large": "文件过大，服务器拒收",
    "unsupported_media_type": "文件类型不受支持",
    "unsupported_file_type": "文件类型不受支持",
    "invalid_credentials": "用户名或密码错误",
    "invalid_token": "登录已失效，请重新登录",
    "unauthorized": "登录已失效，请重新登录",
    "login_required": "登录已失效，请重新登录",
    "needs_login": "登录已失效，请重新登录",
    "not_logged_in": "本机尚未登录，请先登录",
    "no_server": "还不知道服务器地址，请用 --server 登录",
    "device_revoked": "此设备已被停用，请联系管理员",
    "device_taken": "此设备已登记在其他用户名下",
    "client_too_old": "应用版本过旧，请升级（待上传的记录仍会被接收）",
    "unsupported_protocol": "应用与服务器的同步协议不一致，请升级应用",
    "sequence_gap": "服务器要求从较早的记录重新发送",
    "file_lost": "本机上的文件已丢失",
    "protocol": "服务器的回答无法处理，请联系管理员",
}
_SCHEMA_MESSAGES = {
    "Missing data for required field.": "必填",
    "Not a valid UUID.": "编号格式不对",
    "Not a valid datetime.": "时间格式不对",
    "Not a valid string.": "应为文字",
    "Not a valid integer.": "应为整数",
    "Field may not be null.": "不能为空",
    "Unknown field.": "无法识别的字段",
    "The target is no longer active.": "走访对象已停用",
    "No such target.": "没有这个走访对象",
    "No such campaign.": "没有这个活动",
    "Each service category at most once.": "服务内容不能重复",
    "Text may not contain NUL characters.": "文字中不能含有空字符",
}
_LENGTH = re.compile(r"^Length must be between (\d+) and (\d+)\.$")
_ONE_OF = re.compile(r"^Must be one of: (.*)\.$")


def status(value: str) -> str:
    return STATUS.get(value, value)


def resolution(value: str | None) -> str:
    """How a change was closed for the cadre: fixed by a later change, dismissed, conflict settled."""
    if not value:
        return ""
    if value.startswith("fixed by "):
        return f"已由序号 {value.removeprefix('fixed by ')} 修正"
    if value == "dismissed":
        return "已撤销"
    if value.startswith("resolved: "):
        how = value.removeprefix("resolved: ")
        return "冲突已处理：" + {"keep_server": "保留服务器版本", "use_device": "采用本机版本"}.get(how, how)
    return value


def problem_category(value: str) -> str:
    return ProblemCategory.labels().get(value, value)


def service_categories(values: list[str]) -> str:
    labels = ServiceCategory.labels()
    return "、".join(labels.get(v, v) for v in values)


def schema_message(message: str) -> str:
    if message in _SCHEMA_MESSAGES:
        return _SCHEMA_MESSAGES[message]
    if m := _LENGTH.match(message):
        return f"长度须在 {m[1]}–{m[2]} 之间"
    if m := _ONE_OF.match(message):
        return f"取值无效，可选：{m[1]}"
    return message


def field_errors(errors: Any, path: str = "") -> list[str]:
    """Nested field errors as lines such as "问题 1 · 问题描述：必填"."""
    if isinstance(errors, list):
        if all(isinstance(e, str) for e in errors):
            return [f"{path or '记录'}：{'；'.join(schema_message(e) for e in errors)}"]
        return [line for e in errors for line in field_errors(e, path)]
    if isinstance(errors, dict):
        lines: list[str] = []
        for key, value in errors.items():
            key = str(key)
            name = f"第 {int(key) + 1} 项" if key.isdigit() else FIELD.get(key, key)
            lines += field_errors(value, f"{path} · {name}" if path else name)
        return lines
    return [f"{path}：{errors}"] if errors else []


def reason(value: dict[str, Any] | None) -> str:
    """A change's or file's reason in one line."""
    if not value:
        return ""
    code = str(value.get("code") or "")
    text = CODE.get(code) or value.get("message") or code
    details = field_errors(value.get("errors")) if value.get("errors") else []
    if code not in CODE and value.get("message") and details:
        text = CODE["validation_error"]
    return "；".join([text, *details])


def error(exc: BaseException) -> str:
    """An exception as a sentence for the cadre."""
    if isinstance(exc, LoginRequired):
        return CODE.get(exc.code, CODE["login_required"])
    if isinstance(exc, UpgradeRequired):
        return CODE.get(exc.code, CODE["unsupported_protocol"])
    if isinstance(exc, NetworkError):
        return "连不上服务器，请检查网络后再同步。记录都保存在本机，不会丢失。"
    if isinstance(exc, ServerUnavailable):
        wait = f"（约 {int(exc.retry_after)} 秒后）" if exc.retry_after else ""
        return f"服务器暂时繁忙，请稍后{wait}再同步。记录都保存在本机，不会丢失。"
    if isinstance(exc, NoteInvalid):
        return "；".join(["记录内容不符合要求", *field_errors(exc.errors)])
    if isinstance(exc, ApiError):
        return reason(exc.as_reason())
    if isinstance(exc, UsageError):
        return exc.zh
    if isinstance(exc, StoreError):
        return f"本机数据库无法使用：{exc}"
    if isinstance(exc, ProtocolError):
        return f"{CODE['protocol']}（{exc}）"
    if isinstance(exc, SyncError):
        return str(exc)
    return f"出错了：{exc}"
