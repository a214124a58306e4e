"""Who is calling: the bearer token of a device (or, later, a console session) -> Actor."""

from __future__ import annotations

import contextlib
import uuid

from flask import current_app, g, request

from server import db
from server.db.types import utcnow
from server.errors import ApiError
from server.services import auth
from server.services.actors import Actor


def request_id() -> str:
    if "request_id" not in g:
        g.request_id = request.headers.get("X-Request-ID") or uuid.uuid4().hex
    return g.request_id


def current_actor() -> Actor:
    """The authenticated actor of this request, or 401."""
    if "actor" in g:
        return g.actor
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise ApiError(401, headers={"WWW-Authenticate": "Bearer"})
    # A request that only reads authenticates in its own reader session: one transaction for
    # the whole request. Any other reads the token in a session of its own, before the request's
    # session begins, so that the occasional touch below never waits on the request's own write
    # lock (SQLite).
    maker = current_app.extensions["db_sessionmaker"]
    with contextlib.nullcontext(db.session()) if db.request_reads() else maker() as s:
        found = auth.authenticate(s, token.strip())
        if found is None:
            raise ApiError(
                401,
                "The token is invalid, expired or revoked; log in again.",
                code="invalid_token",
                headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
            )
    g.token_id = found.token_id
    now = utcnow()
    if auth.touch_due(found, now):
        with db.session_scope(current_app) as s:
            auth.touch(s, found, now)
    g.actor = Actor(
        user_id=found.user_id,
        role=found.role,
        department_id=found.department_id,
        device_id=found.device_id,
        request_id=request_id(),
        remote_addr=request.remote_addr,
    )
    return g.actor
