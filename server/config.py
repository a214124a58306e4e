"""Settings: defaults here, overridden by environment variables (each listed in .env.example)."""

from __future__ import annotations

import os
from typing import Any

TIMEZONE = "Asia/Shanghai"


def _bool(value: str) -> bool:
    return value.strip().lower() in ("1", "true", "yes", "on")


# name -> (default, parser). Every name here is documented in .env.example (a test checks).
SETTINGS: dict[str, tuple[Any, Any]] = {
    "SECRET_KEY": (None, str),
    "DATABASE_URL": (None, str),
    "PUBLIC_BASE_URL": ("http://127.0.0.1:5000", str),
    "TOKEN_TTL_DAYS": (30, int),
    "LOGIN_RATE_LIMIT": ("10 per minute", str),
    "RATELIMIT_STORAGE_URI": ("memory://", str),
    "MAX_CONTENT_LENGTH": (8 * 1024 * 1024, int),
    "PAGE_SIZE_DEFAULT": (50, int),
    "PAGE_SIZE_MAX": (500, int),
    "LOG_LEVEL": ("INFO", str),
    "TRUST_PROXY": (False, _bool),
    "MIN_CLIENT_VERSION": ("0.1.0", str),
}


def load(instance_path: str, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """The app's configuration: defaults, then the environment, then explicit overrides."""
    config: dict[str, Any] = {}
    for name, (default, parse) in SETTINGS.items():
        raw = os.environ.get(name)
        config[name] = parse(raw) if raw not in (None, "") else default
    if overrides:
        config.update(overrides)
    if not config["DATABASE_URL"]:
        config["DATABASE_URL"] = "sqlite:///" + os.path.join(instance_path, "fieldvisit.db")
    if not config["SECRET_KEY"]:
        config["SECRET_KEY"] = _instance_secret(instance_path)
    return config


def _instance_secret(instance_path: str) -> str:
    """A random key kept in instance/ so that a development install needs no setting."""
    import secrets

    path = os.path.join(instance_path, "secret_key")
    if not os.path.exists(path):
        os.makedirs(instance_path, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_hex(32))
    with open(path) as f:
        return f.read().strip()
