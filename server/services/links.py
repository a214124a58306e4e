"""Links into the web console for e-mails: PUBLIC_BASE_URL and the path of a console page.

Paths are built from the console's own routes (the application's URL map, as `url_for` does),
so a link in a mail always names a page the console serves; a renamed or moved page changes
the links with it, and a page that is gone fails loudly when the mail is rendered. Needs an
application context (the jobs, the console and the CLI run in one). PUBLIC_BASE_URL may carry
a path, when the console is served under one (https://example.cn/fieldvisit).

Mail sent before links were built this way points under /console/; the console redirects those.
"""

from __future__ import annotations

import uuid
from urllib.parse import urlsplit

from flask import current_app
from werkzeug.routing import MapAdapter


def _adapter(base_url: str) -> MapAdapter:
    parts = urlsplit(base_url.rstrip("/"))
    return current_app.url_map.bind(parts.netloc, script_name=parts.path or "/", url_scheme=parts.scheme or "http")


def console_url(base_url: str, endpoint: str, **values: object) -> str:
    """The absolute URL of a console page (`endpoint` without the blueprint's name); values the
    route does not take become the query string."""
    return _adapter(base_url).build(f"console.{endpoint}", values, force_external=True)


def referral_url(base_url: str, referral_id: uuid.UUID | str) -> str:
    """Where a referral is read and acted on."""
    return console_url(base_url, "referral", referral_id=referral_id)


def referrals_url(base_url: str, **query: str) -> str:
    """The console's referral list, filtered (e.g. department=rsj, state=overdue)."""
    return console_url(base_url, "referrals", **query)
