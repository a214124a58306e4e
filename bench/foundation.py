"""Issue 2's benchmark: lists, search and the summary report at 100,000 visits / 300,000 problems,
and visit POSTs per second on gunicorn against the app's trivial JSON endpoint (its ceiling).

    python -m bench.foundation --db sqlite|postgresql [--visits N --problems N] [--explain]

Query timings run in-process (app.test_client(), a supervisor's bearer token), so they hold the
whole request: routing, auth, argument schema, SQL, serialisation. Throughput runs against
`gunicorn -w 2` from a separate load-generator process (bench/loadgen.py). Every figure is
printed beside a baseline measured in the same run: GET /api/v1/version.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import random
import secrets
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import event, select
from sqlalchemy.orm import Session

from bench import dataset, loadgen
from bench.stats import percentile
from schemas.enums import ProblemCategory, ProblemStatus, Role
from server import create_app, db, settle
from server.db.models import AuthToken, Campaign, Device, Target, User
from server.db.types import utcnow
from server.services.auth import token_digest

ROOT = Path(__file__).resolve().parent.parent
LIST_TARGET_MS = 50.0
SUMMARY_TARGET_MS = 200.0
POST_TARGET_RATIO = 0.5
POST_CADRES = 8
PROBLEM_WORDS = ["融资", "用工", "住房", "用地", "审批", "环保", "关税", "税收", "物流"]
VISIT_WORDS = ["用工", "环保", "项目", "订单", "研发", "政策"]
LONGER = [("problems", "人才住房"), ("problems", "融资难融资贵"), ("visits", "技术改造"), ("visits", "生产经营情况")]
# Rare terms: the number in a firm's and a project's name, so in about 900 of the 100,000 visits.
RARE = ["（007）", "（023）", "（042）", "（058）", "（077）", "（091）"]


@dataclass
class Measure:
    key: str
    label: str
    urls: list[str]
    target_ms: float | None = None
    reps: int = 0
    timings: list[float] = field(default_factory=list)
    # CPU seconds of this process per request: nearly all the work on SQLite, the app's share on
    # PostgreSQL. Unlike wall time it barely moves when other programs load the machine.
    cpu: list[float] = field(default_factory=list)

    def summary(self, baseline_p50: float | None) -> dict[str, Any]:
        p50, p95 = percentile(self.timings, 50) * 1000, percentile(self.timings, 95) * 1000
        return {
            "key": self.key,
            "label": self.label,
            "n": len(self.timings),
            "p50_ms": round(p50, 2),
            "p95_ms": round(p95, 2),
            "cpu_p50_ms": round(percentile(self.cpu, 50) * 1000, 2),
            "x_baseline_p50": round(p50 / baseline_p50, 1) if baseline_p50 else None,
            "target_p95_ms": self.target_ms,
            "pass": None if self.target_ms is None else p95 < self.target_ms,
        }


@dataclass
class Fixtures:
    supervisor_token: str
    cadre_tokens: list[str]
    cadres: list[str]
    campaigns: list[str]
    targets: list[tuple[str, str]]


def _token(session: Session, user: User) -> str:
    """A bearer token on a new device, stored the way login stores it (logins are rate-limited)."""
    device = Device(user_id=user.id, name="bench")
    session.add(device)
    session.flush()
    token = secrets.token_urlsafe(32)
    session.add(AuthToken(token_hash=token_digest(token), user_id=user.id, device_id=device.id,
                          expires_at=utcnow() + dt.timedelta(days=1)))  # fmt: skip
    return token


def fixtures(url: str) -> Fixtures:
    engine = db.make_engine(url)
    try:
        with Session(engine) as s, s.begin():
            supervisor = s.scalars(select(User).where(User.role == Role.supervisor)).first()
            assert supervisor is not None, "the data set has a supervisor"
            cadres = list(s.scalars(select(User).where(User.role == Role.cadre).order_by(User.username)))
            return Fixtures(
                supervisor_token=_token(s, supervisor),
                cadre_tokens=[_token(s, c) for c in cadres[:POST_CADRES]],
                cadres=[str(c.id) for c in cadres],
                campaigns=[str(c) for c in s.scalars(select(Campaign.id).order_by(Campaign.starts_on))],
                targets=[(str(i), n) for i, n in s.execute(select(Target.id, Target.name).where(Target.active))],
            )
    finally:
        engine.dispose()


def _months() -> list[dt.date]:
    day, months = dataset.FIRST_DAY.replace(day=1), []
    while day <= dataset.LAST_DAY:
        months.append(day)
        day = (day + dt.timedelta(days=32)).replace(day=1)
    return months


def measures(fx: Fixtures, reps: int) -> list[Measure]:
    """What is timed, each with varied parameters (cycled through, in a fixed shuffled order)."""
    rng = random.Random(7)
    months = _months()

    def window() -> dict[str, str]:
        first = rng.randrange(len(months) - 2)
        last = months[min(len(months) - 1, first + rng.randint(1, 3))] - dt.timedelta(days=1)
        return {"from": months[first].isoformat(), "to": last.isoformat()}

    def q(path: str, **params: str) -> str:
        return f"/api/v1/{path}?{urlencode(params)}"

    filtered = [
        q("problems", category=rng.choice(list(ProblemCategory)).value,
          status=rng.choice(list(ProblemStatus)).value, **window())
        for _ in range(60)
    ]  # fmt: skip
    summary_reps = max(10, reps // 4)
    return [
        Measure("baseline", "GET /version (baseline, no database)", ["/api/v1/version"], reps=reps),
        # What any authenticated request costs before its own work: the token's lookup, the
        # request's session. A POST pays it too; the ceiling (GET /version) does not.
        Measure("auth_only", "GET /auth/me (authenticated, writes nothing)", ["/api/v1/auth/me"], reps=reps),
        Measure("list_problems", "list problems: category+status+dates", filtered, LIST_TARGET_MS, reps),
        Measure("list_visits", "list visits of one cadre", [q("visits", cadre=c) for c in fx.cadres],
                LIST_TARGET_MS, reps),
        Measure("search_problems", "search problems, 2-char word", [q("problems", q=w) for w in PROBLEM_WORDS],
                LIST_TARGET_MS, reps),
        Measure("search_visits", "search visits, 2-char word", [q("visits", q=w) for w in VISIT_WORDS],
                LIST_TARGET_MS, reps),
        Measure("search_longer", "search, longer phrase", [q(p, q=w) for p, w in LONGER], LIST_TARGET_MS, reps),
        Measure("search_rare", "search visits, rare term (a firm's number)", [q("visits", q=w) for w in RARE],
                LIST_TARGET_MS, reps),
        Measure("summary_all", "summary report, all 12 months", ["/api/v1/reports/summary"], SUMMARY_TARGET_MS,
                summary_reps),
        Measure("summary_campaign", "summary report, one campaign",
                [q("reports/summary", campaign=c) for c in fx.campaigns], SUMMARY_TARGET_MS, summary_reps),
    ]  # fmt: skip


def _get(client: FlaskClient, url: str, headers: dict[str, str]) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of one GET, which must answer 200."""
    started, cpu = time.perf_counter(), time.process_time()
    response = client.get(url, headers=headers)
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    if response.status_code != 200:
        raise SystemExit(f"GET {url} answered {response.status_code}: {response.get_data(as_text=True)[:300]}")
    return elapsed, cpu


def _post_visit(client: FlaskClient, body: bytes, headers: dict[str, str]) -> tuple[float, float]:
    started, cpu = time.perf_counter(), time.process_time()
    response = client.post("/api/v1/visits", data=body, headers=headers)
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    if response.status_code != 201:
        raise SystemExit(
            f"POST /api/v1/visits answered {response.status_code}: {response.get_data(as_text=True)[:300]}"
        )
    return elapsed, cpu


def time_queries(app: Flask, fx: Fixtures, ms: list[Measure], *, progress: bool = True) -> None:
    client = app.test_client()
    headers = {"Authorization": f"Bearer {fx.supervisor_token}"}
    for m in ms:
        for url in m.urls[:3]:  # warm up: caches, the token's first-use write, connection pool
            _get(client, url, headers)
        _record(m, (_get(client, m.urls[i % len(m.urls)], headers) for i in range(m.reps)))
        if progress:
            _report_progress(m)


def _record(m: Measure, samples: Iterator[tuple[float, float]]) -> None:
    for wall, cpu in samples:
        m.timings.append(wall)
        m.cpu.append(cpu)


def _report_progress(m: Measure) -> None:
    p50, p95, cpu = (percentile(v, q) * 1000 for v, q in ((m.timings, 50), (m.timings, 95), (m.cpu, 50)))
    _say(f"  {m.label:<42} p50 {p50:8.2f} ms  p95 {p95:8.2f} ms  (CPU p50 {cpu:.2f} ms)")


def time_posts(app: Flask, fx: Fixtures, reps: int) -> Measure:
    """Visit POSTs in-process, one at a time: what one costs without HTTP or a second worker."""
    m = Measure("post_visit", "POST /visits in-process (1-3 problems)", ["/api/v1/visits"], reps=reps)
    client, rng = app.test_client(), random.Random(11)
    lf = loadgen.Fixtures({"cadre_tokens": fx.cadre_tokens, "campaign_ids": fx.campaigns, "targets": fx.targets})
    headers = {"Authorization": f"Bearer {fx.cadre_tokens[0]}", "Content-Type": "application/json"}
    for _ in range(3):
        _post_visit(client, loadgen.visit_body(rng, lf), headers)
    _record(m, (_post_visit(client, loadgen.visit_body(rng, lf), headers) for _ in range(reps)))
    _report_progress(m)
    return m


def explain(app: Flask, fx: Fixtures, ms: list[Measure]) -> None:
    """Print each SELECT of one request per measure with its query plan (EXPLAIN [QUERY PLAN | ANALYZE])."""
    engine = db.make_engine(app.config["DATABASE_URL"])
    app_engine = app.extensions["db_engine"]
    statements: list[tuple[str, Any]] = []

    def collect(_conn: Any, _cursor: Any, statement: str, parameters: Any, _context: Any, _many: bool) -> None:
        if statement.lstrip().upper().startswith("SELECT"):
            statements.append((statement, parameters))

    client = app.test_client()
    headers = {"Authorization": f"Bearer {fx.supervisor_token}"}
    prefix = "EXPLAIN QUERY PLAN " if engine.dialect.name == "sqlite" else "EXPLAIN (ANALYZE, BUFFERS) "
    for m in ms:
        if m.key == "baseline":
            continue
        _get(client, m.urls[0], headers)  # the token's touch and caches first
        statements.clear()
        event.listen(app_engine, "before_cursor_execute", collect)
        try:
            _get(client, m.urls[0], headers)
        finally:
            event.remove(app_engine, "before_cursor_execute", collect)
        print(f"\n=== {m.label}: GET {m.urls[0]}")
        with engine.connect() as conn:
            for statement, parameters in statements:
                if "auth_tokens" in statement:
                    continue
                print("--", " ".join(statement.split()))
                for row in conn.exec_driver_sql(prefix + statement, parameters):
                    print("   ", " | ".join(str(v) for v in row))
    engine.dispose()


# --- throughput on gunicorn ------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Gunicorn:
    """`gunicorn -w 2 wsgi:app` on a loopback port, DATABASE_URL from the environment."""

    def __init__(self, url: str, log: Path, workers: int = 2) -> None:
        self.port = _free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        env = os.environ | {"DATABASE_URL": url, "LOG_LEVEL": "WARNING"}
        gunicorn = Path(sys.executable).with_name("gunicorn")
        self.log = log.open("w")
        self.process = subprocess.Popen(
            [str(gunicorn), "-w", str(workers), "-b", f"127.0.0.1:{self.port}", "--no-control-socket", "wsgi:app"],
            cwd=ROOT, env=env, stdout=self.log, stderr=subprocess.STDOUT,
        )  # fmt: skip

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise SystemExit(f"gunicorn exited with {self.process.returncode}; see {self.log.name}")
            try:
                with urllib.request.urlopen(self.base + "/healthz", timeout=2) as r:
                    if r.status == 200:
                        return
            except OSError:
                time.sleep(0.2)
        raise SystemExit(f"gunicorn did not answer /healthz within {timeout:.0f} s")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.log.close()


def _loadgen(
    base: str, mode: str, *, clients: int, seconds: float, max_requests: int, fixtures_file: str | None
) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "bench.loadgen", "--url", base, "--mode", mode, "--clients", str(clients),
           "--seconds", str(seconds), "--max-requests", str(max_requests)]  # fmt: skip
    if fixtures_file:
        cmd += ["--fixtures", fixtures_file]
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=seconds + 120, check=False)
    if out.returncode != 0:
        raise SystemExit(f"load generator failed:\n{out.stderr}")
    result: dict[str, Any] = json.loads(out.stdout)
    if result["ok"] != result["requests"] or result["failures"]:
        failures = f"{result['failures']} failures ({result['first_failure']})"
        _say(f"  warning: {mode}: statuses {result['statuses']}, {failures}")
    return result


def throughput(url: str, kind: str, fx: Fixtures, *, clients: int, seconds: float, max_requests: int) -> dict[str, Any]:
    """Requests per second of GET /version (the ceiling) and of POST /visits, same server, same run."""
    server = Gunicorn(url, dataset.RESULTS / f"gunicorn-{kind}.log")
    try:
        server.wait_ready()
        with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False, encoding="utf-8") as f:
            json.dump({"cadre_tokens": fx.cadre_tokens, "campaign_ids": fx.campaigns, "targets": fx.targets}, f)
        try:
            # A short warm-up of each, then the measured runs.
            for mode in ("version", "me", "post-visit"):
                _loadgen(server.base, mode, clients=clients, seconds=1, max_requests=200, fixtures_file=f.name)
            ceiling = _loadgen(server.base, "version", clients=clients, seconds=seconds, max_requests=max_requests,
                               fixtures_file=None)  # fmt: skip
            _say(f"  GET /version on gunicorn: {ceiling['rps']:.0f} requests/s")
            auth = _loadgen(server.base, "me", clients=clients, seconds=seconds, max_requests=max_requests,
                            fixtures_file=f.name)  # fmt: skip
            _say(f"  GET /auth/me on gunicorn: {auth['rps']:.0f} requests/s")
            post = _loadgen(server.base, "post-visit", clients=clients, seconds=seconds, max_requests=max_requests,
                            fixtures_file=f.name)  # fmt: skip
            _say(f"  POST /visits on gunicorn: {post['rps']:.0f} requests/s")
        finally:
            os.unlink(f.name)
    finally:
        server.stop()
    ratio = post["rps"] / ceiling["rps"] if ceiling["rps"] else 0.0
    # Context, not a target: how far the one authenticated request that writes nothing is from the
    # ceiling, and a POST from it.
    auth_ratio = auth["rps"] / ceiling["rps"] if ceiling["rps"] else 0.0
    post_to_auth = post["rps"] / auth["rps"] if auth["rps"] else 0.0
    return {"ceiling": ceiling, "auth": auth, "post": post, "ratio": round(ratio, 3), "target_ratio": POST_TARGET_RATIO,
            "pass": ratio >= POST_TARGET_RATIO, "auth_ratio": round(auth_ratio, 3),
            "post_to_auth": round(post_to_auth, 3)}  # fmt: skip


# --- the run ---------------------------------------------------------------------------------


def run(kind: str, size: dataset.Size, *, reps: int, clients: int, seconds: float, max_requests: int,
        do_explain: bool = False, do_throughput: bool = True,
        sqlite_cache_mib: int | None = None) -> dict[str, Any]:  # fmt: skip
    _say(f"[{kind}] preparing {size.visits:,} visits / {size.problems:,} problems")
    url = dataset.prepare(kind, size)
    counts = dataset.counts(url)
    fx = fixtures(url)
    app = settle(create_app({"DATABASE_URL": url, "LOG_LEVEL": "WARNING"}))  # as wsgi.py makes a worker's
    if sqlite_cache_mib and kind == "sqlite":
        # A what-if for the in-process timings only: SQLite's page cache is 2 MiB per connection
        # unless the app sets it, against a 600 MB file here.
        pragma = f"PRAGMA cache_size=-{sqlite_cache_mib * 1024}"
        event.listen(app.extensions["db_engine"], "connect", lambda dbapi_conn, _record: dbapi_conn.execute(pragma))
    ms = measures(fx, reps)
    if do_explain:
        explain(app, fx, ms)
    started = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    load = {"before_queries": os.getloadavg()[0]}
    _say(f"[{kind}] timing queries in-process (load average {load['before_queries']:.2f})")
    time_queries(app, fx, ms)
    ms.append(time_posts(app, fx, max(20, reps // 2)))
    app.extensions["db_engine"].dispose()
    baseline = percentile(ms[0].timings, 50) * 1000
    load["before_throughput"] = os.getloadavg()[0]
    tp = None
    if do_throughput:
        _say(f"[{kind}] throughput on gunicorn -w 2, {clients} clients, {seconds:.0f} s each")
        tp = throughput(url, kind, fx, clients=clients, seconds=seconds, max_requests=max_requests)
    load["after"] = os.getloadavg()[0]
    return {
        "database": kind,
        "counts": counts,
        "started": started,
        "cpus": os.cpu_count(),
        "sqlite_cache_mib": sqlite_cache_mib if kind == "sqlite" else None,
        # Other programs on the machine slow wall times down; the 1-minute load average says how busy it was.
        "load_average": {k: round(v, 2) for k, v in load.items()},
        "queries": [m.summary(baseline) for m in ms],
        "throughput": tp,
    }


def _fmt(v: float | None, spec: str = ".1f") -> str:
    return "-" if v is None else format(v, spec)


def verdict(passed: bool | None) -> str:
    return "" if passed is None else ("pass" if passed else "MISS")


def report(result: dict[str, Any]) -> Iterator[str]:
    c = result["counts"]
    yield (f"Issue 2 foundation benchmark: {result['database']}, {c['visits']:,} visits, {c['problems']:,} problems, "
           f"{c['search_entries']:,} search entries, {result['cpus']} CPUs")  # fmt: skip
    la = result["load_average"]
    yield (f"load average (1 min): {la['before_queries']} before queries, "
           f"{la['before_throughput']} before throughput, {la['after']} after")  # fmt: skip
    yield f"{'measure':<42} {'n':>5} {'p50 ms':>9} {'p95 ms':>9} {'CPU p50':>8} {'x base':>7} {'target':>9}  verdict"
    for q in result["queries"]:
        target = f"<{q['target_p95_ms']:.0f} ms" if q["target_p95_ms"] else ""
        yield (f"{q['label']:<42} {q['n']:>5} {q['p50_ms']:>9.2f} {q['p95_ms']:>9.2f} {q['cpu_p50_ms']:>8.2f} "
               f"{_fmt(q['x_baseline_p50']):>7} {target:>9}  {verdict(q['pass'])}")  # fmt: skip
    if result["sqlite_cache_mib"]:
        yield f"(in-process timings with PRAGMA cache_size of {result['sqlite_cache_mib']} MiB, not the app's default)"
    tp = result["throughput"]
    if tp is None:
        return
    for name, r in (
        ("GET /version on gunicorn (ceiling)", tp["ceiling"]),
        ("GET /auth/me on gunicorn (auth only)", tp["auth"]),
        ("POST /visits on gunicorn", tp["post"]),
    ):
        yield (f"{name:<42} {r['ok']:>5} requests in {r['seconds']:.1f} s = {r['rps']:8.1f}/s"
               f"  (latency p50 {_fmt(r['p50_ms'], '.1f')} ms, p95 {_fmt(r['p95_ms'], '.1f')} ms)")  # fmt: skip
    yield f"{'POST / ceiling':<42} {tp['ratio']:>5.2f} (target >= {tp['target_ratio']})  {verdict(tp['pass'])}"
    yield f"{'GET /auth/me / ceiling':<42} {tp['auth_ratio']:>5.2f} (context: authentication alone)"
    yield f"{'POST / GET /auth/me':<42} {tp['post_to_auth']:>5.2f} (context: a POST against an authenticated read)"


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.foundation", description=__doc__.splitlines()[0])
    parser.add_argument("--db", choices=["sqlite", "postgresql"], required=True)
    parser.add_argument("--visits", type=int, default=dataset.DEFAULT_VISITS)
    parser.add_argument("--problems", type=int, default=dataset.DEFAULT_PROBLEMS)
    parser.add_argument("--reps", type=int, default=200, help="timed requests per query measure")
    parser.add_argument("--clients", type=int, default=4, help="concurrent load-generator clients")
    parser.add_argument("--seconds", type=float, default=15.0, help="length of each throughput run")
    parser.add_argument("--max-requests", type=int, default=100_000, help="cap of each throughput run")
    parser.add_argument("--explain", action="store_true", help="print the query plans of each measure first")
    parser.add_argument("--json", type=Path, help="also write the results to this file")
    parser.add_argument("--no-throughput", action="store_true", help="skip the gunicorn runs")
    parser.add_argument("--sqlite-cache-mib", type=int, help="what-if: SQLite page cache for the in-process timings")
    args = parser.parse_args(argv)
    result = run(args.db, dataset.Size(args.visits, args.problems), reps=args.reps, clients=args.clients,
                 seconds=args.seconds, max_requests=args.max_requests, do_explain=args.explain,
                 do_throughput=not args.no_throughput, sqlite_cache_mib=args.sqlite_cache_mib)  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps(result, ensure_ascii=False, indent=2), encoding="utf-8")
    print("\n".join(report(result)))


if __name__ == "__main__":
    main()
