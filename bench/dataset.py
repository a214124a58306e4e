"""A large, deterministic data set (100,000 visits and 300,000 problems by default) for benchmarks.

The schema comes from the migrations (server.db.upgrade); the rows are written in chunks,
streamed (never all in memory): executemany on SQLite, COPY on PostgreSQL. Every visit and
problem gets its search entry exactly as the services write it. The SQLite file is cached
under bench/results/ keyed by size; each run works on a copy, because the run writes to it.

    python -m bench.dataset --db sqlite [--visits N --problems N]
"""

from __future__ import annotations

import argparse
import datetime as dt
import enum
import random
import shutil
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import psycopg
from psycopg.types.json import Json
from sqlalchemy import JSON, Connection, Table, event, insert, select, text, update
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from schemas.enums import ParkType, ProblemCategory, ProblemOutcome, Role, ServiceCategory, TargetKind
from server import db
from server.db.models import (
    Campaign,
    ChangeLogEntry,
    Department,
    PortfolioEntry,
    Problem,
    SearchEntry,
    SyncCounter,
    Target,
    User,
    Visit,
)
from server.demo import (
    CATEGORY_DEPARTMENT,
    DEPARTMENTS,
    INDUSTRIES,
    PARKS,
    person_name,
    problem_text,
    visit_summary,
    working_moment,
)
from server.domain.problems import status_for
from server.domain.search import index_tokens
from server.services.auth import hash_password
from server.services.search import FTS_TABLES

RESULTS = Path(__file__).parent / "results"
POSTGRES_ADMIN_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
POSTGRES_DB = "bench_foundation"
# Bumped whenever the generated rows change, so that a cached file is never stale.
DATASET_VERSION = 1
DEFAULT_VISITS = 100_000
DEFAULT_PROBLEMS = 300_000
CHUNK = 5_000

# Twelve months of visits, in four campaigns of a quarter each.
FIRST_DAY = dt.date(2025, 11, 1)
LAST_DAY = dt.date(2026, 10, 31)
CAMPAIGNS = [
    ("bench-zqtx", "政企同行（基准数据）", dt.date(2025, 11, 1), dt.date(2026, 1, 31)),
    ("bench-qyfwy", "企业服务月（基准数据）", dt.date(2026, 2, 1), dt.date(2026, 4, 30)),
    ("bench-szjsfw", "三走进三服务（基准数据）", dt.date(2026, 5, 1), dt.date(2026, 7, 31)),
    ("bench-yhyshj", "优化营商环境（基准数据）", dt.date(2026, 8, 1), dt.date(2026, 10, 31)),
]
CADRES = 43
PROJECTS = 100
FIRMS = 100
# The article's outcome mix (solved 2458, coordinating 404, deferred 94 over two campaigns);
# problems of the last two months are still 40 % untouched, as in a running campaign.
OUTCOME_WEIGHTS = {ProblemOutcome.solved: 2458, ProblemOutcome.coordinating: 404, ProblemOutcome.deferred: 94}
RECENT_DAYS = 60
RECENT_OPEN_SHARE = 0.4
VISITS = cast(Table, Visit.__table__)
PROBLEMS = cast(Table, Problem.__table__)
SEARCH_ENTRIES = cast(Table, SearchEntry.__table__)
CHANGE_LOG = cast(Table, ChangeLogEntry.__table__)
DEFERRED_REASONS = [
    "受国家宏观政策和国际贸易形势影响，暂不具备解决条件，已向企业做好解释。",
    "涉及国家税收政策调整，地方无权限，已向上级部门反映。",
]


@dataclass(frozen=True)
class Size:
    visits: int = DEFAULT_VISITS
    problems: int = DEFAULT_PROBLEMS

    @property
    def key(self) -> str:
        return f"v{DATASET_VERSION}-{self.visits}v-{self.problems}p"


def _uuid(rng: random.Random) -> uuid.UUID:
    return uuid.UUID(int=rng.getrandbits(128), version=4)


def _plain(value: Any) -> Any:
    return value.value if isinstance(value, enum.Enum) else value


# --- the small tables, through the ORM -------------------------------------------------------


@dataclass
class _Directory:
    departments: dict[str, uuid.UUID]
    cadres: list[uuid.UUID]
    targets: list[tuple[uuid.UUID, str, str]]  # id, name, address
    portfolio: dict[uuid.UUID, uuid.UUID]  # target -> cadre
    campaigns: list[tuple[uuid.UUID, dt.date, dt.date]]


def _load_directory(session: Session, rng: random.Random) -> _Directory:
    password_hash = hash_password(uuid.UUID(int=rng.getrandbits(128)).hex)  # nobody logs in with it
    departments = {
        code: Department(id=_uuid(rng), code=code, name=name, short_name=short) for code, name, short in DEPARTMENTS
    }
    session.add_all(departments.values())
    users = [
        User(id=_uuid(rng), username="admin", display_name="系统管理员", role=Role.admin, password_hash=password_hash),
        User(id=_uuid(rng), username="supervisor", display_name=person_name(rng), role=Role.supervisor,
             password_hash=password_hash),
    ]  # fmt: skip
    cadres = [
        User(id=_uuid(rng), username=f"cadre{i:02d}", display_name=person_name(rng), role=Role.cadre,
             password_hash=password_hash)
        for i in range(1, CADRES + 1)
    ]  # fmt: skip
    staff = [
        User(id=_uuid(rng), username=f"dept-{code}", display_name=person_name(rng), role=Role.department_staff,
             department_id=dept.id, password_hash=password_hash)
        for code, dept in departments.items()
    ]  # fmt: skip
    session.add_all(users + cadres + staff)

    parks = [
        Target(id=_uuid(rng), kind=TargetKind.park, name=name, park_type=ptype, district=district,
               code=f"P{i:03d}", address=f"徐州市{district}")
        for i, (name, ptype, district) in enumerate(PARKS, start=1)
    ]  # fmt: skip
    zones = [p for p in parks if p.park_type is not ParkType.software_park]
    others = []
    for i in range(1, PROJECTS + 1):
        park, industry = rng.choice(zones), rng.choice(INDUSTRIES)
        others.append(Target(id=_uuid(rng), kind=TargetKind.project, name=f"{park.district}{industry}项目（{i:03d}）",
                             code=f"J{i:03d}", park_id=park.id, district=park.district, industry=industry,
                             address=f"{park.name}内"))  # fmt: skip
    for i in range(1, FIRMS + 1):
        park, industry = rng.choice(parks), rng.choice(INDUSTRIES)
        others.append(Target(id=_uuid(rng), kind=TargetKind.firm, name=f"徐州{industry}企业（{i:03d}）有限公司",
                             code=f"9132030{i:011d}", park_id=park.id, district=park.district, industry=industry,
                             address=f"{park.name}内"))  # fmt: skip
    session.add_all(parks)
    session.flush()
    session.add_all(others)
    session.flush()  # portfolio entries have no relationship that would order their INSERTs
    targets = parks + others
    portfolio = {}
    for i, target in enumerate(targets):
        cadre = cadres[i % len(cadres)]
        portfolio[target.id] = cadre.id
        session.add(PortfolioEntry(id=_uuid(rng), user_id=cadre.id, target_id=target.id))
    campaigns = [
        Campaign(id=_uuid(rng), code=code, name=name, starts_on=first, ends_on=last)
        for code, name, first, last in CAMPAIGNS
    ]
    session.add_all(campaigns)
    session.flush()
    return _Directory(
        departments={code: d.id for code, d in departments.items()},
        cadres=[c.id for c in cadres],
        targets=[(t.id, t.name, t.address or "") for t in targets],
        portfolio=portfolio,
        campaigns=[(c.id, c.starts_on, c.ends_on or c.starts_on) for c in campaigns],
    )


# --- the large tables, generated as a stream -------------------------------------------------


def _problem_counts(rng: random.Random, size: Size) -> list[int]:
    """How many problems each visit raised: the total spread at random (about Poisson)."""
    counts = [0] * size.visits
    for _ in range(size.problems):
        counts[rng.randrange(size.visits)] += 1
    return counts


def _category(rng: random.Random, outcome: ProblemOutcome | None) -> ProblemCategory:
    # As in the article: deferred ones are tariffs and tax; coordinating ones mostly money, labour, housing.
    if outcome is ProblemOutcome.deferred:
        return rng.choice([ProblemCategory.tariff, ProblemCategory.tax])
    if outcome is ProblemOutcome.coordinating and rng.random() < 0.7:
        return rng.choice([ProblemCategory.financing, ProblemCategory.labor, ProblemCategory.talent_housing])
    return rng.choice(list(ProblemCategory))


def _rows(rng: random.Random, size: Size, d: _Directory) -> Iterator[tuple[dict[str, Any], list[dict[str, Any]]]]:
    """(visit row, its problem rows), one visit at a time."""
    outcomes, weights = list(OUTCOME_WEIGHTS), list(OUTCOME_WEIGHTS.values())
    recent = dt.datetime.combine(LAST_DAY - dt.timedelta(days=RECENT_DAYS), dt.time(), dt.UTC)
    for n_problems in _problem_counts(rng, size):
        campaign_id, first, last = rng.choice(d.campaigns)
        target_id, target_name, address = rng.choice(d.targets)
        cadre_id = d.portfolio[target_id] if rng.random() < 0.8 else rng.choice(d.cadres)
        services = rng.sample(list(ServiceCategory), rng.randint(1, 3))
        at = working_moment(rng, first, last)
        located = rng.random() < 0.7
        visit = {
            "id": _uuid(rng), "campaign_id": campaign_id, "cadre_id": cadre_id, "target_id": target_id,
            "visited_at": at, "service_categories": [s.value for s in services],
            "summary": visit_summary(rng, target_name, services),
            "latitude": 34.26 + rng.uniform(-0.3, 0.3) if located else None,
            "longitude": 117.18 + rng.uniform(-0.3, 0.3) if located else None,
            "location_text": address, "device_id": None, "version": 1, "created_at": at, "updated_at": at,
        }  # fmt: skip
        problems = []
        for position in range(n_problems):
            still_open = at >= recent and rng.random() < RECENT_OPEN_SHARE
            outcome = None if still_open else rng.choices(outcomes, weights)[0]
            category = _category(rng, outcome)
            decided = at + dt.timedelta(days=rng.randint(3, 40)) if outcome else None
            dept = d.departments[CATEGORY_DEPARTMENT[category]]
            problems.append({
                "id": _uuid(rng), "visit_id": visit["id"], "position": position, "campaign_id": campaign_id,
                "target_id": target_id, "cadre_id": cadre_id, "raised_at": at, "category": category.value,
                "description": problem_text(rng, category),
                "department_id": dept if outcome else None, "status": status_for(outcome).value,
                "outcome": _plain(outcome),
                "outcome_reason": rng.choice(DEFERRED_REASONS) if outcome is ProblemOutcome.deferred else None,
                "outcome_note": "已协调办理。" if outcome is ProblemOutcome.solved else None,
                "outcome_at": decided,
                "closed_at": decided if outcome in (ProblemOutcome.solved, ProblemOutcome.deferred) else None,
                "version": 1, "created_at": at, "updated_at": decided or at,
            })  # fmt: skip
        yield visit, problems


class _Writer:
    """Buffers rows of the large tables and writes them in order (visits before their problems)."""

    def __init__(self, conn: Connection, tables: list[Table] | None = None) -> None:
        self.conn = conn
        self.postgres = conn.dialect.name == "postgresql"
        self.tables = tables or [VISITS, PROBLEMS, SEARCH_ENTRIES]
        self.buffers: dict[str, list[dict[str, Any]]] = {t.name: [] for t in self.tables}

    def add(self, table: Table, row: dict[str, Any]) -> None:
        self.buffers[table.name].append(row)

    def flush(self) -> None:
        for table in self.tables:
            rows = self.buffers[table.name]
            if rows:
                self._copy(table, rows) if self.postgres else self.conn.execute(insert(table), rows)
                rows.clear()

    def _copy(self, table: Table, rows: list[dict[str, Any]]) -> None:
        columns = list(rows[0])
        as_json = {c for c in columns if isinstance(table.c[c].type, JSON)}
        raw = self.conn.connection.driver_connection
        assert isinstance(raw, psycopg.Connection)
        with raw.cursor().copy(f"COPY {table.name} ({', '.join(columns)}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row([Json(row[c]) if c in as_json else row[c] for c in columns])


def _change(entity: str, row: dict[str, Any], number: int) -> dict[str, Any]:
    """The change_log row the services would leave for a visit or problem (docs/sync-protocol.md)."""
    return {"entity": entity, "record_id": row["id"], "change_no": number, "op": "upsert", "scope": "target",
            "owner_id": row["cadre_id"], "target_id": row["target_id"], "changed_at": row["created_at"]}  # fmt: skip


def load(
    url: str, size: Size, *, seed: int = 2026, progress: bool = True, search: bool = True, change_log: bool = False
) -> None:
    """Migrate the empty database at `url` and fill it with `size` visits and problems.

    `search`: write their search entries (as the services do). `change_log`: also number them in
    change_log, in the order written, and move sync_counter to the last number (bench/sync.py).
    """
    db.upgrade(url)
    rng = random.Random(seed)
    engine = db.make_engine(url)
    if engine.dialect.name == "sqlite":
        # A file being built is thrown away if the load fails: no need to fsync every commit.
        event.listen(engine, "connect", lambda dbapi_conn, _record: dbapi_conn.execute("PRAGMA synchronous=OFF"))
    started = time.perf_counter()
    try:
        with Session(engine) as session, session.begin():
            directory = _load_directory(session, rng)
        with engine.begin() as conn:
            tables = [VISITS, PROBLEMS] + [SEARCH_ENTRIES] * search + [CHANGE_LOG] * change_log
            writer = _Writer(conn, tables)
            number = 0
            for i, (visit, visit_problems) in enumerate(_rows(rng, size, directory), start=1):
                # The search entries the services write: a visit's summary and place, a problem's text.
                writer.add(VISITS, visit)
                if search:
                    tokens = index_tokens(visit["summary"], visit["location_text"])
                    writer.add(SEARCH_ENTRIES, {"kind": "visit", "record_id": visit["id"], "tokens": tokens})
                if change_log:
                    number += 1
                    writer.add(CHANGE_LOG, _change("visit", visit, number))
                for p in visit_problems:
                    writer.add(PROBLEMS, p)
                    if search:
                        tokens = index_tokens(p["description"])
                        writer.add(SEARCH_ENTRIES, {"kind": "problem", "record_id": p["id"], "tokens": tokens})
                    if change_log:
                        number += 1
                        writer.add(CHANGE_LOG, _change("problem", p, number))
                if i % CHUNK == 0:
                    writer.flush()
                    if progress and i % (CHUNK * 4) == 0:
                        _say(f"  {i:,} visits written ({time.perf_counter() - started:.0f} s)")
            writer.flush()
            if search and conn.dialect.name == "sqlite":
                # The services index what they insert (search.add_entries); a bulk load indexes it all at once.
                for table in FTS_TABLES.values():
                    conn.exec_driver_sql(f"INSERT INTO {table}({table}) VALUES ('rebuild')")
            if change_log:
                conn.execute(update(SyncCounter).where(SyncCounter.id == 1).values(value=number))
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            if conn.dialect.name == "postgresql":
                # What autovacuum would do after a bulk load; done now so that timings do not race it.
                conn.exec_driver_sql("VACUUM ANALYZE")
            else:
                conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        engine.dispose()
    if progress:
        _say(f"  loaded {size.visits:,} visits and {size.problems:,} problems in {time.perf_counter() - started:.0f} s")


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# --- ready-to-use databases ------------------------------------------------------------------


def sqlite_cache(size: Size) -> Path:
    return RESULTS / f"dataset-{size.key}.db"


def prepare_sqlite(size: Size) -> str:
    """A fresh working copy of the cached SQLite data set (built first if missing); its URL."""
    cache = sqlite_cache(size)
    if not cache.exists():
        RESULTS.mkdir(parents=True, exist_ok=True)
        building = cache.with_suffix(".building")
        for leftover in RESULTS.glob(building.name + "*"):
            leftover.unlink()
        _say(f"building {cache.name} (cached for later runs)")
        load(f"sqlite:///{building}", size)
        building.rename(cache)
    work = RESULTS / "work-sqlite.db"
    for old in RESULTS.glob(work.name + "*"):
        old.unlink()
    shutil.copyfile(cache, work)
    url = f"sqlite:///{work}"
    db.upgrade(url)  # migrations newer than the cached file
    return url


def libpq(url: str = POSTGRES_ADMIN_URL) -> str:
    """A SQLAlchemy PostgreSQL URL as psycopg takes it."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def postgres_url(name: str, admin_url: str = POSTGRES_ADMIN_URL) -> str:
    """The app's URL (postgresql+psycopg://…) of database `name` on the benchmark's server."""
    return make_url(admin_url).set(database=name).render_as_string(hide_password=False)


def prepare_postgresql(size: Size, admin_url: str = POSTGRES_ADMIN_URL, name: str = POSTGRES_DB, **load_kw: Any) -> str:
    """Database `name`, dropped and loaded afresh (COPY makes that quick enough); its URL. `load_kw` go to load()."""
    with psycopg.connect(libpq(admin_url), autocommit=True, connect_timeout=5) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    url = postgres_url(name, admin_url)
    _say(f"loading PostgreSQL database {name}")
    load(url, size, **load_kw)
    return url


def prepare(kind: str, size: Size) -> str:
    if kind == "sqlite":
        return prepare_sqlite(size)
    if kind == "postgresql":
        return prepare_postgresql(size)
    raise ValueError(f"database must be sqlite or postgresql, not {kind!r}")


def counts(url: str) -> dict[str, int]:
    engine = db.make_engine(url)
    try:
        with engine.connect() as conn:
            return {
                t: int(conn.scalar(select(text("count(*)")).select_from(text(t))) or 0)
                for t in ("visits", "problems", "search_entries")
            }
    finally:
        engine.dispose()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.dataset", description=__doc__.splitlines()[0])
    parser.add_argument("--db", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--visits", type=int, default=DEFAULT_VISITS)
    parser.add_argument("--problems", type=int, default=DEFAULT_PROBLEMS)
    args = parser.parse_args(argv)
    url = prepare(args.db, Size(args.visits, args.problems))
    print(make_url(url).render_as_string(), counts(url))


if __name__ == "__main__":
    main()
