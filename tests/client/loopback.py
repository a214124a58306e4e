"""A tiny real HTTP server on 127.0.0.1 for client tests that need exact control over answers.

``LoopbackServer(app)`` calls ``app(request)`` for every request; the app answers
``(status, headers, body)`` or ``DROP`` to close the connection without answering (a dropped
connection as the client sees it). Requests are recorded in ``server.requests``.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

DROP = object()
Answer = tuple[int, dict[str, str], bytes]


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body or b"null")


def reply(status: int, body: Any = None, headers: dict[str, str] | None = None) -> Answer:
    raw = b"" if body is None else json.dumps(body, ensure_ascii=False).encode()
    return status, {"Content-Type": "application/json", **(headers or {})}, raw


def error(status: int, code: str, message: str = "", **extra: Any) -> Answer:
    headers = extra.pop("headers", None)
    return reply(status, {"status": status, "code": code, "message": message or code, **extra}, headers)


class LoopbackServer:
    def __init__(self, app: Callable[[Request], Any]) -> None:
        self.app = app
        self.requests: list[Request] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                request = Request(self.command, self.path, {k: v for k, v in self.headers.items()}, body)
                outer.requests.append(request)
                answer = outer.app(request)
                if answer is DROP:
                    self.close_connection = True
                    return
                status, headers, raw = answer
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(raw)

            do_GET = do_POST = do_PATCH = do_HEAD = do_DELETE = _handle

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    def __enter__(self) -> LoopbackServer:
        self.thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
