"""One error body for the whole API: {status, code, message, errors?, details?}.

Every failure the client can cause ends here as JSON with the right status; unexpected
exceptions are logged with their traceback and answered with a bare 500, never the trace.
"""

from __future__ import annotations

import logging
from typing import Any

from flask import Flask, Response, jsonify, request
from sqlalchemy.exc import DataError, IntegrityError, OperationalError
from werkzeug.exceptions import HTTPException

log = logging.getLogger(__name__)

CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    410: "gone",
    412: "precondition_failed",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "validation_error",
    426: "upgrade_required",
    429: "rate_limited",
    500: "internal_error",
    503: "unavailable",
}

MESSAGES = {
    400: "The request could not be understood (malformed body or parameters).",
    401: "Authentication required: log in and send the token as 'Authorization: Bearer <token>'.",
    403: "You are not allowed to do this.",
    404: "Not found.",
    405: "Method not allowed on this URL.",
    409: "The request conflicts with the current state of the data.",
    413: "The request body is too large.",
    415: "Unsupported content type: send application/json.",
    422: "The request data is invalid.",
    429: "Too many requests; retry later.",
    500: "Internal server error. The error was logged.",
    503: "Service unavailable; retry later.",
}


class ApiError(Exception):
    """Raised by services and views for an answer other than success."""

    def __init__(
        self,
        status: int,
        message: str | None = None,
        *,
        code: str | None = None,
        errors: dict[str, list[str]] | None = None,
        details: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message or MESSAGES.get(status, ""))
        self.status = status
        self.code = code or CODES.get(status, "error")
        self.message = message or MESSAGES.get(status, "")
        self.errors = errors
        self.details = details
        self.headers = headers or {}


def not_found(what: str = "Resource") -> ApiError:
    return ApiError(404, f"{what} not found.")


def forbidden(message: str | None = None) -> ApiError:
    return ApiError(403, message)


def invalid(field: str, message: str) -> ApiError:
    return ApiError(422, errors={field: [message]})


def version_conflict(current_version: int) -> ApiError:
    return ApiError(
        409,
        "The record changed since you read it; reload it and apply your change again.",
        code="version_conflict",
        details={"current_version": current_version},
    )


def body(
    status: int,
    code: str | None = None,
    message: str | None = None,
    errors: dict[str, Any] | None = None,
    details: dict[str, Any] | None = None,
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "status": status,
        "code": code or CODES.get(status, "error"),
        "message": message or MESSAGES.get(status, ""),
    }
    if errors:
        out["errors"] = errors
    if details:
        out["details"] = details
    return out


TITLES = {
    400: "请求有误",
    401: "请先登录",
    403: "无权访问",
    404: "页面不存在",
    405: "不支持的操作",
    409: "数据已变化",
    413: "内容过大",
    415: "格式不支持",
    422: "填写有误",
    429: "操作过于频繁",
    500: "系统出错",
    503: "服务暂不可用",
}
MESSAGES_ZH = {
    400: "请求无法识别，请返回后重试。",
    401: "登录已失效，请重新登录。",
    403: "您的角色无权进行此操作。",
    404: "您要找的页面或记录不存在，或您无权查看。",
    405: "此页面不支持该操作。",
    409: "数据已被他人修改，请刷新后再试。",
    413: "上传的内容过大。",
    415: "文件或内容格式不受支持。",
    422: "提交的内容有误，请检查后重试。",
    429: "操作过于频繁，请稍后再试。",
    500: "系统出现错误，已记录，请稍后重试。",
    503: "服务暂时不可用，请稍后重试。",
}


def wants_html() -> bool:
    """Console pages get HTML error pages; the API (and health checks) get the JSON body."""
    path = request.path
    return not (path.startswith("/api/") or path == "/api" or path == "/healthz" or path.startswith("/static/"))


def response(status: int, headers: dict[str, str] | None = None, **kwargs: Any) -> Response:
    if wants_html():
        from flask import render_template

        message = kwargs.get("message") if status in (403, 409, 422) and _is_chinese(kwargs.get("message")) else None
        html = render_template(
            "console/error.html",
            status=status,
            title=TITLES.get(status, "出错了"),
            message=message or MESSAGES_ZH.get(status, "出错了。"),
        )
        resp = Response(html, status=status, mimetype="text/html")
        for k, v in (headers or {}).items():
            resp.headers[k] = v
        return resp
    resp = jsonify(body(status, **kwargs))
    resp.status_code = status
    for k, v in (headers or {}).items():
        resp.headers[k] = v
    return resp


def _is_chinese(text: Any) -> bool:
    return isinstance(text, str) and any("\u4e00" <= ch <= "\u9fff" for ch in text)


def _flatten_webargs(messages: Any) -> dict[str, Any]:
    """webargs nests errors by location ({"json": {...}}); clients want them by field."""
    if not isinstance(messages, dict):
        return {"_schema": messages if isinstance(messages, list) else [str(messages)]}
    flat: dict[str, Any] = {}
    for location, errs in messages.items():
        if isinstance(errs, dict):
            flat.update(errs)
        else:
            flat[location] = errs
    return flat


def from_http_exception(e: HTTPException) -> Response:
    status = e.code or 500
    data = getattr(e, "data", None) or {}
    headers: dict[str, str] = dict(data.get("headers") or {})
    errors = None
    message = None
    if status in (405,):
        headers.update(dict(e.get_headers()))
        headers.pop("Content-Type", None)
    if "messages" in data or "errors" in data:
        errors = _flatten_webargs(data.get("errors") or data.get("messages"))
        json_errors = errors.get("json") if isinstance(errors, dict) else None
        if status == 422 and json_errors and any("Invalid JSON" in str(m) for m in json_errors):
            status = 400
            errors = None
            message = "The request body is not valid JSON."
    if status == 400 and errors is None and message is None and e.description and "JSON" in e.description:
        message = "The request body is not valid JSON."
    if status == 429:
        message = MESSAGES[429]
        retry = _retry_after(e)
        if retry:
            headers["Retry-After"] = retry
    return response(status, headers=headers, message=message or data.get("message"), errors=errors)


def _retry_after(e: HTTPException) -> str | None:
    limit = getattr(e, "limit", None)
    if limit is not None:
        try:
            return str(int(limit.limit.get_expiry()))
        except Exception:  # noqa: BLE001 - a missing hint only loses the header
            return None
    return None


def register(app: Flask) -> None:
    @app.errorhandler(ApiError)
    def _api_error(e: ApiError) -> Response:
        _rollback()
        return response(e.status, e.headers, code=e.code, message=e.message, errors=e.errors, details=e.details)

    @app.errorhandler(IntegrityError)
    def _integrity(e: IntegrityError) -> Response:
        _rollback()
        log.info("integrity error on %s %s: %s", request.method, request.path, e.orig)
        return response(
            409,
            code="integrity_conflict",
            message="The change conflicts with existing data (a duplicate or a missing reference).",
        )

    @app.errorhandler(DataError)
    def _data(e: DataError) -> Response:
        # A value the schema let through but the column cannot hold (too long, out of range).
        _rollback()
        log.warning("data error on %s %s: %s", request.method, request.path, e.orig)
        return response(422, code="unstorable_value", message="A value cannot be stored (too large or malformed).")

    @app.errorhandler(OperationalError)
    def _operational(e: OperationalError) -> Response:
        _rollback()
        log.exception("database error on %s %s", request.method, request.path)
        return response(503, headers={"Retry-After": "5"}, message="The database is unavailable; retry later.")

    @app.errorhandler(Exception)
    def _unexpected(e: Exception) -> Response:
        if isinstance(e, HTTPException):
            return from_http_exception(e)
        _rollback()
        log.exception("unhandled error on %s %s", request.method, request.path)
        return response(500)


def _rollback() -> None:
    from flask import g

    s = g.get("db_session")
    if s is not None:
        s.rollback()
