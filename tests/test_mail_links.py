"""Every link in every kind of mail opens a console page for the people the mail is sent to.

The mail is made as the scheduler makes it, over the demo data (whose referrals give every kind
of notice on the seeding day's sweep): sign reminders, 催办, 督办 and progress checks, the weekly
digests of the departments and of the bureau, and the calendar warning to the admins. Each link
is followed as its recipient would: anonymous first (the login page, which sends them back),
then logged in as that recipient — a department's mailbox and head as the department's staff.
"""

from __future__ import annotations

import collections
import datetime as dt
import html
import itertools
import re
import uuid
from urllib.parse import urlsplit

from sqlalchemy import select, update

from server.db import read_session, session_scope
from server.db.followup_models import MailMessage
from server.db.models import Department, User
from server.demo import DEMO_PASSWORD, seed
from server.domain.workdays import has_data
from server.jobs import jobs
from server.services.links import referral_url, referrals_url
from tests.console_helpers import csrf_token
from tests.scheduler_helpers import bj

BASE = "https://fieldvisit.example.cn"
LINK = re.compile(r"https?://[^\s\"'<>]+")
ADMIN_EMAIL = "admin@demo.xz.gov.cn"


def kind_of(dedupe_key: str) -> str:
    """notice:<referral>:<kind>:… → the notice's kind; digest:<recipient>:<week> → digest; calendar-missing:<year>."""
    parts = dedupe_key.split(":")
    if parts[0] == "notice":
        return parts[2]
    if parts[0] == "digest":
        return "digest_bureau" if parts[1] == "supervisors" else "digest_department"
    return parts[0]


def logins_by_address(app) -> dict[str, str]:
    """Who opens a link sent to each address: the user with that address, or the department's staff."""
    with read_session(app) as session:
        found = {u.email.lower(): u.username for u in session.scalars(select(User).where(User.email.is_not(None)))}
        for d in session.scalars(select(Department)):
            for address in (d.email, d.head_email):
                if address:
                    found.setdefault(address.lower(), f"dept-{d.code}")
    return found


def follow(app, username: str, path: str) -> tuple[int, str]:
    """Open a mailed link: the login page first, then (logged in) the page itself."""
    client = app.test_client()
    r = client.get(path)
    assert r.status_code == 302 and urlsplit(r.headers["Location"]).path == "/login", (path, r.status_code)
    login = r.headers["Location"]
    r = client.post(
        login,
        data={"username": username, "password": DEMO_PASSWORD, "csrf_token": csrf_token(client, login)},
    )
    assert r.status_code == 302, (username, r.get_data(as_text=True)[:300])
    assert r.headers["Location"] == path, (r.headers["Location"], path)  # back to the page the mail named
    r = client.get(path)
    return r.status_code, r.get_data(as_text=True)


def test_every_link_in_every_mail_opens_for_its_recipients(app):
    app.config["PUBLIC_BASE_URL"] = BASE
    with session_scope(app) as session:
        assert seed(session, today=dt.date(2026, 11, 25)) is True
        session.execute(update(User).where(User.username == "admin").values(email=ADMIN_EMAIL))
    assert jobs.sweep(app, bj(2026, 11, 25, 9, 10)).mails > 0
    assert jobs.weekly_digest(app, bj(2026, 11, 30, 8, 5)).sent  # Monday of the next week
    year = next(y for y in itertools.count(2026) if not has_data(y))  # the first year without holiday data
    assert jobs.calendar_check(app, bj(year - 1, 11, 15, 9)).mails == 1

    with read_session(app) as session:
        columns = (MailMessage.dedupe_key, MailMessage.to_addrs, MailMessage.subject)
        mails = session.execute(select(*columns, MailMessage.text_body, MailMessage.html_body)).all()
    kinds = collections.Counter(kind_of(m.dedupe_key) for m in mails)
    assert set(kinds) == {
        "sign_reminder",
        "reminder",
        "escalation",
        "progress_check",
        "digest_department",
        "digest_bureau",
        "calendar-missing",
    }, kinds
    who = logins_by_address(app)
    visits: dict[tuple[str, str], str] = {}
    linked = set()
    for mail in mails:
        links = set(LINK.findall(mail.text_body)) | {html.unescape(u) for u in LINK.findall(mail.html_body or "")}
        if links:
            linked.add(kind_of(mail.dedupe_key))
        for link in links:
            assert link.startswith(BASE + "/"), link
            parts = urlsplit(link)
            path = parts.path + (f"?{parts.query}" if parts.query else "")
            assert not path.startswith("/console/"), link  # the console's own routes, not the old redirects
            for address in mail.to_addrs:
                assert address.lower() in who, f"{address} of {mail.subject} has no console account"
                visits.setdefault((who[address.lower()], path), mail.subject)
    assert linked == set(kinds)  # a department's digest with nothing to act on may have no link
    roles = {username.split("-")[0].rstrip("0123456789") for username, _path in visits}
    assert roles == {"dept", "supervisor", "admin"}
    for (username, path), subject in sorted(visits.items()):
        status, page = follow(app, username, path)
        assert status == 200, (subject, username, path, status)
        assert "页面不存在" not in page


def test_links_follow_the_console_routes_and_a_base_with_a_path(app):
    referral = uuid.uuid4()
    with app.app_context():
        assert referral_url("https://x.cn", referral) == f"https://x.cn/referrals/{referral}"
        assert referral_url("https://x.cn/fv/", referral) == f"https://x.cn/fv/referrals/{referral}"
        assert referrals_url("http://127.0.0.1:5000", department="rsj", state="due_soon") == (
            "http://127.0.0.1:5000/referrals?department=rsj&state=due_soon"
        )
        assert referrals_url("https://x.cn/") == "https://x.cn/referrals"
