"""Issue 5's benchmark: server time of the console's busiest pages at 100,000 visits / 300,000 problems.

    python -m bench.console [--db sqlite|postgresql] [--referrals N] [--reps N] [--profile KEY] [--json FILE]

The data set is bench/dataset.py's, plus N referrals (2,000 by default) issued and moved through
the workflow by the real services, with moments spread over the year so that some are closed,
some open and some overdue. Pages are fetched in-process (app.test_client(), logged in to the
console as a supervisor through the login form), so a timing holds the whole request: session,
routing, the services' SQL, the Jinja rendering. Each figure is printed beside a baseline
measured in the same run (GET /api/v1/version) and the machine's load average.
"""

from __future__ import annotations

import argparse
import cProfile
import datetime as dt
import json
import os
import pstats
import random
import re
import secrets
import shutil
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import event, func, select, update
from sqlalchemy.orm import Session

from bench import dataset, foundation
from bench.stats import percentile
from schemas.enums import ProblemCategory, ProblemStatus, Role
from server import create_app, db, settle
from server.db.followup_models import Referral
from server.db.models import Campaign, Department, Problem, User
from server.demo import CATEGORY_DEPARTMENT
from server.domain.referrals import ReferralAction as A
from server.services import referrals as referral_service
from server.services.actors import Actor
from server.services.auth import hash_password
from server.services.calendar import load_calendar

TARGET_MS = 150.0
MIN_REPS = 20
DEFAULT_REFERRALS = 2_000
PASSWORD = "bench-console-password"
NOW = dt.datetime.now(dt.UTC)
# Each referral ends in one of these states (weights); open ones are recent, as in a running year.
ENDINGS = {"closed": 40, "signed": 20, "issued": 12, "responded": 10, "extension_requested": 5,
           "return_requested": 5, "cancelled": 3, "coordinating": 5}  # fmt: skip
WORDS = ["融资", "用工", "住房", "审批", "关税"]
_TOKEN = re.compile(r'name="csrf_token" value="([^"]+)"')


@dataclass
class Measure(foundation.Measure):
    """A page's timings (bench/foundation.py's), with the CPU p95 and the SQL statements of one request."""

    target_ms: float | None = TARGET_MS
    statements: int = 0  # SQL statements of one request (the first URL)

    def summary(self, baseline_p50: float | None) -> dict[str, Any]:
        cpu_p95 = round(percentile(self.cpu, 95) * 1000, 2)
        return super().summary(baseline_p50) | {"cpu_p95_ms": cpu_p95, "statements": self.statements}


# --- the data ----------------------------------------------------------------------------------


def prepare(kind: str, size: dataset.Size, referrals: int) -> str:
    """The data set with `referrals` referrals, on a working copy of its own (cached on SQLite)."""
    if kind == "postgresql":
        url = dataset.prepare_postgresql(size, name="bench_console")
        add_referrals(url, referrals)
        return url
    cache = dataset.RESULTS / f"console-{size.key}-{referrals}r.db"
    if not cache.exists():
        base = dataset.sqlite_cache(size)
        if not base.exists():
            dataset.prepare_sqlite(size)  # builds and caches the visits and problems
        building = cache.with_suffix(".building")
        shutil.copyfile(base, building)
        db.upgrade(f"sqlite:///{building}")
        add_referrals(f"sqlite:///{building}", referrals)
        building.rename(cache)
    work = dataset.RESULTS / f"console-work-{size.key}.db"
    for old in dataset.RESULTS.glob(work.name + "*"):
        old.unlink()
    shutil.copyfile(cache, work)
    url = f"sqlite:///{work}"
    db.upgrade(url)
    return url


def add_referrals(url: str, count: int) -> None:
    """Write the referrals in a process of its own (the services' imports stay out of the timing)."""
    import multiprocessing

    process = multiprocessing.get_context("spawn").Process(target=_add_referrals, args=(url, count))
    process.start()
    process.join()
    if process.exitcode != 0:
        raise SystemExit(f"adding referrals failed (exit code {process.exitcode})")


def _add_referrals(url: str, count: int, seed: int = 5) -> None:
    """Issue `count` referrals through the services and move each to its ending, at past moments."""
    rng = random.Random(seed)
    engine = db.make_engine(url)
    started = time.perf_counter()
    try:
        with Session(engine) as s:
            supervisor = s.scalars(select(User).where(User.role == Role.supervisor)).first()
            assert supervisor is not None
            sup = Actor(supervisor.id, Role.supervisor)
            departments = {d.code: d.id for d in s.scalars(select(Department))}
            staff = {
                u.department_id: Actor(u.id, Role.department_staff, u.department_id)
                for u in s.scalars(select(User).where(User.role == Role.department_staff))
            }
            problems = list(s.execute(select(Problem.id, Problem.category, Problem.raised_at).order_by(Problem.id)))
            calendar = load_calendar(s)
            endings = list(ENDINGS)
            weights = list(ENDINGS.values())
            for i in range(count):
                ending = rng.choices(endings, weights)[0]
                first = rng.choice(problems)
                picked = [first] + [rng.choice(problems) for _ in range(rng.choice((0, 0, 0, 1, 2)))]
                ids = list(dict.fromkeys(p.id for p in picked))
                lead = departments.get(CATEGORY_DEPARTMENT[first.category]) or departments["yingshang"]
                open_ending = ending not in ("closed", "cancelled", "coordinating")
                days_ago = rng.uniform(1, 25) if open_ending else rng.uniform(20, 300)
                at = max(NOW - dt.timedelta(days=days_ago), first.raised_at + dt.timedelta(hours=2))
                co = [] if rng.random() < 0.7 else [rng.choice([d for d in departments.values() if d != lead])]
                data = {"problem_ids": ids, "lead_department_id": lead, "co_department_ids": co,
                        "requirements": "请于期限内协调解决企业反映的问题，并书面反馈办理结果。",
                        "workdays": rng.choice((5, 5, 10, 15))}  # fmt: skip
                referral = referral_service.issue_referral(s, sup, data, now=at, calendar=calendar)
                _drive(s, referral, ending, sup, staff[lead], at, calendar, rng)
                if (i + 1) % 100 == 0:
                    s.commit()
                if (i + 1) % 500 == 0:
                    _say(f"  {i + 1:,} referrals ({time.perf_counter() - started:.0f} s)")
            s.commit()
    finally:
        engine.dispose()


def _drive(s: Session, r: Referral, ending: str, sup: Actor, staff: Actor, at: dt.datetime, cal: Any,
           rng: random.Random) -> None:  # fmt: skip
    """Move a referral to its ending, each step a little later than the one before (never after now)."""
    moment = at

    def step(who: Actor, action: A, **data: Any) -> None:
        nonlocal moment
        moment = min(moment + dt.timedelta(hours=rng.uniform(2, 60)), NOW - dt.timedelta(minutes=1))
        referral_service.act(s, who, r.id, action, data | {"version": r.version}, now=moment, calendar=cal)

    if ending == "issued":
        return
    if ending == "cancelled":
        step(sup, A.cancel, reason="企业已自行解决。")
        return
    if ending == "return_requested":
        step(staff, A.request_return, grounds="该事项不属于本单位职责。")
        return
    step(staff, A.sign)
    if ending == "signed":
        return
    if ending == "extension_requested":
        if moment <= r.deadline:
            until = cal.add_workdays(referral_service.state_of(r).due_day, 5)
            step(staff, A.request_extension, until=until, reason="需协调上级部门。")
        return
    if ending == "coordinating":
        next_date = (moment + dt.timedelta(days=30)).date()
        step(staff, A.respond, outcome="coordinating", done="已召开协调会。", plan="分步推进。", next_date=next_date)
    else:
        step(staff, A.respond, outcome="solved", done="已协调解决，企业认可。")
    if ending == "responded":
        return
    step(sup, A.review, accept=True)


# --- timing ------------------------------------------------------------------------------------


@dataclass
class Fixtures:
    campaigns: list[str]
    departments: list[str]
    referrals: list[str]
    staff_username: str


def fixtures(url: str) -> Fixtures:
    """Ids to vary the URLs with; the supervisor and one department's staff get a known password."""
    engine = db.make_engine(url)
    try:
        with Session(engine) as s, s.begin():
            digest = hash_password(PASSWORD)
            busiest = s.scalar(
                select(Referral.lead_department_id)
                .group_by(Referral.lead_department_id)
                .order_by(func.count().desc(), Referral.lead_department_id)
                .limit(1)
            )
            staff = s.scalars(select(User).where(User.department_id == busiest)).first()
            assert staff is not None
            s.execute(
                update(User).where(User.username.in_(["supervisor", staff.username])).values(password_hash=digest)
            )
            return Fixtures(
                campaigns=[str(c) for c in s.scalars(select(Campaign.id).order_by(Campaign.starts_on))],
                departments=[str(d) for d in s.scalars(select(Department.id).order_by(Department.code))],
                referrals=[str(r) for r in s.scalars(select(Referral.id).order_by(Referral.id).limit(200))],
                staff_username=staff.username,
            )
    finally:
        engine.dispose()


def login(app: Flask, username: str) -> FlaskClient:
    client = app.test_client()
    match = _TOKEN.search(client.get("/login").get_data(as_text=True))
    assert match, "no CSRF token on /login"
    r = client.post("/login", data={"username": username, "password": PASSWORD, "csrf_token": match.group(1)})
    assert r.status_code == 302, f"login as {username} failed: {r.status_code}"
    return client


def measures(fx: Fixtures, reps: int) -> list[Measure]:
    rng = random.Random(7)
    months = []
    day = dataset.FIRST_DAY.replace(day=1)
    while day <= dataset.LAST_DAY:
        months.append(day)
        day = (day + dt.timedelta(days=32)).replace(day=1)

    def window() -> dict[str, str]:
        first = rng.randrange(len(months) - 2)
        last = months[min(len(months) - 1, first + rng.randint(1, 3))] - dt.timedelta(days=1)
        return {"from": months[first].isoformat(), "to": last.isoformat()}

    def q(path: str, **params: str) -> str:
        return f"{path}?{urlencode(params)}" if params else path

    dashboards = ["/dashboard"] + [q("/dashboard", campaign=c) for c in fx.campaigns]
    dashboards += [q("/dashboard", **window()) for _ in range(6)]
    problem_lists = ["/problems"] + [
        q("/problems", category=rng.choice(list(ProblemCategory)).value, status=rng.choice(list(ProblemStatus)).value,
          **window())
        for _ in range(40)
    ]  # fmt: skip
    searches = [q("/problems", q=w) for w in WORDS]
    states = ["issued", "signed", "responded", "closed", "overdue", "extension_requested"]
    referral_lists = ["/referrals"] + [q("/referrals", state=s) for s in states]
    referral_lists += [q("/referrals", department=d) for d in fx.departments]
    return [
        Measure("baseline", "GET /api/v1/version (baseline, no database)", ["/api/v1/version"], None, reps),
        Measure("dashboard", "dashboard (all, a campaign, 1-3 months)", dashboards, TARGET_MS, max(40, reps // 2)),
        Measure("problems", "problem list (first page, filters)", problem_lists, TARGET_MS, reps),
        Measure("problems_search", "problem list, Chinese search", searches, TARGET_MS, reps),
        Measure("referrals", "referral list (all, a state, a department)", referral_lists, TARGET_MS, reps),
        Measure("referral", "one referral's page", [f"/referrals/{r}" for r in fx.referrals], None, reps // 2),
    ]


def _get(client: FlaskClient, url: str) -> tuple[float, float]:
    started, cpu = time.perf_counter(), time.process_time()
    response = client.get(url)
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    if response.status_code != 200:
        raise SystemExit(f"GET {url} answered {response.status_code}: {response.get_data(as_text=True)[:300]}")
    response.close()
    return elapsed, cpu


def count_statements(app: Flask, client: FlaskClient, url: str) -> int:
    seen = 0

    def one(*_args: Any) -> None:
        nonlocal seen
        seen += 1

    engine = app.extensions["db_engine"]
    event.listen(engine, "before_cursor_execute", one)
    try:
        _get(client, url)
    finally:
        event.remove(engine, "before_cursor_execute", one)
    return seen


def time_pages(app: Flask, client: FlaskClient, ms: list[Measure], budget: float, min_reps: int = MIN_REPS) -> None:
    """Time each measure's requests: `reps` of them, or fewer (at least `min_reps`) once `budget` seconds are spent."""
    for m in ms:
        for url in m.urls[: 3 if min_reps >= MIN_REPS else 1]:
            _get(client, url)  # warm up: caches, the connection pool
        m.statements = count_statements(app, client, m.urls[0])
        started = time.perf_counter()
        for i in range(m.reps):
            wall, cpu = _get(client, m.urls[i % len(m.urls)])
            m.timings.append(wall)
            m.cpu.append(cpu)
            if i + 1 >= min_reps and time.perf_counter() - started > budget:
                break
        p50, p95 = percentile(m.timings, 50) * 1000, percentile(m.timings, 95) * 1000
        _say(f"  {m.label:<44} p50 {p50:8.2f} ms  p95 {p95:8.2f} ms  ({m.statements} SQL statements)")


def profile(client: FlaskClient, m: Measure, n: int = 30) -> None:
    """cProfile of `n` requests of one measure: where the time goes, by cumulative time."""
    profiler = cProfile.Profile()
    profiler.enable()
    for i in range(n):
        _get(client, m.urls[i % len(m.urls)])
    profiler.disable()
    print(f"\n=== profile of {n} requests: {m.label}")
    pstats.Stats(profiler, stream=sys.stdout).sort_stats("cumulative").print_stats(35)


# --- the run -----------------------------------------------------------------------------------


def run(
    kind: str,
    size: dataset.Size,
    referrals: int,
    reps: int,
    profile_key: str | None,
    budget: float = 120.0,
    min_reps: int = MIN_REPS,
    only: set[str] | None = None,
) -> dict[str, Any]:
    _say(f"[{kind}] preparing {size.visits:,} visits / {size.problems:,} problems / {referrals:,} referrals")
    url = prepare(kind, size, referrals)
    counts = dataset.counts(url)
    engine = db.make_engine(url)
    with engine.connect() as conn:
        counts["referrals"] = int(conn.scalar(select(func.count()).select_from(Referral)) or 0)
    engine.dispose()
    fx = fixtures(url)
    # As wsgi.py makes a gunicorn worker's app.
    app = settle(create_app({"DATABASE_URL": url, "LOG_LEVEL": "WARNING", "SECRET_KEY": secrets.token_hex(16)}))
    client = login(app, "supervisor")
    ms = [m for m in measures(fx, reps) if only is None or m.key in only or m.key == "baseline"]
    staff = login(app, fx.staff_username)
    inbox = Measure("inbox", f"department inbox ({fx.staff_username})", ["/inbox"], None, max(20, reps // 4))
    load = {"before": os.getloadavg()[0]}
    started = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    _say(f"[{kind}] timing pages in-process (load average {load['before']:.2f}, {os.cpu_count()} CPUs)")
    time_pages(app, client, ms, budget, min_reps)
    if only is None or "inbox" in only:
        time_pages(app, staff, [inbox], budget, min_reps)
        ms.append(inbox)
    load["after"] = os.getloadavg()[0]
    if profile_key:
        profile(staff if profile_key == "inbox" else client, next(m for m in ms if m.key == profile_key))
    app.extensions["db_engine"].dispose()
    baseline = percentile(ms[0].timings, 50) * 1000
    return {
        "database": kind,
        "counts": counts,
        "started": started,
        "cpus": os.cpu_count(),
        "load_average": {k: round(v, 2) for k, v in load.items()},
        "budget_s": budget,
        "min_reps": min_reps,
        "pages": [m.summary(baseline) for m in ms],
    }


def report(result: dict[str, Any]) -> Iterator[str]:
    c = result["counts"]
    yield (f"Issue 5 console benchmark: {result['database']}, {c['visits']:,} visits, {c['problems']:,} problems, "
           f"{c['referrals']:,} referrals, {result['cpus']} CPUs"
           )  # fmt: skip
    la = result["load_average"]
    yield f"load average (1 min): {la['before']} before, {la['after']} after"
    yield (f"{'page':<44} {'n':>5} {'p50 ms':>8} {'p95 ms':>8} {'CPU p50':>8} {'CPU p95':>8} {'SQL':>4} "
           f"{'x base':>7} {'target':>8}  verdict")  # fmt: skip
    for p in result["pages"]:
        target = f"<{p['target_p95_ms']:.0f} ms" if p["target_p95_ms"] else ""
        verdict = "" if p["pass"] is None else ("pass" if p["pass"] else "MISS")
        base = p["x_baseline_p50"] or ""
        yield (f"{p['label']:<44} {p['n']:>5} {p['p50_ms']:>8.2f} {p['p95_ms']:>8.2f} {p['cpu_p50_ms']:>8.2f} "
               f"{p['cpu_p95_ms']:>8.2f} {p['statements']:>4} {base:>7} {target:>8}  {verdict}")  # fmt: skip


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.console", description=__doc__.splitlines()[0])
    parser.add_argument("--db", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--visits", type=int, default=dataset.DEFAULT_VISITS)
    parser.add_argument("--problems", type=int, default=dataset.DEFAULT_PROBLEMS)
    parser.add_argument("--referrals", type=int, default=DEFAULT_REFERRALS)
    parser.add_argument("--reps", type=int, default=200, help="timed requests per page measure")
    parser.add_argument(
        "--budget", type=float, default=120.0, help=f"seconds per measure, then stop (after at least {MIN_REPS})"
    )
    parser.add_argument("--profile", help="after timing, profile one measure (dashboard, problems, referrals …)")
    parser.add_argument("--min-reps", type=int, default=MIN_REPS, help="timed requests per measure at least")
    parser.add_argument("--only", help="comma-separated measures to time (dashboard,problems,referrals,inbox …)")
    parser.add_argument("--json", type=Path, help="also write the results to this file")
    args = parser.parse_args(argv)
    size = dataset.Size(args.visits, args.problems)
    only = set(args.only.split(",")) if args.only else None
    result = run(args.db, size, args.referrals, args.reps, args.profile, args.budget, args.min_reps, only)
    if args.json:
        args.json.write_text(json.dumps(result, ensure_ascii=False, indent=2), encoding="utf-8")
    print("\n".join(report(result)))


if __name__ == "__main__":
    main()
