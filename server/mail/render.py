"""Mail from templates: `render` turns server/templates/mail/<name>.txt/.html into a subject and
two bodies; `build` turns an outbox row into a multipart (text + HTML) message ready for SMTP.

A template's text file sets the subject with `{% set subject = "…" %}`; the HTML file is optional.
Headers are encoded for any SMTP server (RFC 2047 for the Chinese subject and names, base64
UTF-8 bodies), so neither SMTPUTF8 nor 8BITMIME is needed.
"""

from __future__ import annotations

import datetime as dt
import email.utils
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from email.header import Header
from email.message import Message
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from pathlib import Path
from typing import Any

import jinja2

from server.domain.periods import SHANGHAI

TEMPLATES = Path(__file__).resolve().parent.parent / "templates" / "mail"
# Headers a caller may not set through `headers`: the builder owns them.
RESERVED = frozenset({"from", "to", "subject", "date", "content-type", "mime-version", "content-transfer-encoding"})


@dataclass(frozen=True)
class Rendered:
    subject: str
    text: str
    html: str | None


_environments: dict[tuple[str, bool], jinja2.Environment] = {}


def _environment(html: bool) -> jinja2.Environment:
    key = (str(TEMPLATES), html)
    env = _environments.get(key)
    if env is None:
        env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(TEMPLATES),
            autoescape=html,
            undefined=jinja2.StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
            keep_trailing_newline=True,
        )
        env.filters.update(md=month_day, ymd=year_month_day, cn=chinese_ordinal)
        _environments[key] = env
    return env


def month_day(day: dt.date | dt.datetime) -> str:
    """11月23日 (a datetime is shown in Beijing time)."""
    if isinstance(day, dt.datetime):
        day = day.astimezone(SHANGHAI).date()
    return f"{day.month}月{day.day}日"


def year_month_day(day: dt.date | dt.datetime) -> str:
    """2026年11月23日 (a datetime is shown in Beijing time)."""
    if isinstance(day, dt.datetime):
        day = day.astimezone(SHANGHAI).date()
    return f"{day.year}年{day.month}月{day.day}日"


def chinese_ordinal(n: int) -> str:
    """1 → 一 … 10 → 十, for numbered sections; larger numbers as digits."""
    return "一二三四五六七八九十"[n - 1] if 1 <= n <= 10 else str(n)


def render(name: str, context: Mapping[str, Any]) -> Rendered:
    """Render `<name>.txt` (which sets `subject`) and `<name>.html` if it exists."""
    module = _environment(html=False).get_template(f"{name}.txt").make_module(dict(context))
    subject = " ".join(str(getattr(module, "subject", "")).split())
    if not subject:
        raise ValueError(f"mail template {name}.txt sets no subject")
    text = str(module).strip() + "\n"
    html = None
    if (TEMPLATES / f"{name}.html").exists():
        html = _environment(html=True).get_template(f"{name}.html").render(dict(context, subject=subject))
    return Rendered(subject, text, html)


def message_id(key: str, mail_from: str) -> str:
    """A stable Message-ID for an outbox row (`key` is its id) at the sender's domain.

    Every attempt to send the row carries the same Message-ID, so a message sent twice after a
    crash (docs/scheduler-and-mail.md) is recognisably one message, and mail clients fold it.
    """
    domain = email.utils.parseaddr(mail_from)[1].rpartition("@")[2] or "localhost"
    return f"<{key}@{domain}>"


def build(
    *,
    mail_from: str,
    to: Sequence[str],
    subject: str,
    text: str,
    html: str | None,
    date: dt.datetime,
    message_id: str,
    headers: Mapping[str, str] | None = None,
) -> Message:
    """A message for SMTP: multipart/alternative when there is HTML, `Auto-Submitted: auto-generated`.

    `date` is shown in Beijing time (+0800). Extra `headers` (e.g. List-Id) are added as given.
    Built with the compat32 MIME classes: the same bytes on the wire as EmailMessage, in a fifth
    of the time (the header registry parses every header it is given), which a Monday's
    hundreds of messages notice.
    """
    msg: Message
    if html is None:
        msg = MIMEText(text, "plain", "utf-8")
    else:
        msg = MIMEMultipart("alternative")
        msg.attach(MIMEText(text, "plain", "utf-8"))
        msg.attach(MIMEText(html, "html", "utf-8"))
    msg["From"] = _address(mail_from)
    msg["To"] = ", ".join(_address(a) for a in to)
    msg["Subject"] = Header(subject, "utf-8")  # type: ignore[assignment]  # typeshed: str only; Header works
    msg["Date"] = email.utils.format_datetime(date.astimezone(SHANGHAI))
    msg["Message-ID"] = message_id
    # RFC 3834: an automatic message; auto-responders (out-of-office) must not answer it.
    msg["Auto-Submitted"] = "auto-generated"
    msg["X-Auto-Response-Suppress"] = "All"
    for name, value in (headers or {}).items():
        if name.lower() in RESERVED or name.lower() == "message-id":
            continue
        msg[name] = value if value.isascii() else Header(value, "utf-8").encode()
    return msg


def _address(value: str) -> str:
    name, addr = email.utils.parseaddr(value)
    if not addr or "@" not in addr or not addr.isascii():
        raise ValueError(f"not an e-mail address: {value!r}")
    return email.utils.formataddr((name, addr), charset="utf-8")
