"""Everything client_sync raises, in one tree: retry the transport errors, show the others.

    SyncError                    base of every error client_sync raises
    ├── TransportError           retryable: no usable answer (the request may or may not have arrived)
    │   ├── NetworkError         connection refused or reset, DNS, timeout
    │   └── ServerUnavailable    429 / 5xx still failing after the retries (``retry_after`` if the server said)
    ├── ApiError                 the server answered with a reason (``status``, ``code``, ``message``,
    │   │                        ``errors``, ``details``); sending the same request again will not help
    │   ├── LoginRequired        401, or no token on the device: log in again (the queue is kept)
    │   ├── UpgradeRequired      426: the server no longer speaks to this app version
    │   ├── CursorExpired        410 cursor_expired (handled inside pull: the cache is rebuilt)
    │   └── SequenceGap          409 sequence_gap, ``expected_seq`` (handled inside push)
    ├── ProtocolError            the server answered something the protocol does not allow
    ├── NoteInvalid              the shared schema (schemas/) refused a note on the device (``errors``)
    ├── UsageError               no such note, nothing to fix, a file that cannot be read …
    └── StoreError               the local database cannot be used (e.g. made by a newer app)

A change the server refused for good is *not* an exception: it is a result (``needs_attention``)
kept in the outbox with its reason, so one bad note never stops the others.
"""

from __future__ import annotations

from typing import Any


class SyncError(Exception):
    """Base of every error client_sync raises."""


class TransportError(SyncError):
    """No usable answer; the same request may be sent again later."""


class NetworkError(TransportError):
    """The server could not be reached, or the connection broke or timed out."""


class ServerUnavailable(TransportError):
    """The server kept answering 429 or 5xx; ``retry_after`` is its hint in seconds, if any."""

    def __init__(self, message: str, *, status: int, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after


class ApiError(SyncError):
    """The server refused the request and said why (the API's one error body)."""

    def __init__(
        self,
        message: str,
        *,
        status: int,
        code: str,
        errors: dict[str, Any] | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.errors = errors or {}
        self.details = details or {}

    def as_reason(self) -> dict[str, Any]:
        """The error as a reason stored beside a change or file."""
        return {"code": self.code, "message": self.message, "errors": self.errors or None, "status": self.status}


class LoginRequired(ApiError):
    """The token is missing, expired or revoked: the cadre must log in again."""

    def __init__(self, message: str = "Log in again.", *, status: int = 401, code: str = "login_required") -> None:
        super().__init__(message, status=status, code=code)


class UpgradeRequired(ApiError):
    """426: the server wants a newer app (or another protocol)."""


class CursorExpired(ApiError):
    """410 cursor_expired: the device must rebuild its cache from cursor 0."""


class SequenceGap(ApiError):
    """409 sequence_gap: the server expects the device to resend from ``expected_seq``."""

    @property
    def expected_seq(self) -> int:
        return int(self.details.get("expected_seq", 0))


class ProtocolError(SyncError):
    """The server's answer breaks the protocol (missing results, a gap that cannot be filled …)."""


class NoteInvalid(SyncError):
    """The note does not pass the shared schema; ``errors`` maps fields to messages."""

    def __init__(self, message: str, errors: dict[str, Any]) -> None:
        super().__init__(message)
        self.errors = errors


class UsageError(SyncError):
    """The caller asked for something that cannot be done (unknown note, nothing to fix …)."""

    def __init__(self, message: str, *, zh: str | None = None) -> None:
        super().__init__(message)
        self.zh = zh or message


class StoreError(SyncError):
    """The local database cannot be opened or migrated."""
