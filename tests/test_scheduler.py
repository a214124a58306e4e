"""The scheduler with a controlled clock and real processes: reminders and escalations on the right
working days across Spring Festival 2026 and a 调休 Saturday; a digest per department per week,
exactly once; the leader lock (a lease on SQLite, an advisory lock on PostgreSQL); three scheduler
processes running each job once; a scheduler killed mid-digest that resumes without sending twice.

No test waits for the clock: the jobs take `now`, and processes are polled, never timed.
"""

from __future__ import annotations

import collections
import datetime as dt
import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Callable
from dataclasses import replace

import pytest
from sqlalchemy import func, select, text, update

from server.db import read_session, session_scope
from server.db.followup_models import DigestSent, FollowUp, JobRun, MailMessage, NoticeSent, Referral, SchedulerLease
from server.domain.periods import SHANGHAI, local_date
from server.jobs import jobs
from server.jobs.leader import AdvisoryLockLeader, LeaseLeader, leader_for
from server.jobs.scheduler import Scheduler, due_jobs, job_specs, last_fire_time
from server.services import digests, notices
from tests.scheduler_helpers import (
    ADMIN_EMAIL,
    CAL,
    SUPERVISOR_EMAILS,
    Bureau,
    bj,
    gen_bureau,
    gen_referral,
    gen_revisit,
    start_scheduler,
    wait_for,
)
from tests.smtp import smtp_sink

D = dt.date
postgres_only = pytest.mark.usefixtures("_postgres_only")


@pytest.fixture
def _postgres_only(db_kind: str) -> None:
    if db_kind != "postgresql":
        pytest.skip("PostgreSQL advisory locks")


@pytest.fixture
def sink(app):
    with smtp_sink() as s:
        app.config.update(s.config(MAIL_FROM="三走进三服务 <noreply@bureau.example.cn>"))
        app.config["PUBLIC_BASE_URL"] = "https://fieldvisit.example.cn"
        yield s


@pytest.fixture
def bureau(app) -> Bureau:
    with session_scope(app) as session:
        return gen_bureau(session, departments=2)


def count(app, model, *where) -> int:
    with read_session(app) as session:  # never the write lock: processes under test hold it
        return int(session.scalar(select(func.count()).select_from(model).where(*where)) or 0)


def notice_log(app) -> list[tuple[dt.date, str, tuple[str, str, str]]]:
    """(Beijing day recorded, referral number, key) of every notice, in order."""
    with session_scope(app) as session:
        rows = session.execute(
            select(NoticeSent.sent_at, Referral.number, NoticeSent.kind, NoticeSent.threshold, NoticeSent.anchor)
            .join(Referral, Referral.id == NoticeSent.referral_id)
            .order_by(NoticeSent.sent_at, Referral.number)
        )
        return [(local_date(at), number, (k, t, a)) for at, number, k, t, a in rows]


def simulate(
    app, first: dt.date, last: dt.date, *, times=(dt.time(9, 10), dt.time(15, 10)), events=None
) -> list[dt.datetime]:
    """The scheduler as it runs in production, on a controlled clock: at each tick (by default 09:10 and
    15:10 Beijing time, every day) the due jobs run once (Scheduler.run_once), as after any downtime.
    `events` maps moments to callables run once the clock has reached them."""
    pending = sorted((events or {}).items())
    scheduler = Scheduler(app)
    ticks = []
    day = first
    while day <= last:
        for t in times:
            moment = dt.datetime.combine(day, t, SHANGHAI).astimezone(dt.UTC)
            while pending and pending[0][0] <= moment:
                pending.pop(0)[1]()
            scheduler.run_once(moment)
            ticks.append(moment)
        day += dt.timedelta(days=1)
    return ticks


# --- Spring Festival 2026 and a make-up Saturday ------------------------------------------------


def test_weeks_across_spring_festival_send_each_notice_and_digest_once_on_working_days(app, sink, bureau):
    """Issued Friday 13 February 2026 for 3 working days and never signed: Saturday 14 is a make-up
    day, 15–23 February are Spring Festival, so it is due Wednesday 25 February. Another, issued
    Thursday 26 February for 2 working days, is due on the make-up Saturday 28 February."""
    ids: dict[str, Referral] = {}

    def issue(name: str, at: dt.datetime, workdays: int, status: str, dept: int) -> Callable[[], None]:
        def create() -> None:
            with session_scope(app) as session:
                signed = {"signed_at": at + dt.timedelta(hours=2)} if status == "signed" else {}
                ids[name] = gen_referral(
                    session, bureau.departments[dept], bureau.supervisor, at, workdays, status, **signed
                )

        return create

    festive_at, saturday_at = bj(2026, 2, 13, 10), bj(2026, 2, 26, 10)
    simulate(
        app,
        D(2026, 2, 9),  # Monday of ISO week 7
        D(2026, 3, 10),
        events={
            festive_at: issue("festive", festive_at, 3, "issued", 0),
            saturday_at: issue("saturday", saturday_at, 2, "signed", 1),
        },
    )
    festive, saturday = ids["festive"].number, ids["saturday"].number
    assert notice_log(app) == [
        (D(2026, 2, 14), festive, ("reminder", "before-2", "2026-02-25")),  # the make-up Saturday
        (D(2026, 2, 24), festive, ("sign_reminder", "after-1", "2026-02-13")),  # first day back
        (D(2026, 2, 25), festive, ("reminder", "due-day", "2026-02-25")),
        (D(2026, 2, 26), festive, ("escalation", "overdue-1", "2026-02-25")),
        (D(2026, 2, 27), saturday, ("reminder", "before-2", "2026-02-28")),
        (D(2026, 2, 28), saturday, ("reminder", "due-day", "2026-02-28")),  # a make-up Saturday
        (D(2026, 3, 2), saturday, ("escalation", "overdue-1", "2026-02-28")),  # Sunday 1 March is off
        (D(2026, 3, 3), festive, ("escalation", "overdue-5", "2026-02-25")),  # 26, 27, 28 Feb, 2, 3 Mar
        (D(2026, 3, 6), saturday, ("escalation", "overdue-5", "2026-02-28")),
    ]
    # Every mail went out once, to the right people, on the day it was recorded.
    messages = sink.messages
    by_subject = collections.Counter(m["Subject"] for m in messages)
    assert all(n == 1 for n in by_subject.values()), by_subject
    notices_mailed = [m for m in messages if not m["Subject"].startswith("【周报】")]
    assert len(notices_mailed) == 9
    dept0 = {bureau.dept_email(0), bureau.staff_email(0)}
    superiors0 = {*SUPERVISOR_EMAILS, bureau.head_email(0)}
    for m in notices_mailed:
        to = {a.addr_spec for a in m["To"].addresses}
        if festive in m["Subject"]:
            assert to == (superiors0 if m["Subject"].startswith("【督办】") else dept0), m["Subject"]
        assert CAL.is_workday(m["Date"].datetime.astimezone(SHANGHAI).date()), m["Subject"]
    # Digests: week 7 on Monday 9 Feb (nothing to report yet), none in week 8 (all holidays),
    # week 9 on Tuesday 24 Feb (Monday 23 is still Spring Festival), weeks 10 and 11 on Mondays.
    with session_scope(app) as session:
        weeks = dict(
            session.execute(
                select(DigestSent.week, DigestSent.created_at).where(DigestSent.recipient == digests.WEEK_DONE)
            ).all()
        )
    assert {w: local_date(at) for w, at in weeks.items()} == {
        "2026-W07": D(2026, 2, 9),
        "2026-W09": D(2026, 2, 24),
        "2026-W10": D(2026, 3, 2),
        "2026-W11": D(2026, 3, 9),
    }
    digest_mails = collections.Counter(
        (m["Subject"].split("：")[0], tuple(sorted(a.addr_spec for a in m["To"].addresses)))
        for m in messages
        if m["Subject"].startswith("【周报】")
    )
    assert all(n == 1 for n in digest_mails.values())
    # Week 9: department 0 has the unsigned referral; department 1 nothing yet; the supervisors' summary.
    w09 = sorted(m["Subject"] for m in messages if "第9周" in m["Subject"])
    assert len(w09) == 2
    assert w09[0].startswith("【周报】交办事项汇总") and w09[1].startswith(f"【周报】测试局{bureau.codes[0]}交办事项")
    with session_scope(app) as session:  # the digest job ran once a day, 9 February to 10 March
        assert session.scalar(select(JobRun.runs).where(JobRun.job == "weekly-digest")) == 30


def test_a_scheduler_down_over_the_due_day_catches_up_once_with_the_latest_notice(app, sink, bureau):
    with session_scope(app) as session:
        gen_referral(
            session, bureau.departments[0], bureau.supervisor, bj(2026, 3, 2, 10), 3, "signed"
        )  # due Thu 5 Mar
    simulate(app, D(2026, 3, 2), D(2026, 3, 3), times=(dt.time(12),))  # runs Mon–Tue, then is down Wed–Sun
    simulate(app, D(2026, 3, 9), D(2026, 3, 9), times=(dt.time(9, 40),))  # back on Monday 9 March
    assert [(day, key) for day, _n, key in notice_log(app)] == [
        (D(2026, 3, 3), ("reminder", "before-2", "2026-03-05")),
        # Down on the due day and the first day overdue: only the latest threshold, once.
        (D(2026, 3, 9), ("escalation", "overdue-1", "2026-03-05")),
    ]
    with session_scope(app) as session:
        # Monday 9 March: the digest ran once, at the first tick after coming back.
        done = select(DigestSent.created_at).where(DigestSent.recipient == "*", DigestSent.week == "2026-W11")
        assert session.scalar(done) == bj(2026, 3, 9, 9, 40)


def test_a_progress_check_follows_a_coordinating_answer_on_its_next_date(app, sink, bureau):
    with session_scope(app) as session:
        r = gen_referral(
            session,
            bureau.departments[0],
            bureau.supervisor,
            bj(2026, 3, 2, 10),
            5,
            "closed",
            outcome="coordinating",
            closed_at=bj(2026, 3, 5, 10),
            on_time=True,
            answer={
                "outcome": "coordinating",
                "done": "已对接银行",
                "plan": "4月前完成授信",
                "next_date": "2026-04-04",
            },
        )
    # 4 April 2026 is Qingming (4–6 April off): the check waits for Tuesday 7 April.
    for day in (3, 4, 5, 6, 7, 8):
        notices.sweep(app, bj(2026, 4, day, 9))
    assert [(day, key) for day, _n, key in notice_log(app)] == [
        (D(2026, 4, 7), ("progress_check", "next-date", "2026-04-04"))
    ]
    with session_scope(app) as session:
        (task,) = session.scalars(select(FollowUp))
        assert (task.kind, task.status, task.department_id, task.referral_id, task.due_on) == (
            "progress_check",
            "open",
            bureau.departments[0],
            r.id,
            D(2026, 4, 7),
        )


def test_two_sweeps_at_once_record_and_queue_each_notice_once(app, bureau):
    with session_scope(app) as session:
        for i in range(30):
            gen_referral(session, bureau.departments[i % 2], bureau.supervisor, bj(2026, 3, 2, 10), 1, "issued")
    now = bj(2026, 3, 4, 9)  # unsigned and 1 working day overdue: a sign reminder and an escalation each
    reports = []
    barrier = threading.Barrier(3)

    def run() -> None:
        barrier.wait()
        reports.append(notices.sweep(app, now))

    threads = [threading.Thread(target=run) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(r.notices for r in reports) == 60 == count(app, NoticeSent)
    assert sum(r.mails for r in reports) == 60 == count(app, MailMessage)


def test_nothing_goes_out_on_a_day_off(app, bureau):
    with session_scope(app) as session:
        gen_referral(session, bureau.departments[0], bureau.supervisor, bj(2026, 9, 23, 10), 1, "signed")
    # Due 24 September; 25–27 September are Mid-Autumn, 1–7 October National Day.
    for moment in (bj(2026, 9, 26, 9), bj(2026, 10, 3, 9)):
        assert notices.sweep(app, moment).workday is False
        assert digests.send_weekly(app, moment).skipped == "day off"
    assert count(app, NoticeSent) == 0 and count(app, MailMessage) == 0


# --- digests ---------------------------------------------------------------------------------------


def digest_world(app, bureau: Bureau) -> dict[str, Referral]:
    """Referrals of department 0 in every state a digest shows, seen on Monday 30 November 2026."""
    d0, sup = bureau.departments[0], bureau.supervisor
    made = {}
    with session_scope(app) as session:
        made["unsigned"] = gen_referral(session, d0, sup, bj(2026, 11, 25, 10), 5)  # due 2 Dec
        made["overdue"] = gen_referral(session, d0, sup, bj(2026, 11, 16, 10), 3, "signed")  # due 19 Nov
        made["soon"] = gen_referral(session, d0, sup, bj(2026, 11, 27, 10), 4, "signed")  # due 3 Dec
        made["later"] = gen_referral(session, d0, sup, bj(2026, 11, 27, 10), 20, "signed")
        made["extension"] = gen_referral(
            session, d0, sup, bj(2026, 11, 20, 10), 8, "extension_requested", requested_until=D(2026, 12, 11)
        )
        made["return"] = gen_referral(session, d0, sup, bj(2026, 11, 26, 10), 5, "return_requested")
        made["closed"] = gen_referral(
            session, d0, sup, bj(2026, 11, 10, 10), 5, "closed", outcome="solved",
            closed_at=bj(2026, 11, 26, 15), on_time=False,
        )  # fmt: skip
        made["closed_before"] = gen_referral(
            session, d0, sup, bj(2026, 11, 2, 10), 5, "closed", outcome="solved",
            closed_at=bj(2026, 11, 6, 15), on_time=True,
        )  # fmt: skip
        gen_revisit(session, made["closed"], "unsatisfied", bj(2026, 11, 27, 11))
        gen_revisit(session, made["closed_before"], "satisfied", bj(2026, 11, 10, 11))
        gen_referral(session, bureau.departments[1], sup, bj(2026, 11, 2, 10), 2, "signed")  # overdue elsewhere
    return made


def test_a_department_digest_puts_what_to_do_first_with_links(app, bureau):
    made = digest_world(app, bureau)
    with app.app_context(), session_scope(app) as session:
        d = digests.department_digest(session, bureau.departments[0], "2026-W49", base_url="https://x.cn")
    assert d.as_of == bj(2026, 11, 30, 8)
    shown = {s.key: [i.id for i in s.items] for s in d.sections}
    assert shown == {
        "awaiting_sign": [made["unsigned"].id],
        "overdue": [made["overdue"].id],
        "due_soon": [made["unsigned"].id, made["soon"].id],
        "extensions": [made["extension"].id],
        "returns": [made["return"].id],
        "closed": [made["closed"].id],
    }
    overdue = d.section("overdue").items[0]
    assert overdue.days_over == 7  # 20, 23, 24, 25, 26, 27, 30 November
    assert overdue.url == f"https://x.cn/referrals/{made['overdue'].id}"
    soon = d.section("due_soon").items[1]
    assert (soon.due_on, soon.days_left) == (D(2026, 12, 3), 3)
    assert d.section("awaiting_sign").items[0].sign_late is True
    assert d.satisfaction == {"不满意": 1}
    assert [i.id for i in d.unsatisfied] == [made["closed"].id]
    assert d.year_rate == "50.0%"

    mail = digests.render_department(d)
    assert mail.subject.startswith(f"【周报】测试局{bureau.codes[0]}交办事项 2026年第49周（11月30日）")
    assert "待签收1件，逾期1件" in mail.subject
    text = mail.text
    order = [
        text.index(t)
        for t in (
            "、待签收（1件）",
            "、已逾期（1件）",
            "、5个工作日内到期",
            "、延期申请",
            "、退回申请",
            "、上周办结",
            "、上周回访",
        )
    ]
    assert order == sorted(order)
    assert "已逾期7个工作日" in text and "申请延期至12月11日" in text and "已解决，逾期办结" in text
    assert f"https://x.cn/referrals/{made['overdue'].id}" in text
    assert mail.html is not None and f'href="https://x.cn/referrals/{made["overdue"].id}"' in mail.html
    # Short enough for a phone.
    assert len(text.splitlines()) < 60


def test_the_bureau_summary_has_the_articles_figures_per_department(app, bureau):
    digest_world(app, bureau)
    with app.app_context(), session_scope(app) as session:
        b = digests.bureau_digest(session, "2026-W49", base_url="https://x.cn")
    # Most actionable first: as many overdue each, so the lower closing rate leads.
    second, first = b.rows
    assert (first.code, first.issued, first.closed, first.on_time, first.overdue) == (bureau.codes[0], 8, 2, 1, 1)
    assert (first.closed_rate, first.on_time_rate, first.satisfied_rate) == ("25.0%", "50.0%", "50.0%")
    assert (second.code, second.overdue, second.closed_rate, second.satisfied_rate) == (bureau.codes[1], 1, "0.0%", "—")
    assert b.totals.issued == 9 and b.totals.overdue == 2
    assert b.sentence.startswith("截至11月30日，今年共交办问题9件，已办结2件，办结率22.2%")
    assert b.pending == 2 and b.section("overdue").total == 2
    mail = digests.render_bureau(b)
    assert mail.subject == "【周报】交办事项汇总 2026年第49周（11月30日）：逾期2件，待审核2件"
    assert "办结率25.0%，按时办结率50.0%，满意率50.0%，逾期1件" in mail.text
    assert "<table" in (mail.html or "")


def test_each_department_gets_one_digest_per_week_however_often_the_job_runs(app, sink, bureau):
    digest_world(app, bureau)
    monday = bj(2026, 11, 30, 8)
    first = digests.send_weekly(app, monday)
    assert sorted(first.sent) == sorted([bureau.codes[0], bureau.codes[1], "supervisors"])
    assert digests.send_weekly(app, monday + dt.timedelta(minutes=5)).skipped == "done"
    assert digests.send_weekly(app, monday + dt.timedelta(days=2)).skipped == "done"
    jobs.send_mail(app, monday + dt.timedelta(days=2))
    assert len(sink.messages) == 3
    assert count(app, DigestSent, DigestSent.week == "2026-W49") == 4  # two departments, supervisors, the week
    # The next week is a new week.
    assert digests.send_weekly(app, monday + dt.timedelta(days=7)).sent


def test_an_empty_digest_is_not_sent(app, sink, bureau):
    report = digests.send_weekly(app, bj(2026, 11, 30, 8))
    assert report.sent == [] and report.empty == 3
    assert count(app, MailMessage) == 0


def run_cli(app, *args: str):
    return app.test_cli_runner().invoke(args=list(args))


def test_digest_preview_prints_text_or_writes_html_and_records_nothing(app, bureau, tmp_path):
    digest_world(app, bureau)
    code = bureau.codes[0]
    result = run_cli(app, "digest-preview", "--department", code, "--week", "2026-W49")
    assert result.exit_code == 0, result.output
    assert "主题：【周报】" in result.output and "已逾期7个工作日" in result.output
    out = tmp_path / "digest.html"
    result = run_cli(app, "digest-preview", "--department", "supervisors", "--week", "2026w49", "--html", str(out))
    assert result.exit_code == 0 and "<table" in out.read_text(encoding="utf-8")
    assert run_cli(app, "digest-preview", "--department", "nope", "--week", "2026-W49").exit_code == 2
    assert run_cli(app, "digest-preview", "--department", code, "--week", "2026-W60").exit_code == 2
    assert count(app, DigestSent) == 0 and count(app, MailMessage) == 0


def test_weeks_parse_and_label():
    assert digests.parse_week("2026w9") == "2026-W09"
    assert digests.send_moment("2026-W48") == bj(2026, 11, 23, 8)
    assert digests.week_label("2026-W48") == "2026年第48周（11月23日）"
    with pytest.raises(ValueError):
        digests.parse_week("2026-11-23")


# --- the calendar warning --------------------------------------------------------------------------


def test_a_year_without_calendar_data_is_warned_about_once_by_mail_and_daily_in_the_log(app, bureau, caplog):
    first = jobs.calendar_check(app, bj(2026, 11, 2, 9))
    assert first.missing == [2027] and first.mails == 1
    assert jobs.calendar_check(app, bj(2026, 11, 3, 9)).mails == 0
    assert "no data for 2027" in caplog.text
    with session_scope(app) as session:
        (mail,) = session.scalars(select(MailMessage))
    assert mail.to_addrs == [ADMIN_EMAIL] and "2027年节假日数据缺失" in mail.subject
    assert jobs.calendar_check(app, bj(2026, 6, 1, 9)).missing == []


# --- scheduling --------------------------------------------------------------------------------------


def test_last_fire_times_and_catch_up(app):
    specs = {s.id: s for s in job_specs(app.config)}
    digest = specs["weekly-digest"]
    assert last_fire_time(digest.trigger, bj(2026, 11, 30, 7, 59), digest.grace) == bj(2026, 11, 29, 8)
    assert last_fire_time(digest.trigger, bj(2026, 11, 30, 8), digest.grace) == bj(2026, 11, 30, 8)
    sweep = specs["sweep"]
    assert last_fire_time(sweep.trigger, bj(2026, 11, 30, 9, 7), sweep.grace) == bj(2026, 11, 30, 9, 5)
    assert last_fire_time(sweep.trigger, bj(2026, 11, 30, 22, 0), sweep.grace) is None  # after hours
    now = bj(2026, 11, 30, 9, 7)
    assert [s.id for s in due_jobs(app, now, specs.values())] == [
        "sweep",
        "weekly-digest",
        "calendar-check",
        "cleanup-uploads",
        "send-mail",
    ]
    Scheduler(app).run_once(now)
    assert due_jobs(app, now, specs.values()) == []
    assert [s.id for s in due_jobs(app, now + dt.timedelta(minutes=1), specs.values())] == ["send-mail"]


def test_a_failed_job_is_recorded_and_run_again(app):
    calls = []

    def broken(app, now=None):
        calls.append(now)
        raise RuntimeError("boom")

    (spec,) = [s for s in job_specs(app.config) if s.id == "calendar-check"]
    failing = replace(spec, func=broken)
    scheduler = Scheduler(app, specs=[failing])
    now = bj(2026, 11, 30, 9, 30)
    assert scheduler.run_once(now) == []
    with session_scope(app) as session:
        run = session.get(JobRun, "calendar-check")
        assert run is not None and run.runs == 0 and "boom" in (run.last_error or "")
    assert [s.id for s in due_jobs(app, now, [failing])] == ["calendar-check"]
    Scheduler(app, specs=[spec]).run_once(now)
    with session_scope(app) as session:
        run = session.get(JobRun, "calendar-check")
        assert run is not None and run.runs == 1 and run.last_error is None


# --- the leader lock -------------------------------------------------------------------------------


def test_the_lease_admits_one_leader_and_passes_on_when_released_expired_or_its_process_is_gone(app, db_kind):
    if db_kind != "sqlite":
        pytest.skip("the lease is SQLite's lock")
    a, b = LeaseLeader(app, ttl=60), LeaseLeader(app, ttl=60)
    assert a.acquire() and not b.acquire()
    assert a.check() and not b.check()
    a.release()
    assert b.acquire() and not a.acquire()
    # The holder's lease runs out (a paused process): another takes over, and the holder finds out
    # at its next renewal (a check within a third of the lease trusts the last renewal: nobody can
    # take a lease before it expires).
    with session_scope(app) as session:
        session.execute(update(SchedulerLease).values(expires_at=bj(2020, 1, 1)))
    assert a.acquire() and not b.acquire() and not b.check()
    # The holder's process is gone (same host): taken over at once, without waiting for expiry.
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    with session_scope(app) as session:
        session.execute(update(SchedulerLease).values(holder=f"{socket.gethostname()}:{dead.pid}:x"))
    assert b.acquire() and not a.acquire()
    assert isinstance(leader_for(app), LeaseLeader)


@postgres_only
def test_the_advisory_lock_admits_one_leader_and_passes_on_when_its_session_ends(app, db_url):
    a, b = AdvisoryLockLeader(db_url), AdvisoryLockLeader(db_url)
    try:
        assert a.acquire() and not b.acquire()
        assert a.check() and not b.check()
        # The lock lives in a dedicated session, not in the app's pool or a transaction.
        with app.extensions["db_engine"].connect() as conn:
            holders = conn.execute(
                text(
                    # This database's only: another test worker may hold its own scheduler lock.
                    "SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
                    "WHERE l.locktype = 'advisory' AND l.granted AND a.datname = current_database()"
                )
            ).scalars()
            assert list(holders) == ["fieldvisit-scheduler"]
            # The leader's connection dies (a crash, a cut network): the lock goes with it.
            conn.execute(
                text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() "
                    "AND application_name = 'fieldvisit-scheduler' AND pid <> pg_backend_pid()"
                )
            )
        wait_for(b.acquire, timeout=30, interval=0.05)
        assert not a.check() and not a.held
        assert not a.acquire()
        b.release()
        assert a.acquire()
    finally:
        a.dispose()
        b.dispose()
    assert isinstance(leader_for(app), AdvisoryLockLeader)


# --- real processes ----------------------------------------------------------------------------------


def seed_for_processes(app, departments: int) -> Bureau:
    with session_scope(app) as session:
        bureau = gen_bureau(session, departments=departments)
        for i, dept in enumerate(bureau.departments):
            # Overdue and unsigned: a sign reminder and an escalation each, and a digest.
            gen_referral(session, dept, bureau.supervisor, bj(2026, 11, 23, 10), 2 + i % 2)
    return bureau


@pytest.mark.slow
def test_three_scheduler_processes_run_each_job_exactly_once(app, db_url, sink, tmp_path):
    seed_for_processes(app, departments=6)
    monday = "2026-11-30T09:10:00+08:00"
    logs = [tmp_path / f"scheduler{i}.log" for i in range(3)]
    procs = [
        start_scheduler(db_url, tmp_path / f"inst{i}", "--once", "--wait", "60", "--now", monday, log=logs[i],
                        **sink.config(MAIL_FROM="noreply@bureau.example.cn"))
        for i in range(3)
    ]  # fmt: skip
    for p in procs:
        assert p.wait(timeout=120) == 0
    outputs = [log.read_text() for log in logs]
    ran = [o for o in outputs if "已执行：sweep" in o]
    assert len(ran) == 1, outputs
    assert sum("已执行：无到期任务" in o for o in outputs) == 2, outputs
    with session_scope(app) as session:
        runs = dict(session.execute(select(JobRun.job, JobRun.runs)).all())
    assert runs == {"sweep": 1, "weekly-digest": 1, "calendar-check": 1, "cleanup-uploads": 1, "send-mail": 1}
    # 6 sign reminders + 6 escalations (+ the calendar warning for 2027) and 6 + 1 digests, each once.
    assert count(app, NoticeSent) == 12
    subjects = collections.Counter(m["Subject"] for m in sink.messages)
    assert sum(subjects.values()) == 12 + 7 + 1 and set(subjects.values()) == {1}
    assert count(app, MailMessage, MailMessage.status == "sent") == 20


@pytest.mark.slow
def test_a_scheduler_killed_mid_digest_resumes_without_sending_twice(app, db_url, sink, tmp_path):
    departments = 40
    seed_for_processes(app, departments=departments)
    monday = "2026-11-30T08:00:00+08:00"
    settings = sink.config(MAIL_FROM="noreply@bureau.example.cn")
    first = start_scheduler(db_url, tmp_path / "a", "--once", "--job", "weekly-digest", "--now", monday,
                            log=tmp_path / "a.log", **settings)  # fmt: skip
    wait_for(lambda: count(app, DigestSent) >= 3 or first.poll() is not None, timeout=120, interval=0.001)
    os.kill(first.pid, signal.SIGSTOP)  # freeze it where it is, look, then kill it
    recorded = count(app, DigestSent)
    os.kill(first.pid, signal.SIGKILL)
    first.wait(timeout=30)
    assert 0 < recorded < departments, "the first process should have been killed halfway through the digests"
    assert count(app, DigestSent, DigestSent.recipient == digests.WEEK_DONE) == 0
    # Restarted: it catches up the unfinished digest run and sends everything queued, once.
    second = start_scheduler(db_url, tmp_path / "b", "--once", "--wait", "60", "--now", "2026-11-30T08:20:00+08:00",
                             log=tmp_path / "b.log", **settings)  # fmt: skip
    assert second.wait(timeout=120) == 0, (tmp_path / "b.log").read_text()
    assert "weekly-digest" in (tmp_path / "b.log").read_text()
    assert count(app, DigestSent) == departments + 2  # every department, the supervisors, the week
    to = collections.Counter(
        tuple(a.addr_spec for a in m["To"].addresses) for m in sink.messages if m["Subject"].startswith("【周报】")
    )
    assert len(to) == departments + 1 and set(to.values()) == {1}
    assert count(app, MailMessage, MailMessage.status != "sent") == 0


@pytest.mark.slow
def test_a_standby_scheduler_takes_over_when_the_leader_stops(app, db_url, tmp_path):
    logs = [tmp_path / "one.log", tmp_path / "two.log"]
    one = start_scheduler(db_url, tmp_path / "one", log=logs[0], MAIL_TRANSPORT="file")
    two = None
    try:
        wait_for(lambda: "scheduler: leading" in logs[0].read_text(), timeout=60, interval=0.05)
        two = start_scheduler(db_url, tmp_path / "two", log=logs[1], MAIL_TRANSPORT="file")
        wait_for(lambda: "standing by" in logs[1].read_text(), timeout=60, interval=0.05)
        wait_for(lambda: count(app, JobRun, JobRun.job == "send-mail", JobRun.runs > 0), timeout=60, interval=0.05)
        one.send_signal(signal.SIGTERM)
        assert one.wait(timeout=60) == 0
        assert "scheduler: stopped" in logs[0].read_text()
        wait_for(lambda: "scheduler: leading" in logs[1].read_text(), timeout=60, interval=0.05)
    finally:
        for p in (one, two):
            if p is not None and p.poll() is None:
                p.send_signal(signal.SIGTERM)
                p.wait(timeout=60)
