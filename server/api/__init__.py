"""The JSON API under /api/v1 (flask-smorest), its OpenAPI document and docs page."""

from __future__ import annotations

from typing import Any

from apispec import BasePlugin
from flask import Flask, Response, request
from flask_smorest import Api as SmorestApi
from werkzeug.exceptions import HTTPException

from schemas.common import ErrorSchema
from server import errors
from server.api.security import current_actor

API_PREFIX = "/api/v1"
# Views that take something other than JSON (file uploads) set this attribute on their class.
ACCEPTS_NON_JSON = "accepts_non_json"
# Views anyone may call without a token (login, version) set this attribute on their class.
PUBLIC = "public"


def _error(description: str) -> dict[str, Any]:
    """A documented error answer: the one error body (ErrorSchema)."""
    schema = {"$ref": "#/components/schemas/Error"}
    return {"description": description, "content": {"application/json": {"schema": schema}}}


class CommonAnswers(BasePlugin):
    """Lists on each operation the errors that come from what it is, not from what it does:

    401 for every operation that needs a token, 404 for every URL naming a record (none, or not
    one you may read), 413 and 415 for every POST, PUT and PATCH that takes JSON or nothing (too
    large; another content type, see _require_json), 400 for a JSON body that is not JSON and for
    a list's cursor the server did not give. An operation's own errors (403, 409, ...) are listed
    by its view; `default` describes the error body of any other.
    """

    def operation_helper(self, path: str | None = None, operations: dict | None = None, **kwargs: Any) -> None:
        for method, operation in (operations or {}).items():
            responses = operation.setdefault("responses", {})

            def add(status: int, description: str, responses: dict = responses) -> None:
                responses.setdefault(str(status), _error(description))

            if operation.get("security") != []:
                add(401, "No token, or one that is invalid, expired or revoked")
            if path and "{" in path:
                add(404, "No such record, or none you may read")
            takes = set(operation.get("requestBody", {}).get("content", {}))
            if "application/json" in takes:
                add(400, "The body is not valid JSON")
            if method in ("post", "put", "patch") and takes <= {"application/json"}:
                add(413, "The body is larger than MAX_CONTENT_LENGTH")
                add(415, "The body is not application/json")
            if any(p.get("in") == "query" and p.get("name") == "cursor" for p in operation.get("parameters", [])):
                add(400, "invalid_cursor: a cursor the server did not give")


class Api(SmorestApi):
    """flask-smorest's Api, writing the OpenAPI document when it is first read rather than at start-up.

    Documenting the views (flask-smorest deep-copies each blueprint's docs and apispec resolves
    every schema) was three quarters of create_app(); a worker that never serves the document
    never pays for it. The routes themselves are registered at once, as before.
    """

    ERROR_SCHEMA = ErrorSchema

    def __init__(self, app: Flask | None = None, **kwargs: Any) -> None:
        self._undocumented: list[tuple[Any, str, Any]] = []
        self._documenting = False
        kwargs.setdefault("spec_kwargs", {}).setdefault("extra_plugins", [CommonAnswers()])
        super().__init__(app, **kwargs)

    @property
    def spec(self) -> Any:
        if self._undocumented and not self._documenting:
            self._documenting = True
            try:
                while self._undocumented:
                    blp, name, parameters = self._undocumented.pop(0)
                    blp.register_views_in_doc(self, self._app, self._spec, name=name, parameters=parameters)
                    self._spec.tag({"name": name, "description": blp.description})
            finally:
                self._documenting = False
        return self._spec

    @spec.setter
    def spec(self, value: Any) -> None:
        self._spec = value

    def register_blueprint(self, blp: Any, *, parameters: Any = None, **options: Any) -> None:
        name = options.get("name", blp.name)
        self._app.extensions["flask-smorest"]["blp_name_to_api"][name] = self
        self._app.register_blueprint(blp, **options)
        self._undocumented.append((blp, name, parameters))

    def handle_http_exception(self, error: HTTPException) -> Any:
        return errors.from_http_exception(error)


def _authenticate() -> None:
    """Every API view needs a valid token unless it is public: 401 before the body is even read."""
    if request.path.startswith(API_PREFIX) and request.endpoint and request.method != "OPTIONS":
        view = _view_class()
        if view is not None and not getattr(view, PUBLIC, False):
            current_actor()


def _require_json() -> Response | None:
    """415 for a body that is not JSON, before any view parses it."""
    if request.method not in ("POST", "PUT", "PATCH") or not request.path.startswith(API_PREFIX):
        return None
    if request.routing_exception is not None:
        return None  # no such URL or method: 404 or 405, whatever the body
    view = request.url_rule and request.endpoint and _view_class()
    if view is not None and getattr(view, ACCEPTS_NON_JSON, False):
        return None
    has_body = (request.content_length or 0) > 0 or request.headers.get("Transfer-Encoding")
    if has_body and not request.is_json:
        return errors.response(415)
    return None


def _view_class() -> Any:
    from flask import current_app

    func = current_app.view_functions.get(request.endpoint or "")
    return getattr(func, "view_class", None)


def init_app(app: Flask) -> Api:
    app.config.update(
        API_TITLE="Field-visit companion API (三走进三服务)",
        API_VERSION="v1",
        OPENAPI_VERSION="3.0.3",
        OPENAPI_URL_PREFIX="/api",
        OPENAPI_JSON_PATH="openapi.json",
        OPENAPI_SWAGGER_UI_PATH="/docs",
        OPENAPI_SWAGGER_UI_URL="/static/vendor/swagger-ui/",
        # No call to swagger.io's validator: the page must work on a network without internet.
        OPENAPI_SWAGGER_UI_CONFIG={"validatorUrl": None},
        API_SPEC_OPTIONS={
            "info": {"description": "See docs/api.md. Times are ISO 8601 in Asia/Shanghai (+08:00)."},
            "components": {
                "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            },
            "security": [{"bearer": []}],
        },
    )
    api = Api(app)
    from server.api import (
        auth,
        calendar,
        directory,
        followups,
        health,
        meta,
        problems,
        referrals,
        reports,
        sync,
        targets,
        uploads,
        visits,
    )

    modules = (meta, auth, directory, targets, visits, problems, reports, sync, uploads, referrals, followups, calendar)
    for module in modules:
        api.register_blueprint(module.blp, url_prefix=API_PREFIX + module.PREFIX)
    app.register_blueprint(health.bp)
    app.before_request(_authenticate)
    app.before_request(_require_json)
    return api
