"""Real SMTP servers on loopback for tests (aiosmtpd): a sink that keeps what it receives, one that
answers with a failure (451 or 550) until told to recover, STARTTLS with login, and a port that
refuses connections.

    with smtp_sink() as sink:            # sink.port, sink.messages, sink.fail_with("451 …")
        ...
"""

from __future__ import annotations

import contextlib
import email
import email.policy
import os
import socket
import ssl
import subprocess
import threading
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def closed_port() -> int:
    """A loopback port with nothing listening: connecting is refused."""
    return free_port()


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    message: EmailMessage
    raw: bytes


@dataclass
class SinkHandler:
    """Keeps every message accepted. `failure` ("451 …", "550 …") is answered at DATA while set;
    `refuse` maps recipients to an RCPT reply; `failures_left` recovers after that many failures."""

    received: list[Received] = field(default_factory=list)
    failure: str | None = None
    failures_left: int | None = None
    refuse: dict[str, str] = field(default_factory=dict)
    attempts: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: Any) -> str:
        reply = self.refuse.get(address)
        if reply:
            return reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        with self.lock:
            self.attempts += 1
            if self.failure is not None:
                reply = self.failure
                if self.failures_left is not None:
                    self.failures_left -= 1
                    if self.failures_left <= 0:
                        self.failure, self.failures_left = None, None
                return reply
            raw = bytes(envelope.original_content or envelope.content)
            message = email.message_from_bytes(raw, policy=email.policy.default)
            self.received.append(Received(envelope.mail_from, list(envelope.rcpt_tos), message, raw))  # type: ignore[arg-type]
        return "250 OK: queued"


class Sink:
    """A running aiosmtpd server on 127.0.0.1 and what it received."""

    def __init__(self, controller: Controller, handler: SinkHandler) -> None:
        self.controller = controller
        self.handler = handler
        self.host = "127.0.0.1"
        self.port = int(controller.port)

    @property
    def messages(self) -> list[EmailMessage]:
        with self.handler.lock:
            return [r.message for r in self.handler.received]

    @property
    def received(self) -> list[Received]:
        with self.handler.lock:
            return list(self.handler.received)

    def fail_with(self, reply: str, times: int | None = None) -> None:
        """Answer DATA with `reply` (e.g. "451 4.3.0 try later", "550 5.7.1 no"), `times` times or until recover()."""
        with self.handler.lock:
            self.handler.failure, self.handler.failures_left = reply, times

    def recover(self) -> None:
        with self.handler.lock:
            self.handler.failure, self.handler.failures_left = None, None

    def config(self, **extra: Any) -> dict[str, Any]:
        """App settings that send to this server."""
        return {
            "MAIL_TRANSPORT": "smtp",
            "SMTP_HOST": self.host,
            "SMTP_PORT": self.port,
            "SMTP_SECURITY": "none",
        } | extra


@contextlib.contextmanager
def smtp_sink(**server_kwargs: Any) -> Iterator[Sink]:
    handler = SinkHandler()
    controller = Controller(
        handler, hostname="127.0.0.1", port=free_port(), server_hostname="localhost", **server_kwargs
    )
    controller.start()
    try:
        yield Sink(controller, handler)
    finally:
        controller.stop()


def self_signed(directory: Path) -> tuple[Path, Path]:
    """A certificate and key for "localhost" made with the openssl command."""
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=localhost",
         "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True, env=os.environ | {"OPENSSL_CONF": "/dev/null"},
    )  # fmt: skip
    return cert, key


@contextlib.contextmanager
def starttls_sink(cert: Path, key: Path, username: str, password: str) -> Iterator[Sink]:
    """A server that requires STARTTLS before anything else, and a login after it."""
    # aiosmtpd 1.4 sets its own deprecated Session.login_data after every login; not our warning to fix.
    warnings.filterwarnings("ignore", message="Session.login_data is deprecated", category=DeprecationWarning)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)

    def authenticator(server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> AuthResult:
        ok = isinstance(data, LoginPassword) and data.login == username.encode() and data.password == password.encode()
        return AuthResult(success=ok, handled=False)  # handled=False: the server answers 535 on failure

    with smtp_sink(tls_context=context, require_starttls=True, auth_required=True, authenticator=authenticator) as sink:
        yield sink


def client_context(cert: Path) -> ssl.SSLContext:
    """A client context that trusts the test certificate (and verifies the host name)."""
    return ssl.create_default_context(cafile=str(cert))
