"""Issue 4's benchmark: the Monday run — the daily sweep, the weekly digests and handing every mail
to SMTP — at 50 departments, 20,000 referrals and 1,000,000 problems; seconds and peak memory.

    python -m bench.monday --db sqlite|postgresql [--scale small] [--cold]

The data: 250,000 visits with 1,000,000 problems (written with executemany on SQLite, COPY on
PostgreSQL, without search entries: the Monday run never reads them), 20,000 referrals issued
through 2026 — mostly closed, about 2,500 open around the day — with answers, revisits and
satisfaction, 50 departments with staff and heads, supervisors. The system has been running:
Friday's sweep has been made and its mail sent, so Monday finds what a real Monday finds
(`--cold` skips that: the first sweep ever, one notice for every referral that is due anything).
The SQLite file and the PostgreSQL database are built once and copied for each run.

The run itself is a process of its own (its peak RSS is the figure), on Monday 30 November 2026
at 08:00 Beijing time: `jobs.sweep`, `jobs.weekly_digest`, `jobs.send_mail`, exactly as the
scheduler calls them, sending over SMTP to an aiosmtpd sink in this process. Targets: the
whole run under 30 s and under 300 MB.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import random
import resource
import shutil
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from psycopg.types.json import Json
from sqlalchemy import JSON, Connection, Table, event, insert, text, update
from sqlalchemy.orm import configure_mappers

from bench.dataset import libpq, postgres_url
from schemas.enums import ProblemCategory, ProblemOutcome, Role, ServiceCategory, TargetKind
from server import db
from server.db.followup_models import FollowUp, MailMessage, Referral, ReferralCounter, ReferralProblem
from server.db.models import Campaign, Department, Problem, Target, User, Visit
from server.demo import DEPARTMENTS, person_name, problem_text, working_moment
from server.domain.numbering import referral_number
from server.domain.periods import SHANGHAI
from server.domain.workdays import WorkCalendar

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).parent / "results"
DATA_VERSION = 1  # bump when the generated rows change: cached copies are then rebuilt
MONDAY = dt.datetime(2026, 11, 30, 8, 0, tzinfo=SHANGHAI)
FRIDAY = dt.datetime(2026, 11, 27, 18, 0, tzinfo=SHANGHAI)
TARGET_SECONDS = 30.0
TARGET_MB = 300.0
CHUNK = 10_000
CAL = WorkCalendar()


@dataclass(frozen=True)
class Scale:
    name: str
    departments: int
    referrals: int
    problems: int
    problems_per_visit: int = 4

    @property
    def key(self) -> str:
        return f"v{DATA_VERSION}-{self.departments}d-{self.referrals}r-{self.problems}p"


SCALES = {
    "full": Scale("full", 50, 20_000, 1_000_000),
    "small": Scale("small", 10, 2_000, 20_000),
}


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _uuid(rng: random.Random) -> uuid.UUID:
    return uuid.UUID(int=rng.getrandbits(128), version=4)


def _table(model: Any) -> Table:
    table: Table = model.__table__
    return table


class _Writer:
    """Rows in chunks: executemany on SQLite, COPY on PostgreSQL."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.postgres = conn.dialect.name == "postgresql"

    def write(self, table: Table, rows: list[dict[str, Any]]) -> None:
        if not rows:
            return
        if not self.postgres:
            self.conn.execute(insert(table), rows)
            return
        columns = list(rows[0])
        as_json = {c for c in columns if isinstance(table.c[c].type, JSON)}
        raw = self.conn.connection.driver_connection
        assert isinstance(raw, psycopg.Connection)
        with raw.cursor().copy(f"COPY {table.name} ({', '.join(columns)}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row([Json(row[c]) if c in as_json else row[c] for c in columns])


# --- the data set ----------------------------------------------------------------------------


@dataclass
class _People:
    departments: list[uuid.UUID]
    supervisor: uuid.UUID
    cadres: list[uuid.UUID]
    targets: list[uuid.UUID]
    campaign: uuid.UUID


def _directory(writer: _Writer, rng: random.Random, scale: Scale) -> _People:
    now = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    stamp: dict[str, Any] = {"created_at": now, "updated_at": now, "version": 1, "active": True}
    departments: list[dict[str, Any]] = []
    users: list[dict[str, Any]] = []
    names = [(code, name, short) for code, name, short in DEPARTMENTS]
    for n in range(len(names) + 1, scale.departments + 1):
        names.append((f"dept{n:02d}", f"徐州市第{n}承办单位", f"承办单位{n}"))
    password = "$argon2id$v=19$m=8,t=1,p=1$bm9ib2R5$bm9ib2R5bm9ib2R5"  # nobody logs in
    for code, name, short in names[: scale.departments]:
        dept = {
            "id": _uuid(rng),
            "code": code,
            "name": name,
            "short_name": short,
            "email": f"{code}@bench.xz.gov.cn",
            "head_name": person_name(rng),
            "head_email": f"{code}-head@bench.xz.gov.cn",
        } | stamp
        departments.append(dept)
        for k in (1, 2):
            users.append(
                {
                    "id": _uuid(rng),
                    "username": f"{code}-staff{k}",
                    "display_name": person_name(rng),
                    "role": Role.department_staff.value,
                    "department_id": dept["id"],
                    "email": f"{code}-staff{k}@bench.xz.gov.cn",
                    "password_hash": password,
                }
                | stamp
            )
    supervisors: list[dict[str, Any]] = [
        {
            "id": _uuid(rng),
            "username": f"supervisor{k}",
            "display_name": person_name(rng),
            "role": Role.supervisor.value,
            "department_id": None,
            "email": f"duban{k}@bench.xz.gov.cn",
            "password_hash": password,
        }
        | stamp
        for k in range(1, 11)
    ]
    admin = {
        "id": _uuid(rng),
        "username": "admin",
        "display_name": "系统管理员",
        "role": Role.admin.value,
        "department_id": None,
        "email": "admin@bench.xz.gov.cn",
        "password_hash": password,
    } | stamp
    cadres: list[dict[str, Any]] = [
        {
            "id": _uuid(rng),
            "username": f"cadre{k:02d}",
            "display_name": person_name(rng),
            "role": Role.cadre.value,
            "department_id": None,
            "email": None,
            "password_hash": password,
        }
        | stamp
        for k in range(1, 44)
    ]
    targets: list[dict[str, Any]] = [
        {
            "id": _uuid(rng),
            "kind": TargetKind.firm.value,
            "name": f"徐州基准企业（{k:03d}）有限公司",
            "code": f"B{k:04d}",
        }
        | stamp
        for k in range(1, 201)
    ]
    campaign: dict[str, Any] = {
        "id": _uuid(rng),
        "code": "bench-monday",
        "name": "三走进三服务（周一基准）",
        "starts_on": dt.date(2025, 11, 1),
        "ends_on": dt.date(2026, 12, 31),
        "version": 1,
        "created_at": now,
        "updated_at": now,
    }
    writer.write(_table(Department), departments)
    writer.write(_table(User), users + supervisors + [admin] + cadres)
    writer.write(_table(Target), targets)
    writer.write(_table(Campaign), [campaign])
    return _People(
        [d["id"] for d in departments],
        supervisors[0]["id"],
        [c["id"] for c in cadres],
        [t["id"] for t in targets],
        campaign["id"],
    )


def _visits_and_problems(
    writer: _Writer, rng: random.Random, scale: Scale, people: _People
) -> list[tuple[uuid.UUID, uuid.UUID]]:
    """Write the visits and problems; return (problem id, department) of a sample for the referrals."""
    outcomes = [ProblemOutcome.solved, ProblemOutcome.coordinating, ProblemOutcome.deferred, None]
    weights = [2458, 404, 94, 600]
    categories = list(ProblemCategory)
    sample: list[tuple[uuid.UUID, uuid.UUID]] = []
    visits: list[dict[str, Any]] = []
    problems: list[dict[str, Any]] = []
    n_visits = scale.problems // scale.problems_per_visit
    started = time.perf_counter()
    for v in range(n_visits):
        at = working_moment(rng, dt.date(2025, 11, 3), dt.date(2026, 11, 27))
        cadre, target = rng.choice(people.cadres), rng.choice(people.targets)
        visit_id = _uuid(rng)
        visits.append(
            {
                "id": visit_id,
                "campaign_id": people.campaign,
                "cadre_id": cadre,
                "target_id": target,
                "visited_at": at,
                "service_categories": [ServiceCategory.research.value],
                "summary": "走访企业，了解生产经营情况。",
                "version": 1,
                "created_at": at,
                "updated_at": at,
            }
        )
        for position in range(scale.problems_per_visit):
            outcome = rng.choices(outcomes, weights)[0]
            category = rng.choice(categories)
            dept = rng.choice(people.departments)
            problem_id = _uuid(rng)
            problems.append(
                {
                    "id": problem_id,
                    "visit_id": visit_id,
                    "position": position,
                    "campaign_id": people.campaign,
                    "target_id": target,
                    "cadre_id": cadre,
                    "raised_at": at,
                    "category": category.value,
                    "description": problem_text(rng, category),
                    "department_id": dept,
                    "status": "closed" if outcome in (ProblemOutcome.solved, ProblemOutcome.deferred) else "open",
                    "outcome": outcome.value if outcome else None,
                    "outcome_reason": "暂不具备解决条件。" if outcome is ProblemOutcome.deferred else None,
                    "outcome_at": at if outcome else None,
                    "closed_at": at if outcome in (ProblemOutcome.solved, ProblemOutcome.deferred) else None,
                    "version": 1,
                    "created_at": at,
                    "updated_at": at,
                }
            )
            if len(sample) < scale.referrals * 2 and rng.random() < 0.05:
                sample.append((problem_id, dept))
        if len(problems) >= CHUNK:
            writer.write(_table(Visit), visits)
            writer.write(_table(Problem), problems)
            visits.clear()
            problems.clear()
            if (v + 1) % (CHUNK * 5) == 0:
                _say(f"  {(v + 1) * scale.problems_per_visit:,} problems ({time.perf_counter() - started:.0f} s)")
    writer.write(_table(Visit), visits)
    writer.write(_table(Problem), problems)
    return sample


def _referrals(writer: _Writer, rng: random.Random, scale: Scale, people: _People, sample: list[Any]) -> None:
    """20,000 referrals through 2026: the old ones closed, the recent ones in every open state."""
    monday = MONDAY.astimezone(dt.UTC)
    refs: list[dict[str, Any]] = []
    links: list[dict[str, Any]] = []
    revisits: list[dict[str, Any]] = []
    recent = monday - dt.timedelta(days=45)
    open_states = ["issued"] * 20 + ["signed"] * 50 + ["extension_requested"] * 5 + ["return_requested"] * 3
    open_states += ["responded"] * 12 + ["closed"] * 10
    for seq in range(1, scale.referrals + 1):
        problem_id, _ = sample[seq % len(sample)]
        dept = rng.choice(people.departments)
        # Evenly through the year, with the last six weeks busier (a campaign under way).
        last_day = dt.date(2026, 11, 27)
        first_day = dt.date(2026, 10, 19) if rng.random() < 0.12 else dt.date(2026, 1, 5)
        issued = working_moment(rng, first_day, last_day)
        workdays = rng.choice([3, 5, 5, 10, 10, 15, 20])
        deadline = CAL.deadline_at(issued, workdays)
        if issued < recent:
            status = rng.choices(["closed", "cancelled", "signed"], [97, 1, 2])[0]
        else:
            status = rng.choice(open_states)
        row: dict[str, Any] = {
            "id": _uuid(rng),
            "number": referral_number(2026, seq),
            "year": 2026,
            "seq": seq,
            "status": status,
            "lead_department_id": dept,
            "issued_by_id": people.supervisor,
            "issued_at": issued,
            "workdays": workdays,
            "original_deadline": deadline,
            "deadline": deadline,
            "requirements": "请协调解决企业反映的问题，于期限内反馈办理结果；如需延期请提前申请。",
            "signed_at": None,
            "return_to": None,
            "requested_until": None,
            "outcome": None,
            "responded_at": None,
            "closed_at": None,
            "on_time": None,
            "answer": None,
            "pending_reason": None,
            "version": 3,
            "created_at": issued,
            "updated_at": issued,
        }
        if status != "issued":
            row["signed_at"] = issued + dt.timedelta(hours=rng.randint(1, 30))
        if status == "return_requested":
            row["signed_at"], row["return_to"] = None, "issued"
        if status == "extension_requested":
            row["requested_until"] = CAL.add_workdays(deadline.astimezone(SHANGHAI).date(), 5)
        if status in ("responded", "closed"):
            outcome = rng.choices(["solved", "coordinating", "deferred"], [80, 15, 5])[0]
            span = deadline - issued
            answered = issued + span * rng.uniform(0.3, 1.25)
            answered = min(answered, monday - dt.timedelta(hours=1))
            answer: dict[str, Any] = {"outcome": outcome, "done": "已协调相关部门办理，并向企业反馈。"}
            if outcome == "coordinating":
                next_date = (answered + dt.timedelta(days=rng.randint(10, 60))).astimezone(SHANGHAI).date()
                answer |= {"plan": "继续协调，按计划推进。", "next_date": next_date.isoformat()}
            if outcome == "deferred":
                answer["reason"] = "受政策限制，暂不具备解决条件。"
            row |= {"outcome": outcome, "responded_at": answered, "answer": answer}
            if status == "closed":
                closed = min(answered + dt.timedelta(hours=rng.randint(2, 60)), monday - dt.timedelta(minutes=30))
                row |= {"closed_at": closed, "on_time": closed <= deadline}
                if outcome == "solved" and rng.random() < 0.7 and closed < monday - dt.timedelta(days=3):
                    done = min(closed + dt.timedelta(days=rng.randint(3, 10)), monday - dt.timedelta(hours=2))
                    satisfaction = rng.choices(["satisfied", "basically_satisfied", "unsatisfied"], [80, 15, 5])[0]
                    revisits.append(
                        {
                            "id": _uuid(rng),
                            "kind": "revisit",
                            "status": "done",
                            "assignee_id": rng.choice(people.cadres),
                            "department_id": dept,
                            "referral_id": row["id"],
                            "problem_id": problem_id,
                            "target_id": None,
                            "title": f"回访：{row['number']}",
                            "due_on": done.date(),
                            "completed_at": done,
                            "satisfaction": satisfaction,
                            "result_note": None,
                            "version": 2,
                            "created_at": closed,
                            "updated_at": done,
                        }
                    )
        refs.append(row)
        links.append({"id": _uuid(rng), "referral_id": row["id"], "problem_id": problem_id})
    writer.write(_table(Referral), refs)
    writer.write(_table(ReferralProblem), links)
    writer.write(_table(FollowUp), revisits)
    writer.conn.execute(insert(_table(ReferralCounter)), [{"year": 2026, "last_seq": scale.referrals}])


def build(url: str, scale: Scale, *, seed: int = 2026) -> None:
    """Migrate the empty database at `url` and fill it."""
    db.upgrade(url)
    rng = random.Random(seed)
    engine = db.make_engine(url)
    if engine.dialect.name == "sqlite":
        # A file being built is thrown away if the build fails: no need to fsync every commit.
        event.listen(engine, "connect", lambda dbapi_conn, _record: dbapi_conn.execute("PRAGMA synchronous=OFF"))
    started = time.perf_counter()
    try:
        with engine.begin() as conn:
            writer = _Writer(conn)
            people = _directory(writer, rng, scale)
            sample = _visits_and_problems(writer, rng, scale, people)
            _referrals(writer, rng, scale, people, sample)
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            if conn.dialect.name == "postgresql":
                conn.exec_driver_sql("VACUUM ANALYZE")
            else:
                conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        engine.dispose()
    _say(f"  built in {time.perf_counter() - started:.0f} s")


def _friday(url: str) -> None:
    """Friday's sweep, its mail marked sent: the state a running system is in on Monday morning."""
    from server import create_app
    from server.services import notices

    app = create_app({"DATABASE_URL": url, "SECRET_KEY": "bench", "LOG_LEVEL": "WARNING"})
    try:
        notices.sweep(app, FRIDAY.astimezone(dt.UTC))
        with db.session_scope(app) as session:
            session.execute(update(MailMessage).values(status="sent", sent_at=FRIDAY.astimezone(dt.UTC)))
    finally:
        app.extensions["db_engine"].dispose()


def prepare(kind: str, scale: Scale, *, cold: bool) -> str:
    """A fresh copy of the cached data set (built first if missing); its URL."""
    variant = f"{scale.key}-{'cold' if cold else 'warm'}"
    if kind == "sqlite":
        cache = RESULTS / f"monday-{variant}.db"
        if not cache.exists():
            RESULTS.mkdir(parents=True, exist_ok=True)
            building = cache.with_suffix(".building")
            for leftover in RESULTS.glob(building.name + "*"):
                leftover.unlink()
            _say(f"building {cache.name} (cached for later runs)")
            build(f"sqlite:///{building}", scale)
            if not cold:
                _friday(f"sqlite:///{building}")
            building.rename(cache)
        work = RESULTS / "monday-work.db"
        for old in RESULTS.glob(work.name + "*"):
            old.unlink()
        shutil.copyfile(cache, work)
        url = f"sqlite:///{work}"
        db.upgrade(url)
        return url
    if kind != "postgresql":
        raise ValueError(f"database must be sqlite or postgresql, not {kind!r}")
    conninfo = libpq()
    template = f"bench_monday_{variant.replace('-', '_')}"
    work_db = "bench_monday_work"
    with psycopg.connect(conninfo, autocommit=True, connect_timeout=5) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (template,)).fetchone()
        if not exists:
            _say(f"building PostgreSQL database {template} (kept as a template for later runs)")
            conn.execute(f'CREATE DATABASE "{template}_building"')
            url = postgres_url(f"{template}_building")
            build(url, scale)
            if not cold:
                _friday(url)
            conn.execute(f'ALTER DATABASE "{template}_building" RENAME TO "{template}"')
        conn.execute(f'DROP DATABASE IF EXISTS "{work_db}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{work_db}" TEMPLATE "{template}"')
    url = postgres_url(work_db)
    db.upgrade(url)
    return url


# --- the run -----------------------------------------------------------------------------------


class _Sink:
    """An aiosmtpd server on loopback that counts what it is handed (in this, the driver's, process)."""

    def __init__(self) -> None:
        from aiosmtpd.controller import Controller

        self.messages = 0
        self.bytes = 0
        self.lock = threading.Lock()
        port = _free_port()
        self.controller = Controller(self, hostname="127.0.0.1", port=port)
        self.port = port

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        with self.lock:
            self.messages += 1
            self.bytes += len(envelope.content)
        return "250 OK"

    def __enter__(self) -> _Sink:
        self.controller.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.controller.stop()


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child(url: str, smtp_port: int) -> dict[str, Any]:
    """The Monday run, in this process: what the scheduler does at 08:00, phase by phase."""
    from server import create_app
    from server.jobs import jobs

    app = create_app(
        {
            "DATABASE_URL": url,
            "SECRET_KEY": "bench",
            "LOG_LEVEL": "WARNING",
            "PUBLIC_BASE_URL": "https://fieldvisit.xz.gov.cn",
            "MAIL_TRANSPORT": "smtp",
            "SMTP_HOST": "127.0.0.1",
            "SMTP_PORT": smtp_port,
            "SMTP_SECURITY": "none",
            "MAIL_FROM": "三走进三服务 <noreply@xz.gov.cn>",
        }
    )
    now = MONDAY.astimezone(dt.UTC)
    # What a long-running scheduler did once at start-up: configure the ORM, open a connection.
    configure_mappers()
    with db.read_session(app) as session:
        session.execute(text("SELECT 1"))
    result: dict[str, Any] = {"baseline_mb": _peak_mb()}
    started = time.perf_counter()
    t = time.perf_counter()
    sweep = jobs.sweep(app, now)
    result["sweep"] = {
        "seconds": time.perf_counter() - t,
        "referrals": sweep.referrals,
        "notices": sweep.notices,
        "mails": sweep.mails,
        "progress_checks": sweep.progress_checks,
        "by_kind": sweep.by_kind,
    }
    t = time.perf_counter()
    digest = jobs.weekly_digest(app, now + dt.timedelta(seconds=1))
    result["digest"] = {"seconds": time.perf_counter() - t, "queued": len(digest.sent), "empty": digest.empty}
    t = time.perf_counter()
    sent = jobs.send_mail(app, now + dt.timedelta(seconds=2))
    result["send"] = {"seconds": time.perf_counter() - t, "sent": sent.sent, "retrying": sent.retrying}
    result["total_seconds"] = time.perf_counter() - started
    result["peak_mb"] = _peak_mb()
    result["cpu_seconds"] = (
        resource.getrusage(resource.RUSAGE_SELF).ru_utime + resource.getrusage(resource.RUSAGE_SELF).ru_stime
    )
    app.extensions["db_engine"].dispose()
    return result


def run(kind: str, scale: Scale, *, cold: bool) -> dict[str, Any]:
    url = prepare(kind, scale, cold=cold)
    counts = _counts(url)
    with _Sink() as sink:
        cmd = [sys.executable, "-m", "bench.monday", "--child", url, "--smtp-port", str(sink.port)]
        load_before = os.getloadavg()[0]
        out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=False)
        if out.returncode != 0:
            raise RuntimeError(f"the Monday run failed:\n{out.stderr[-3000:]}")
        result = json.loads(out.stdout.strip().splitlines()[-1])
        result["sink_messages"] = sink.messages
        result["sink_mb"] = round(sink.bytes / 1e6, 2)
    result |= {
        "db": kind,
        "scale": scale.name,
        "cold": cold,
        "rows": counts,
        "load_average_before": load_before,
        "pass_seconds": result["total_seconds"] < TARGET_SECONDS,
        "pass_memory": result["peak_mb"] < TARGET_MB,
    }
    return result


def _counts(url: str) -> dict[str, int]:
    engine = db.make_engine(url)
    try:
        with engine.connect() as conn:
            found = {}
            for t in ("departments", "problems", "referrals", "followups"):
                found[t] = int(conn.scalar(text(f"SELECT count(*) FROM {t}")) or 0)
            found["open_referrals"] = int(
                conn.scalar(text("SELECT count(*) FROM referrals WHERE status NOT IN ('closed', 'cancelled')")) or 0
            )
            return found
    finally:
        engine.dispose()


def report(r: dict[str, Any]) -> Iterator[str]:
    ok = "✓" if r["pass_seconds"] and r["pass_memory"] else "✗"
    yield (
        f"{r['db']} ({r['scale']}{', cold' if r['cold'] else ''}): {r['rows']['referrals']:,} referrals "
        f"({r['rows']['open_referrals']:,} open), {r['rows']['problems']:,} problems, "
        f"{r['rows']['departments']} departments"
    )
    s, d, m = r["sweep"], r["digest"], r["send"]
    yield f"  sweep      {s['seconds']:6.2f} s  {s['referrals']:,} read, {s['notices']} notices, {s['mails']} mails"
    yield f"  digests    {d['seconds']:6.2f} s  {d['queued']} queued ({d['empty']} with nothing to report)"
    yield f"  send       {m['seconds']:6.2f} s  {m['sent']} handed to SMTP (sink received {r['sink_messages']})"
    yield (
        f"  total      {r['total_seconds']:6.2f} s  (target < {TARGET_SECONDS:.0f} s), peak RSS {r['peak_mb']:.0f} MB "
        f"(target < {TARGET_MB:.0f} MB; {r['baseline_mb']:.0f} MB after start-up)  {ok}"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.monday", description=__doc__.splitlines()[0])
    parser.add_argument("--db", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--scale", choices=sorted(SCALES), default="full")
    parser.add_argument("--cold", action="store_true", help="no sweep before: the first Monday ever")
    parser.add_argument("--child", metavar="URL", help=argparse.SUPPRESS)
    parser.add_argument("--smtp-port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.child, args.smtp_port), default=str))
        return
    result = run(args.db, SCALES[args.scale], cold=args.cold)
    RESULTS.mkdir(parents=True, exist_ok=True)
    name = f"monday-{args.db}-{args.scale}{'-cold' if args.cold else ''}.json"
    (RESULTS / name).write_text(json.dumps(result, indent=2, default=str, ensure_ascii=False))
    print("\n".join(report(result)))


if __name__ == "__main__":
    main()
