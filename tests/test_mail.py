"""Mail: rendering (multipart, Chinese subject, Auto-Submitted), the outbox (queued once per key),
the transports (.eml files, SMTP through a real aiosmtpd server on loopback, STARTTLS with login)
and the sender (retries with backoff when the server fails, then recovers: never lost, never twice)."""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import logging
import shutil
import threading
from pathlib import Path

import pytest
from click.testing import Result
from sqlalchemy import func, select, update

from server.db import session_scope
from server.db.followup_models import MailMessage
from server.mail import outbox, render, sender
from server.mail.transport import FileTransport, SMTPTransport
from tests.scheduler_helpers import bj
from tests.smtp import client_context, closed_port, self_signed, smtp_sink, starttls_sink

T0 = bj(2026, 11, 30, 8, 0)
SUBJECT = "【催办】徐工信交〔2026〕第0001号 将于12月2日到期（剩2个工作日）"
TEXT = "市人力资源和社会保障局：\n\n交办单 徐工信交〔2026〕第0001号 将于12月2日到期，还剩2个工作日。\n"
HTML = "<p>市人力资源和社会保障局：</p><p>交办单 <strong>徐工信交〔2026〕第0001号</strong> 将于12月2日到期。</p>"
TO = ["rsj@dept.example.cn", "rsj-staff@dept.example.cn"]


def queue(app, key: str = "k1", to=TO, subject: str = SUBJECT, now: dt.datetime = T0) -> bool:
    with session_scope(app) as session:
        return outbox.enqueue(session, to, subject, TEXT, HTML, dedupe_key=key, now=now)


def rows(app) -> list[MailMessage]:
    with session_scope(app) as session:
        return list(session.scalars(select(MailMessage).order_by(MailMessage.created_at, MailMessage.dedupe_key)))


def parse(raw: bytes) -> email.message.EmailMessage:
    return email.message_from_bytes(raw, policy=email.policy.default)  # type: ignore[return-value]


# --- rendering ------------------------------------------------------------------------------------


def test_a_message_is_multipart_utf8_and_marked_automatic():
    msg = render.build(
        mail_from="三走进三服务 <noreply@bureau.example.cn>",
        to=TO,
        subject=SUBJECT,
        text=TEXT,
        html=HTML,
        date=T0,
        message_id="<abc@bureau.example.cn>",
        headers={"X-Fieldvisit-Kind": "reminder", "Subject": "ignored", "Message-ID": "<ignored@x>"},
    )
    raw = msg.as_bytes()
    # Any SMTP server takes it: headers are ASCII (RFC 2047), bodies base64.
    head = raw.split(b"\n\n", 1)[0]
    assert head.isascii() and b"=?utf-8?" in head
    parsed = parse(raw)
    assert parsed["Subject"] == SUBJECT
    assert parsed["From"].addresses[0].display_name == "三走进三服务"
    assert [a.addr_spec for a in parsed["To"].addresses] == TO
    assert parsed["Auto-Submitted"] == "auto-generated"
    assert parsed["Message-ID"] == "<abc@bureau.example.cn>"
    assert parsed["Date"].endswith("+0800")
    assert parsed["Date"].datetime == T0
    assert parsed["X-Fieldvisit-Kind"] == "reminder"
    assert parsed.get_content_type() == "multipart/alternative"
    assert parsed.get_body(("plain",)).get_content().replace("\r\n", "\n") == TEXT
    assert "徐工信交〔2026〕第0001号" in parsed.get_body(("html",)).get_content()


def test_templates_render_a_subject_text_and_escaped_html():
    ctx = {
        "kind": "escalation",
        "kind_label": "督办",
        "threshold": "overdue-5",
        "number": "徐工信交〔2026〕第0007号",
        "department": "市人力资源和社会保障局",
        "department_short": "人社局",
        "head_name": "王局长",
        "requirements": "<script>协调</script>",
        "issued_on": dt.date(2026, 2, 13),
        "due_on": dt.date(2026, 2, 25),
        "days_left": 0,
        "days_over": 5,
        "next_date": None,
        "today": dt.date(2026, 3, 3),
        "url": "http://x/referrals/1",
    }
    mail = render.render("notice", ctx)
    assert mail.subject == "【督办】人社局 徐工信交〔2026〕第0007号 已逾期5个工作日"
    assert "已逾期5个工作日" in mail.text and "<script>" in mail.text
    assert mail.html is not None and "&lt;script&gt;" in mail.html and "<script>" not in mail.html


def test_message_ids_are_stable_per_row():
    assert render.message_id("0192-abc", "三走进三服务 <noreply@bureau.example.cn>") == "<0192-abc@bureau.example.cn>"


# --- the outbox ------------------------------------------------------------------------------------


def test_a_message_is_queued_once_per_key(app):
    assert queue(app, "digest:x:2026-W49") is True
    assert queue(app, "digest:x:2026-W49", subject="another") is False
    assert [(r.dedupe_key, r.subject, r.status, r.attempts) for r in rows(app)] == [
        ("digest:x:2026-W49", SUBJECT, "queued", 0)
    ]


def test_a_queued_message_rolls_back_with_its_cause(app):
    with pytest.raises(RuntimeError), session_scope(app) as session:
        outbox.enqueue(session, TO, SUBJECT, TEXT, dedupe_key="k", now=T0)
        raise RuntimeError("the cause failed")
    assert rows(app) == []


# --- the file transport -----------------------------------------------------------------------------


def test_the_default_transport_writes_eml_files(app, tmp_path):
    app.config["INSTANCE_PATH"] = str(tmp_path / "inst")
    queue(app, "a")
    queue(app, "b", subject="【周报】人社局交办事项")
    report = sender.send_due(app, now=T0)
    assert report.sent == 2
    files = sorted((tmp_path / "inst" / "outbox").glob("*.eml"))
    assert len(files) == 2
    subjects = sorted(parse(f.read_bytes())["Subject"] for f in files)
    assert subjects == sorted([SUBJECT, "【周报】人社局交办事项"])
    assert all(r.status == "sent" and r.sent_at == T0 for r in rows(app))


def test_the_file_transport_replaces_a_message_sent_again(tmp_path):
    msg = render.build(
        mail_from="a@b.cn", to=TO, subject=SUBJECT, text=TEXT, html=None, date=T0, message_id="<same@b.cn>"
    )
    with FileTransport(tmp_path) as transport:
        transport.send(msg, "a@b.cn", TO)
        transport.send(msg, "a@b.cn", TO)
    assert [p.name for p in tmp_path.iterdir()] == ["same@b.cn.eml"]


# --- SMTP ------------------------------------------------------------------------------------------


def test_smtp_delivers_each_message_once(app):
    with smtp_sink() as sink:
        app.config.update(sink.config(MAIL_FROM="三走进三服务 <noreply@bureau.example.cn>"))
        for i in range(3):
            queue(app, f"k{i}")
        assert sender.send_due(app, now=T0).sent == 3
        assert sender.send_due(app, now=T0 + dt.timedelta(days=1)).sent == 0
        received = sink.received
    assert len(received) == 3
    ids = {r.message["Message-ID"] for r in received}
    assert ids == {f"<{r.id}@bureau.example.cn>" for r in rows(app)}
    first = received[0]
    assert first.mail_from == "noreply@bureau.example.cn" and first.rcpt_tos == TO
    assert first.message["Subject"] == SUBJECT
    assert first.message["Auto-Submitted"] == "auto-generated"
    assert first.message.get_body(("plain",)).get_content().replace("\r\n", "\n") == TEXT
    assert all(r.status == "sent" and r.attempts == 1 for r in rows(app))


@pytest.mark.parametrize("reply", ["451 4.3.0 Try again later", "550 5.7.1 Relaying denied"])
def test_a_failing_server_is_retried_with_backoff_until_it_recovers(app, reply):
    with smtp_sink() as sink:
        app.config.update(sink.config())
        queue(app)
        sink.fail_with(reply)
        delays = []
        moment = T0
        for _ in range(4):
            report = sender.send_due(app, now=moment)
            assert report.retrying == 1 and report.sent == 0
            (row,) = rows(app)
            assert row.status == "queued" and reply[:3] in (row.last_error or "")
            delays.append(row.next_attempt_at - moment)
            # Not due before its time: nothing is attempted.
            attempts = sink.handler.attempts
            assert sender.send_due(app, now=row.next_attempt_at - dt.timedelta(seconds=1)).retrying == 0
            assert sink.handler.attempts == attempts
            moment = row.next_attempt_at
        assert delays == [dt.timedelta(minutes=m) for m in (5, 10, 20, 40)]
        sink.recover()
        assert sender.send_due(app, now=moment).sent == 1
        assert sender.send_due(app, now=moment + dt.timedelta(days=2)).sent == 0
        assert len(sink.messages) == 1
    (row,) = rows(app)
    assert (row.status, row.attempts, row.sent_at) == ("sent", 5, moment)


def test_backoff_is_capped():
    policy = sender.RetryPolicy(first_delay=dt.timedelta(minutes=5), max_delay=dt.timedelta(hours=6))
    assert [policy.delay(n) for n in (1, 2, 3, 7, 8, 20)] == [
        dt.timedelta(minutes=5),
        dt.timedelta(minutes=10),
        dt.timedelta(minutes=20),
        dt.timedelta(minutes=320),
        dt.timedelta(hours=6),
        dt.timedelta(hours=6),
    ]


def test_after_the_last_attempt_a_message_is_failed_reported_and_can_be_requeued(app, caplog):
    with smtp_sink() as sink:
        app.config.update(sink.config(MAIL_MAX_ATTEMPTS=3))
        queue(app)
        sink.fail_with("550 5.1.1 Mailbox unavailable")
        moment = T0
        with caplog.at_level(logging.ERROR, logger="server.mail.sender"):
            for _ in range(3):
                sender.send_due(app, now=moment)
                moment += dt.timedelta(days=1)
        (row,) = rows(app)
        assert (row.status, row.attempts) == ("failed", 3)
        assert any("failed for good" in r.getMessage() for r in caplog.records)
        with session_scope(app) as session:
            assert [m.id for m in outbox.failed(session)] == [row.id]
            assert outbox.counts(session)["failed"] == 1
        # Failed messages stay failed until someone requeues them.
        assert sender.send_due(app, now=moment + dt.timedelta(days=30)).sent == 0
        sink.recover()
        with session_scope(app) as session:
            assert outbox.requeue_failed(session, now=moment) == 1
        assert sender.send_due(app, now=moment).sent == 1
        assert len(sink.messages) == 1


def test_a_refused_connection_is_retried(app):
    app.config.update(MAIL_TRANSPORT="smtp", SMTP_HOST="127.0.0.1", SMTP_PORT=closed_port(), SMTP_SECURITY="none")
    queue(app)
    assert sender.send_due(app, now=T0).retrying == 1
    (row,) = rows(app)
    assert row.status == "queued" and row.attempts == 1 and row.next_attempt_at == T0 + dt.timedelta(minutes=5)
    assert "refused" in (row.last_error or "").lower()


def test_one_refused_recipient_does_not_stop_the_others(app):
    with smtp_sink() as sink:
        sink.handler.refuse["rsj-staff@dept.example.cn"] = "550 5.1.1 No such user"
        app.config.update(sink.config())
        queue(app)
        assert sender.send_due(app, now=T0).sent == 1
        assert sink.received[0].rcpt_tos == ["rsj@dept.example.cn"]
    (row,) = rows(app)
    assert row.status == "sent" and "No such user" in (row.last_error or "")


def test_a_sender_that_died_mid_send_is_taken_over_with_the_same_message_id(app):
    with smtp_sink() as sink:
        app.config.update(sink.config(MAIL_FROM="noreply@bureau.example.cn"))
        queue(app)
        # A sender claims the message and dies before recording anything.
        with session_scope(app) as session:
            claims = sender._claim(session, T0, sender.RetryPolicy(), 10, sender.SendReport())
        assert len(claims) == 1 and rows(app)[0].status == "sending"
        # Its claim holds for the lease: nobody sends it meanwhile …
        assert sender.send_due(app, now=T0 + dt.timedelta(minutes=9)).sent == 0
        # … then it is sent again, recognisably the same message.
        report = sender.send_due(app, now=T0 + dt.timedelta(minutes=10))
        assert (report.sent, report.recovered) == (1, 1)
        (row,) = rows(app)
        assert sink.messages[0]["Message-ID"] == f"<{row.id}@bureau.example.cn>"
        assert (row.status, row.attempts) == ("sent", 2)


def test_a_result_is_not_recorded_over_a_claim_taken_over_by_another_sender(app):
    queue(app)
    with session_scope(app) as session:
        (claim,) = sender._claim(session, T0, sender.RetryPolicy(), 10, sender.SendReport())
    with session_scope(app) as session:  # another sender took it over after the lease ran out
        session.execute(update(MailMessage).values(attempts=MailMessage.attempts + 1))
    with session_scope(app) as session:
        assert sender._record(session, claim, {"status": "sent"}) is False
    assert rows(app)[0].status == "sending"


def test_concurrent_senders_claim_disjoint_messages(app):
    """Two senders at once never claim the same row (SKIP LOCKED on PostgreSQL, the write lock on SQLite)."""
    for i in range(40):
        queue(app, f"k{i:02d}")
    claimed: list[list] = [[], []]
    barrier = threading.Barrier(2)

    def claim(i: int) -> None:
        barrier.wait()
        for _ in range(4):
            with session_scope(app) as session:
                claimed[i].extend(
                    c.id for c in sender._claim(session, T0, sender.RetryPolicy(), 5, sender.SendReport())
                )

    threads = [threading.Thread(target=claim, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not set(claimed[0]) & set(claimed[1])
    assert len(claimed[0]) + len(claimed[1]) == 40


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command for a test certificate")
def test_starttls_with_login(app, tmp_path):
    cert, key = self_signed(tmp_path)
    with starttls_sink(cert, key, "mailer", "s3cret") as sink:
        transport = SMTPTransport(
            "localhost",
            sink.port,
            security="starttls",
            username="mailer",
            password="s3cret",
            timeout=10,
            ssl_context=client_context(cert),
        )
        queue(app)
        assert sender.send_due(app, now=T0, transport=transport).sent == 1
        assert sink.messages[0]["Subject"] == SUBJECT
        # A wrong password is a failed attempt like any other, retried later.
        queue(app, "k2")
        bad = SMTPTransport(
            "localhost",
            sink.port,
            security="starttls",
            username="mailer",
            password="wrong",
            ssl_context=client_context(cert),
        )
        assert sender.send_due(app, now=T0, transport=bad).retrying == 1
        assert len(sink.messages) == 1


def test_starttls_is_required_when_configured(app):
    with smtp_sink() as sink:  # offers no STARTTLS
        transport = SMTPTransport("127.0.0.1", sink.port, security="starttls", timeout=10)
        queue(app)
        assert sender.send_due(app, now=T0, transport=transport).retrying == 1
        assert sink.messages == []
        assert "STARTTLS" in (rows(app)[0].last_error or "")


# --- the command -----------------------------------------------------------------------------------


def run_cli(app, *args: str) -> Result:
    return app.test_cli_runner().invoke(args=list(args))


def test_mail_status_lists_failed_messages_and_requeues_them(app):
    queue(app)
    with session_scope(app) as session:
        session.execute(update(MailMessage).values(status="failed", attempts=10, last_error="550 no"))
    result = run_cli(app, "mail-status")
    assert result.exit_code == 1
    assert "failed 1" in result.output and "550 no" in result.output and SUBJECT in result.output
    result = run_cli(app, "mail-status", "--retry-failed")
    assert result.exit_code == 0 and "queued 1" in result.output
    with session_scope(app) as session:
        assert session.scalar(select(func.count()).select_from(MailMessage).where(MailMessage.status == "queued")) == 1


def test_every_message_in_a_batch_gets_its_own_file(app, tmp_path):
    app.config["INSTANCE_PATH"] = str(tmp_path)
    for i in range(7):
        queue(app, f"k{i}")
    assert sender.send_due(app, now=T0, batch=3).sent == 7
    assert len(list(Path(tmp_path, "outbox").glob("*.eml"))) == 7
