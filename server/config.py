"""Settings: defaults here, overridden by environment variables (each listed in .env.example)."""

from __future__ import annotations

import os
from typing import Any

TIMEZONE = "Asia/Shanghai"


def _bool(value: str) -> bool:
    return value.strip().lower() in ("1", "true", "yes", "on")


def _list(value: str) -> tuple[str, ...]:
    """A comma-separated list, e.g. of content types."""
    return tuple(item.strip().lower() for item in value.split(",") if item.strip())


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
    "INSTANCE_PATH": (None, str),
    "ATTACHMENT_MAX_BYTES": (20 * 1024 * 1024, int),
    "ATTACHMENT_TYPES": (
        ("image/jpeg", "image/png", "image/heic", "image/webp", "application/pdf"),
        _list,
    ),
    "MIN_CLIENT_VERSION": ("0.1.0", str),
    "CONSOLE_SESSION_HOURS": (12, int),
    "SESSION_COOKIE_SECURE": (False, _bool),
    # Mail (server/mail, docs/scheduler-and-mail.md).
    "MAIL_TRANSPORT": ("file", str),
    "MAIL_FROM": ("三走进三服务 <noreply@localhost>", str),
    "SMTP_HOST": ("localhost", str),
    "SMTP_PORT": (0, int),
    "SMTP_SECURITY": ("starttls", str),
    "SMTP_USERNAME": (None, str),
    "SMTP_PASSWORD": (None, str),
    "SMTP_TIMEOUT": (30.0, float),
    "SMTP_CONNECTIONS": (4, int),
    "MAIL_MAX_ATTEMPTS": (10, int),
    "MAIL_RETRY_SECONDS": (300, int),
    "MAIL_RETRY_MAX_SECONDS": (6 * 3600, int),
    # The scheduler (server/jobs): one process, `flask --app wsgi scheduler`.
    "SCHEDULER_SWEEP_MINUTES": (5, int),
    "SCHEDULER_SWEEP_HOURS": ("8-19", str),
    "SCHEDULER_LEASE_SECONDS": (60, int),
    "REMIND_BEFORE_WORKDAYS": (2, int),
}


def load(instance_path: str, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """The app's configuration: defaults, then the environment, then explicit overrides."""
    config: dict[str, Any] = {}
    for name, (default, parse) in SETTINGS.items():
        raw = os.environ.get(name)
        config[name] = parse(raw) if raw not in (None, "") else default
    if overrides:
        config.update(overrides)
    # Flask's instance path unless INSTANCE_PATH moves everything the server writes elsewhere.
    instance_path = config["INSTANCE_PATH"] or instance_path
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
