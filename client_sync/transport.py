"""HTTP to the server through requests: a timeout on every request, retries with full-jitter
exponential backoff that honour ``Retry-After``, the client headers, and errors mapped to
client_sync.errors (``raise … from`` the requests exception)."""

from __future__ import annotations

import email.utils
import platform
import random
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urljoin

import requests

from client_sync.errors import (
    ApiError,
    CursorExpired,
    LoginRequired,
    NetworkError,
    ProtocolError,
    SequenceGap,
    ServerUnavailable,
    UpgradeRequired,
)
from client_sync.version import __version__
from schemas.protocol import PROTOCOL_VERSION

# Answers that say "not now": the same request may succeed later.
RETRY_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})
USER_AGENT = (
    f"client_sync/{__version__} (sync protocol {PROTOCOL_VERSION}; {platform.system() or 'unknown'})"
    f" python-requests/{requests.__version__}"
)


@dataclass
class Backoff:
    """Exponential backoff with full jitter: a random wait in [0, min(cap, base * 2**attempt)]."""

    base: float = 0.5
    cap: float = 30.0
    rng: random.Random = field(default_factory=random.Random)

    def delay(self, attempt: int) -> float:
        return self.rng.uniform(0, min(self.cap, self.base * 2**attempt))


def retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or an HTTP date), or None."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def error_from(response: requests.Response) -> ApiError:
    """The API's one error body as an exception of the right class."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        body = {}
    status = response.status_code
    code = str(body.get("code") or f"http_{status}")
    message = str(body.get("message") or response.reason or f"HTTP {status}")
    kw: dict[str, Any] = {"status": status, "code": code, "errors": body.get("errors"), "details": body.get("details")}
    if status == 401:
        return LoginRequired(message, status=status, code=code)
    if status == 426:
        return UpgradeRequired(message, **kw)
    if status == 410 and code == "cursor_expired":
        return CursorExpired(message, **kw)
    if status == 409 and code == "sequence_gap":
        return SequenceGap(message, **kw)
    return ApiError(message, **kw)


class Transport:
    """One server, one token: requests with timeouts, retries and the client headers."""

    def __init__(
        self,
        base_url: str | None,
        *,
        token: str | None = None,
        timeout: float | tuple[float, float] = (5.0, 30.0),
        retries: int = 4,
        backoff: Backoff | None = None,
        max_wait: float = 120.0,
        session: requests.Session | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.base_url = base_url
        self.token = token
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff or Backoff()
        self.max_wait = max_wait
        self.session = session or requests.Session()
        self.sleep = sleep

    def url(self, path: str) -> str:
        if path.startswith(("http://", "https://")):
            return path
        if not self.base_url:
            raise LoginRequired("No server is known yet: log in with the server's address.", code="no_server")
        return urljoin(self.base_url.rstrip("/") + "/", path.lstrip("/"))

    def headers(self, *, auth: bool = True) -> dict[str, str]:
        headers = {
            "User-Agent": USER_AGENT,
            "X-Client-Protocol": str(PROTOCOL_VERSION),
            "X-Client-Version": __version__,
            "Accept": "application/json",
        }
        if auth:
            if not self.token:
                raise LoginRequired("Not logged in on this device.", code="not_logged_in")
            headers["Authorization"] = f"Bearer {self.token}"
        return headers

    def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        data: bytes | None = None,
        headers: dict[str, str] | None = None,
        retry: bool = True,
        auth: bool = True,
    ) -> requests.Response:
        """Send a request; retry what may succeed later; raise client_sync.errors for the rest.

        Retries (when `retry`): connection errors and timeouts, and 408/425/429/5xx answers,
        waiting ``Retry-After`` when the server gives it (up to ``max_wait``) or a full-jitter
        backoff. Any other error answer is raised at once.
        """
        url = self.url(path)
        sent = {**self.headers(auth=auth), "X-Request-ID": uuid.uuid4().hex, **(headers or {})}
        attempt = 0
        while True:
            try:
                response = self.session.request(
                    method, url, json=json, data=data, headers=sent, timeout=self.timeout, allow_redirects=False
                )
            except requests.RequestException as e:
                if not retry or attempt >= self.retries:
                    raise NetworkError(f"{method} {url}: {type(e).__name__}: {e}") from e
                delay = self.backoff.delay(attempt)
            else:
                if response.status_code < 300:
                    return response
                if response.status_code not in RETRY_STATUSES:
                    raise error_from(response)
                hint = retry_after(response.headers.get("Retry-After"))
                if not retry or attempt >= self.retries or (hint is not None and hint > self.max_wait):
                    error = error_from(response)
                    raise ServerUnavailable(
                        f"{method} {url}: {response.status_code} {error.code}: {error.message}",
                        status=response.status_code,
                        retry_after=hint,
                    ) from error
                delay = hint if hint is not None else self.backoff.delay(attempt)
            self.sleep(delay)
            attempt += 1

    def post_json(self, path: str, body: Any, **kw: Any) -> dict[str, Any]:
        response = self.request("POST", path, json=body, **kw)
        try:
            answer = response.json()
        except ValueError as e:
            raise ProtocolError(f"POST {path} answered {response.status_code} without JSON.") from e
        if not isinstance(answer, dict):
            raise ProtocolError(f"POST {path} answered {type(answer).__name__}, not an object.")
        return answer
