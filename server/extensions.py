"""Flask extensions, created unbound and bound to the app in create_app()."""

from __future__ import annotations

from flask import request
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address


def login_username_key() -> str:
    body = request.get_json(silent=True)
    name = body.get("username") if isinstance(body, dict) else None
    return "login-user:" + (name[:64] if isinstance(name, str) else "")


limiter = Limiter(key_func=get_remote_address, default_limits=[], headers_enabled=True)
