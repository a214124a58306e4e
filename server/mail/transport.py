"""Where messages go: `.eml` files in instance/outbox/ (development, the default) or an SMTP server.

A transport is opened for a batch (`with transport:`), `send` is called per message, and it raises
`DeliveryError` when a message was not accepted; `refused` then says which recipients an SMTP
server refused while accepting the message for others.

    DeliveryError          the message was not handed over; retry later
     └── (any transport)   .permanent: the server answered 5xx (retried too, but worth reading)
"""

from __future__ import annotations

import contextlib
import email.utils
import os
import smtplib
import socket
import ssl
import tempfile
from collections.abc import Mapping, Sequence
from email.message import Message
from pathlib import Path
from typing import Any, Protocol

DEFAULT_PORTS = {"ssl": 465, "starttls": 587, "none": 25}


class DeliveryError(Exception):
    """The message was not handed over. `permanent` when the server refused it with a 5xx reply."""

    def __init__(self, message: str, *, permanent: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent


class Transport(Protocol):
    def __enter__(self) -> Transport: ...

    def __exit__(self, *exc: object) -> None: ...

    def send(self, message: Message, mail_from: str, to: Sequence[str]) -> dict[str, str]:
        """Hand the message over; returns the recipients refused (the others got it). Raises DeliveryError."""
        ...


class FileTransport:
    """Writes each message to `<directory>/<Message-ID>.eml` (atomically: a temporary file renamed).

    Named after the Message-ID, so sending a message again replaces its file rather than adding one.
    """

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory)

    def __enter__(self) -> FileTransport:
        self.directory.mkdir(parents=True, exist_ok=True)
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def send(self, message: Message, mail_from: str, to: Sequence[str]) -> dict[str, str]:
        name = "".join(c if c.isalnum() or c in "-_.@" else "_" for c in str(message["Message-ID"]).strip("<>"))
        target = self.directory / f"{name}.eml"
        try:
            fd, tmp = tempfile.mkstemp(dir=self.directory, prefix=".", suffix=".tmp")
            with os.fdopen(fd, "wb") as f:
                f.write(message.as_bytes())
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, target)
        except OSError as e:
            with contextlib.suppress(OSError, UnboundLocalError):
                os.unlink(tmp)
            raise DeliveryError(f"cannot write {target}: {e}") from e
        return {}


class SMTPTransport:
    """One SMTP connection per batch: SSL from the start, STARTTLS (required), or plain; optional login.

    Certificates are verified (`ssl_context` lets tests trust their own). The connection is opened
    on the first message and opened again once if the server dropped it between messages.
    """

    def __init__(
        self,
        host: str,
        port: int = 0,
        *,
        security: str = "starttls",
        username: str | None = None,
        password: str | None = None,
        timeout: float = 30.0,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        if security not in DEFAULT_PORTS:
            raise ValueError(f"SMTP_SECURITY must be one of {', '.join(DEFAULT_PORTS)}, not {security!r}")
        self.host = host
        self.port = port or DEFAULT_PORTS[security]
        self.security = security
        self.username = username
        self.password = password
        self.timeout = timeout
        self.ssl_context = ssl_context
        self._smtp: smtplib.SMTP | None = None

    def __enter__(self) -> SMTPTransport:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        smtp, self._smtp = self._smtp, None
        if smtp is not None:
            try:
                smtp.quit()
            except (smtplib.SMTPException, OSError):
                smtp.close()

    def _connect(self) -> smtplib.SMTP:
        context = self.ssl_context or ssl.create_default_context()
        smtp: smtplib.SMTP
        if self.security == "ssl":
            smtp = smtplib.SMTP_SSL(self.host, self.port, timeout=self.timeout, context=context)
        else:
            smtp = smtplib.SMTP(self.host, self.port, timeout=self.timeout)
        try:
            # Without TCP_NODELAY the end of each message waits for the server's delayed ACK (Nagle):
            # some 40 ms a message, most of the time spent sending a batch.
            if smtp.sock is not None:
                smtp.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            smtp.ehlo()
            if self.security == "starttls":
                # starttls() raises SMTPNotSupportedError when the server does not offer it: never
                # fall back to sending the password or the mail in the clear.
                smtp.starttls(context=context)
                smtp.ehlo()
            if self.username:
                smtp.login(self.username, self.password or "")
        except BaseException:
            smtp.close()
            raise
        return smtp

    def send(self, message: Message, mail_from: str, to: Sequence[str]) -> dict[str, str]:
        envelope_from = _bare(mail_from)
        for attempt in (1, 2):
            fresh = self._smtp is None
            try:
                if self._smtp is None:
                    self._smtp = self._connect()
                refused = self._smtp.send_message(message, from_addr=envelope_from, to_addrs=list(to))
                return {rcpt: _reply(code, text) for rcpt, (code, text) in refused.items()}
            except smtplib.SMTPServerDisconnected as e:
                self._drop()
                if fresh or attempt == 2:
                    raise DeliveryError(f"SMTP server closed the connection: {e}") from e
                # A connection the server dropped while idle between messages: reconnect once.
            except smtplib.SMTPRecipientsRefused as e:
                self._reset()
                replies = "; ".join(f"{r}: {_reply(c, t)}" for r, (c, t) in e.recipients.items())
                codes = [c for c, _t in e.recipients.values()]
                raise DeliveryError(f"every recipient refused: {replies}", permanent=_all_5xx(codes)) from e
            except smtplib.SMTPResponseException as e:
                self._reset()
                permanent = 500 <= e.smtp_code < 600
                raise DeliveryError(f"SMTP {_reply(e.smtp_code, e.smtp_error)}", permanent=permanent) from e
            except (smtplib.SMTPException, OSError) as e:
                self._drop()
                raise DeliveryError(f"SMTP {type(e).__name__}: {e}") from e
        raise AssertionError("unreachable")  # pragma: no cover

    def _reset(self) -> None:
        # After a refusal the session may be mid-transaction: RSET it, or start afresh next time.
        if self._smtp is not None:
            try:
                self._smtp.rset()
            except (smtplib.SMTPException, OSError):
                self._drop()

    def _drop(self) -> None:
        smtp, self._smtp = self._smtp, None
        if smtp is not None:
            smtp.close()


def _bare(address: str) -> str:
    return email.utils.parseaddr(address)[1]


def _reply(code: int, text: bytes | str) -> str:
    return f"{code} {text.decode('utf-8', 'replace') if isinstance(text, bytes) else text}"


def _all_5xx(codes: list[int]) -> bool:
    return bool(codes) and all(500 <= c < 600 for c in codes)


def from_config(config: Mapping[str, Any], instance_path: str) -> Transport:
    """The transport MAIL_TRANSPORT names: `file` (instance/outbox/) or `smtp` (SMTP_* settings)."""
    kind = str(config.get("MAIL_TRANSPORT") or "file").lower()
    if kind == "file":
        return FileTransport(Path(config.get("INSTANCE_PATH") or instance_path) / "outbox")
    if kind == "smtp":
        return SMTPTransport(
            config["SMTP_HOST"],
            int(config.get("SMTP_PORT") or 0),
            security=str(config.get("SMTP_SECURITY") or "starttls").lower(),
            username=config.get("SMTP_USERNAME") or None,
            password=config.get("SMTP_PASSWORD") or None,
            timeout=float(config.get("SMTP_TIMEOUT") or 30),
        )
    raise ValueError(f"MAIL_TRANSPORT must be file or smtp, not {kind!r}")
