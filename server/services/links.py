"""Links into the web console for e-mails: PUBLIC_BASE_URL + /console/… (one place for the URL scheme)."""

from __future__ import annotations

import uuid
from urllib.parse import urlencode


def referral_url(base_url: str, referral_id: uuid.UUID | str) -> str:
    """Where a referral is read and acted on."""
    return f"{base_url.rstrip('/')}/console/referrals/{referral_id}"


def referrals_url(base_url: str, **query: str) -> str:
    """The console's referral list, filtered (e.g. department=rsj, state=overdue)."""
    suffix = f"?{urlencode(query)}" if query else ""
    return f"{base_url.rstrip('/')}/console/referrals{suffix}"


def console_url(base_url: str, path: str = "") -> str:
    return f"{base_url.rstrip('/')}/console/{path.lstrip('/')}"
