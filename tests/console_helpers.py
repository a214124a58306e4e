"""Log a browser (the Flask test client) into the console, CSRF token and all."""

from __future__ import annotations

import re
from typing import Any

from tests.factories import PASSWORD

_TOKEN = re.compile(r'name="csrf_token" value="([^"]+)"')


def csrf_token(client: Any, url: str = "/login") -> str:
    match = _TOKEN.search(client.get(url).get_data(as_text=True))
    assert match, f"no CSRF token on {url}"
    return match.group(1)


def console_login(client: Any, username: str, password: str = PASSWORD) -> Any:
    return client.post("/login", data={"username": username, "password": password, "csrf_token": csrf_token(client)})
