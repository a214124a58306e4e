"""Issue 3's benchmark: offline sync. Queued notes go from client_sync devices to gunicorn in batches,
beside the same notes inserted in-process (the ceiling) and sent one POST per note (the naive design).

    python -m bench.sync --db sqlite|postgresql [--notes N] [--devices D] [--backlog N] [--pull-rows A,B]

Every scenario runs on a fresh copy of a small directory database (bench/dataset.py: 43 cadres,
216 targets, 4 campaigns) and, over HTTP, on a fresh `gunicorn -w 2` (bench/foundation.py). Notes
(about 1 KB of Chinese text and 3 problems each, server/demo.py's generators) are queued before
any timing with Client.add_note in each device's own store; the stores are cached under
bench/results/ and copied for each scenario.

- ceiling: the notes validated with VisitNoteSchema, their rows built (visits.note_rows), screened
  (visits.NewNotes) and stored with visits.insert_notes, the server's fastest way to store them
  and the one a push takes, one commit per batch of 200 (the client's batch size), in this
  process, no HTTP;
- naive: one POST /api/v1/visits per note (requests.Session), from 1 and from D processes;
- batch: Client.sync_until_done() from 1 device holding N notes and from D devices holding N/D
  each, one process per device, all released at once (each device keeps its two batches in
  flight, client_sync.engine.PIPELINE);
- backlog: one device syncing a backlog of 50,000 notes, for the client's peak memory;
- pull: POST /api/v1/sync/pull limit=100 from 100 changes behind the head, with 10,000 and
  with 1,000,000 rows in change_log.

Durability is the app's: SQLite in WAL with synchronous=FULL, PostgreSQL with its defaults.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import multiprocessing as mp
import os
import random
import secrets
import shutil
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import psycopg
import requests
from sqlalchemy import and_, func, or_, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from bench import dataset
from bench.foundation import ROOT, Gunicorn, verdict
from bench.stats import percentile
from bench.sync_client import outbox_notes, status_kb
from schemas.enums import ProblemCategory, Role, ServiceCategory
from schemas.protocol import PROTOCOL_VERSION
from server import db
from server.db.models import AuthToken, Campaign, ChangeLogEntry, Device, PortfolioEntry, Target, User
from server.db.types import utcnow
from server.demo import problem_text, visit_summary, working_moment
from server.domain.periods import SHANGHAI
from server.services.auth import token_digest

HOMES_VERSION = 1  # bumped whenever the generated notes change, so that cached device stores are never stale
PULL_VERSION = 1
SUMMARY_BYTES = 1000
PROBLEMS_PER_NOTE = 3
BATCH = 200  # client_sync.engine.BATCH_SIZE: the ceiling commits as often as a push does
PULL_PATH = "/api/v1/sync/pull"
PULL_LIMIT = 100
# Working databases and files are this run's own, so that two runs on one machine never share one.
RUN_ID = os.getpid()
PG_TEMPLATE = f"bench_sync_template_{RUN_ID}"
PG_RUN = f"bench_sync_{RUN_ID}"
# Targets (issue 3).
CEILING_RATIO = 0.5
NAIVE_RATIO = 10.0
BACKLOG_MB = 100.0
PULL_RATIO = 1.5
# ODK Central on a machine of this size, one HTTP request per note (the issue's reference), and the aim: 20x.
ODK = {1: 180.0, 8: 300.0}
ODK_AIM = 20


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# --- the directory and the devices ----------------------------------------------------------


@dataclass(frozen=True)
class Directory:
    """What notes refer to, read back from the template database (deterministic: dataset's seed)."""

    cadres: list[tuple[str, str]]  # (id, username), by username
    campaigns: list[tuple[str, str, str]]  # (id, first day, last day)
    targets: dict[str, str]  # id -> name (active targets)
    portfolio: dict[str, list[str]]  # cadre id -> target ids

    @property
    def fingerprint(self) -> str:
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:12]


def read_directory(url: str) -> Directory:
    engine = db.make_engine(url)
    try:
        with Session(engine) as s:
            cadres = [(str(i), u) for i, u in s.execute(
                select(User.id, User.username).where(User.role == Role.cadre).order_by(User.username))]  # fmt: skip
            campaigns = [
                (str(i), a.isoformat(), (b or a).isoformat())
                for i, a, b in s.execute(
                    select(Campaign.id, Campaign.starts_on, Campaign.ends_on).order_by(Campaign.code)
                )
            ]
            targets = {str(i): n for i, n in s.execute(select(Target.id, Target.name).where(Target.active))}
            portfolio: dict[str, list[str]] = {}
            for user_id, target_id in s.execute(
                select(PortfolioEntry.user_id, PortfolioEntry.target_id).order_by(PortfolioEntry.target_id)
            ):
                if str(target_id) in targets:
                    portfolio.setdefault(str(user_id), []).append(str(target_id))
    finally:
        engine.dispose()
    return Directory(cadres, campaigns, targets, portfolio)


@dataclass(frozen=True)
class DeviceSpec:
    """One phone: its group ('one', 'many', 'backlog'), the cadre holding it, how many notes it queues."""

    group: str
    index: int
    notes: int
    cadre_id: str
    username: str
    device_id: str
    home: str  # the cached store's directory


def device_specs(d: Directory, homes: Path, group: str, notes: int, devices: int) -> list[DeviceSpec]:
    """`notes` split over `devices` devices of the first cadres (one device each)."""
    base = homes / f"{group}-{notes}n-{devices}d"
    specs = []
    for i in range(devices):
        cadre_id, username = d.cadres[i % len(d.cadres)]
        share = notes // devices + (1 if i < notes % devices else 0)
        device_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"bench.sync/{base.name}/{i}"))
        specs.append(DeviceSpec(group, i, share, cadre_id, username, device_id, str(base / f"d{i:02d}")))
    return specs


def summary_text(rng: random.Random, target_name: str, services: list[ServiceCategory]) -> str:
    """About SUMMARY_BYTES of UTF-8: the sentences of a few visit summaries, each sentence once."""
    sentences: list[str] = []
    while len("".join(sentences).encode()) < SUMMARY_BYTES:
        for s in visit_summary(rng, target_name, services).split("。"):
            if s and s + "。" not in sentences:
                sentences.append(s + "。")
    return "".join(sentences)


def note_fields(rng: random.Random, d: Directory, cadre_id: str) -> dict[str, Any]:
    """Client.add_note's arguments for one note of this cadre, on one of the cadre's own targets."""
    target_id = rng.choice(d.portfolio.get(cadre_id) or sorted(d.targets))
    campaign_id, first, last = rng.choice(d.campaigns)
    at = working_moment(rng, dt.date.fromisoformat(first), dt.date.fromisoformat(last))
    services = rng.sample(list(ServiceCategory), rng.randint(1, 3))
    categories = rng.sample(list(ProblemCategory), PROBLEMS_PER_NOTE)
    return {
        "target_id": target_id,
        "campaign_id": campaign_id,
        "visited_at": at.astimezone(SHANGHAI).isoformat(timespec="seconds"),
        "service_categories": [s.value for s in services],
        "summary": summary_text(rng, d.targets[target_id], services),
        "problems": [{"category": c.value, "description": problem_text(rng, c)} for c in categories],
        "location_text": "企业厂区",
        "latitude": round(34.26 + rng.uniform(-0.3, 0.3), 5),
        "longitude": round(117.18 + rng.uniform(-0.3, 0.3), 5),
    }


def _build_home(spec: DeviceSpec, d: Directory) -> None:
    """Queue the device's notes with Client.add_note (run in a process of its own)."""
    from client_sync import Client

    home = Path(spec.home)
    shutil.rmtree(home, ignore_errors=True)
    with Client(home) as client:
        client.store.set(device_id=spec.device_id, user={"id": spec.cadre_id, "username": spec.username})
        # Queueing is not what is measured: no fsync per note here (the synced stores run with FULL).
        client.store.conn.execute("PRAGMA synchronous=OFF")
        rng = random.Random(f"{spec.group}/{spec.notes}/{spec.index}")
        for _ in range(spec.notes):
            client.add_note(**note_fields(rng, d, spec.cadre_id))
        client.store.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")


def build_homes(groups: list[list[DeviceSpec]], d: Directory) -> None:
    """The cached device stores of each group, built (2 processes at a time) unless already there."""
    todo = [g for g in groups if g and not (Path(g[0].home).parent / "complete").exists()]
    if not todo:
        return
    specs = sorted((s for g in todo for s in g), key=lambda s: -s.notes)
    total = sum(s.notes for s in specs)
    _say(f"queueing {total:,} notes with Client.add_note in {len(specs)} device stores (cached for later runs)")
    started = time.perf_counter()
    with mp.get_context("spawn").Pool(min(2, os.cpu_count() or 1)) as pool:
        for r in [pool.apply_async(_build_home, (s, d)) for s in specs]:
            r.get()
    for g in todo:
        (Path(g[0].home).parent / "complete").write_text(str(sum(s.notes for s in g)))
    _say(f"  queued in {time.perf_counter() - started:.0f} s")


def add_devices(url: str, specs: list[DeviceSpec]) -> dict[str, str]:
    """Register each device and a bearer token for it (as login would); returns device id -> token."""
    engine = db.make_engine(url)
    tokens: dict[str, str] = {}
    try:
        with Session(engine) as s, s.begin():
            for spec in specs:
                token = secrets.token_urlsafe(32)
                s.add(Device(id=uuid.UUID(spec.device_id), user_id=uuid.UUID(spec.cadre_id), name="bench-sync"))
                s.flush()
                s.add(AuthToken(token_hash=token_digest(token), user_id=uuid.UUID(spec.cadre_id),
                                device_id=uuid.UUID(spec.device_id),
                                expires_at=utcnow() + dt.timedelta(days=2)))  # fmt: skip
                tokens[spec.device_id] = token
    finally:
        engine.dispose()
    return tokens


# --- databases --------------------------------------------------------------------------------


def _work(name: str) -> Path:
    return dataset.RESULTS / f"sync-{RUN_ID}-{name}"


def _drop(kind: str, pg_name: str, file_name: str) -> None:
    if kind == "postgresql":
        with psycopg.connect(dataset.libpq(), autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{pg_name}" WITH (FORCE)')
    else:
        for old in dataset.RESULTS.glob(_work(file_name).name + "*"):
            old.unlink()


def drop_template(kind: str) -> None:
    _drop(kind, PG_TEMPLATE, "template.db")


def prepare_template(kind: str) -> str:
    """The directory (no visits), migrated to head: the start of every scenario."""
    if kind == "postgresql":
        return dataset.prepare_postgresql(dataset.Size(0, 0), name=PG_TEMPLATE, progress=False)
    path = _work("template.db")
    for old in dataset.RESULTS.glob(path.name + "*"):
        old.unlink()
    dataset.RESULTS.mkdir(parents=True, exist_ok=True)
    url = f"sqlite:///{path}"
    dataset.load(url, dataset.Size(0, 0), progress=False)
    return url


def fresh_copy(kind: str, template: str) -> str:
    """A new working database from the template."""
    if kind == "postgresql":
        with psycopg.connect(dataset.libpq(), autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{PG_RUN}" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "{PG_RUN}" TEMPLATE "{PG_TEMPLATE}"')
        return dataset.postgres_url(PG_RUN)
    work = _work("scenario.db")
    for old in dataset.RESULTS.glob(work.name + "*"):
        old.unlink()
    shutil.copyfile(make_url(template).database or "", work)
    return f"sqlite:///{work}"


def drop_copy(kind: str) -> None:
    _drop(kind, PG_RUN, "scenario.db")


def stored_counts(url: str) -> dict[str, int]:
    engine = db.make_engine(url)
    try:
        with engine.connect() as conn:
            return {
                t: int(conn.scalar(select(func.count()).select_from(text(t))) or 0)
                for t in ("visits", "problems", "change_log", "sync_changes")
            }
    finally:
        engine.dispose()


def durability(url: str) -> str:
    """The settings an acknowledged commit relies on, as the server's own engine reports them."""
    engine = db.make_engine(url)
    try:
        with engine.connect() as conn:
            if engine.dialect.name == "sqlite":
                mode = conn.exec_driver_sql("PRAGMA journal_mode").scalar()
                level = int(conn.exec_driver_sql("PRAGMA synchronous").scalar() or 0)
                return f"journal_mode={mode}, synchronous={('OFF', 'NORMAL', 'FULL', 'EXTRA')[level]}"
            names = ("fsync", "synchronous_commit", "full_page_writes", "wal_sync_method")
            return ", ".join(f"{n}={conn.exec_driver_sql(f'SHOW {n}').scalar()}" for n in names)
    finally:
        engine.dispose()


# --- measuring --------------------------------------------------------------------------------


def _children(pid: int) -> list[int]:
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


class ServerMemory(threading.Thread):
    """Samples gunicorn (master + workers) every 50 ms: the peak of their summed resident memory,
    and their CPU time, so that the CPU spent until a given moment can be read back."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.peak_kb = 0
        self.samples: list[tuple[float, float]] = []  # (time.monotonic(), CPU seconds so far)
        self.done = threading.Event()

    def pids(self) -> list[int]:
        return [self.pid, *_children(self.pid)]

    def run(self) -> None:
        while not self.done.is_set():
            pids = self.pids()
            self.peak_kb = max(self.peak_kb, sum(status_kb(p, "VmRSS") for p in pids))
            self.samples.append((time.monotonic(), sum(_cpu_seconds(p) for p in pids)))
            self.done.wait(0.05)

    def cpu(self) -> float:
        return sum(_cpu_seconds(p) for p in self.pids())

    def cpu_at(self, moment: float) -> float:
        """The CPU seconds of the last sample taken at or before `moment`."""
        before = [cpu for t, cpu in self.samples if t <= moment]
        return before[-1] if before else 0.0

    def stop(self) -> dict[str, float]:
        """The sampled peak of the sum, and the sum of each process's own peak (VmHWM, an upper bound)."""
        self.done.set()
        self.join()
        hwm = sum(status_kb(p, "VmHWM") for p in self.pids())
        return {"server_peak_mb": round(self.peak_kb / 1024, 1), "server_hwm_mb": round(hwm / 1024, 1)}


def _cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process so far (/proc/<pid>/stat)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def in_processes(work: str, arglists: list[tuple[str, ...]], timeout: float) -> list[dict[str, Any]]:
    """One `python -m bench.sync_client` per arglist, started together once all are ready; their reports."""
    cmd = [sys.executable, "-m", "bench.sync_client", work]
    pipe = subprocess.PIPE
    procs = [subprocess.Popen([*cmd, *args], cwd=ROOT, stdin=pipe, stdout=pipe, text=True) for args in arglists]
    try:
        for proc in procs:
            assert proc.stdout is not None
            if proc.stdout.readline().strip() != "ready":
                raise SystemExit(f"a client process failed before the start (exit {proc.wait()}); see above")
        for proc in procs:  # the start, to every client at once
            assert proc.stdin is not None
            proc.stdin.write("go\n")
            proc.stdin.flush()
        results = []
        deadline = time.monotonic() + timeout
        for proc in procs:
            out, _ = proc.communicate(timeout=max(1.0, deadline - time.monotonic()))
            if proc.returncode != 0 or not out.strip():
                raise SystemExit(f"a client process failed (exit {proc.returncode}); see above")
            results.append(json.loads(out.strip().splitlines()[-1]))
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    return results


@dataclass
class Scenario:
    key: str
    label: str
    clients: int
    notes: int
    seconds: float  # until the last note was acknowledged
    latencies: list[float]  # per request (a batch, or one note)
    batch: int  # notes per request
    total_seconds: float | None = None  # the whole sync, its pull of what was pushed included
    server: dict[str, float] | None = None
    client_peak_mb: float | None = None
    client_idle_mb: float | None = None
    stored: dict[str, int] | None = None
    load: tuple[float, float] | None = None  # 1-minute load average before and after
    # CPU seconds: of gunicorn's processes (or of this process for the ceiling), of the clients. Unlike
    # wall time they barely move when other programs load the machine (PostgreSQL's own are not counted).
    server_cpu: float | None = None  # until the last note was acknowledged
    server_cpu_total: float | None = None  # the whole sync, its pull included
    client_cpu: float | None = None  # the whole sync, its pull included
    replayed: int = 0  # changes answered again after a push was resent

    def _per_note_ms(self, seconds: float | None) -> float | None:
        return None if seconds is None else round(seconds / self.notes * 1000, 2)

    @property
    def rate(self) -> float:
        return self.notes / self.seconds if self.seconds else 0.0

    def summary(self) -> dict[str, Any]:
        lat = self.latencies
        return {
            "key": self.key,
            "label": self.label,
            "clients": self.clients,
            "notes": self.notes,
            "batch": self.batch,
            "seconds": round(self.seconds, 2),
            "notes_per_s": round(self.rate, 1),
            "total_seconds": None if self.total_seconds is None else round(self.total_seconds, 2),
            "requests": len(lat),
            "p50_ms": round(percentile(lat, 50) * 1000, 1) if lat else None,
            "p95_ms": round(percentile(lat, 95) * 1000, 1) if lat else None,
            **(self.server or {}),
            "server_cpu_ms_per_note": self._per_note_ms(self.server_cpu),
            "server_cpu_total_ms_per_note": self._per_note_ms(self.server_cpu_total),
            "client_cpu_ms_per_note": self._per_note_ms(self.client_cpu),
            "replayed": self.replayed,
            "client_peak_mb": self.client_peak_mb,
            "client_idle_mb": self.client_idle_mb,
            "stored": self.stored,
            "load": self.load,
        }


def _load1() -> float:
    return round(os.getloadavg()[0], 2)


# --- the scenarios ----------------------------------------------------------------------------


def run_ceiling(url: str, spec: DeviceSpec) -> Scenario:
    """The device's notes validated and inserted in-process, one commit per batch: no HTTP, no protocol."""
    from schemas.visits import VisitNoteSchema
    from server import create_app
    from server.services import visits
    from server.services.actors import Actor

    notes = outbox_notes(spec.home)
    app = create_app({"DATABASE_URL": url, "LOG_LEVEL": "WARNING"})
    maker = app.extensions["db_writer_sessionmaker"]  # the app's: change log numbering, BEGIN IMMEDIATE
    actor = Actor(user_id=uuid.UUID(spec.cadre_id), role=Role.cadre, device_id=uuid.UUID(spec.device_id))
    schema = VisitNoteSchema()
    latencies = []
    load0 = _load1()
    started, cpu = time.perf_counter(), time.process_time()
    for i in range(0, len(notes), BATCH):
        t = time.perf_counter()
        with maker() as session:
            batch = [schema.load(note) for note in notes[i : i + BATCH]]
            screen = visits.NewNotes(session, batch)
            if not all(screen.admit(data) for data in batch):
                raise SystemExit("ceiling: a queued note was not new")
            visits.insert_notes(session, actor, [visits.note_rows(actor, data) for data in batch])
            session.commit()
        latencies.append(time.perf_counter() - t)
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    app.extensions["db_engine"].dispose()
    return Scenario("ceiling", "ceiling: in-process insert_notes", 1, len(notes), seconds, latencies, BATCH,
                    stored=stored_counts(url), load=(load0, _load1()), server_cpu=cpu)  # fmt: skip


def _work_homes(specs: list[DeviceSpec], work: Path, base: str, tokens: dict[str, str]) -> list[str]:
    """Copies of the cached stores, pointed at this server with their device's token."""
    from client_sync.store import Store

    homes = []
    for spec in specs:
        home = work / Path(spec.home).parent.name / Path(spec.home).name
        shutil.rmtree(home, ignore_errors=True)
        shutil.copytree(spec.home, home)
        store = Store(home / "client.db")
        store.set(server_url=base, token=tokens[spec.device_id])
        store.close()
        homes.append(str(home))
    return homes


def over_http(
    kind: str, template: str, tokens: dict[str, str], work: Path, key: str, label: str, specs: list[DeviceSpec]
) -> Scenario:
    """A scenario against a fresh database and a fresh gunicorn -w 2: 'naive' POSTs or 'batch' syncs."""
    url = fresh_copy(kind, template)
    server = Gunicorn(url, dataset.RESULTS / f"gunicorn-sync-{kind}.log")
    try:
        server.wait_ready()
        memory = ServerMemory(server.process.pid)
        memory.start()
        notes = sum(s.notes for s in specs)
        load0 = _load1()
        if key.startswith("naive"):
            args = [(s.home, server.base, tokens[s.device_id]) for s in specs]
            cpu = memory.cpu()
            results = in_processes("post", args, timeout=4 * 3600)
        else:
            homes = _work_homes(specs, work, server.base, tokens)
            cpu = memory.cpu()
            results = in_processes("sync", [(h,) for h in homes], timeout=4 * 3600)
        total_cpu = memory.cpu() - cpu
        load1 = _load1()
        server_mem = memory.stop()
        push_cpu = memory.cpu_at(max(r["pushed_at"] for r in results)) - cpu
    finally:
        server.stop()
        shutil.rmtree(work, ignore_errors=True)
    stored = stored_counts(url)
    drop_copy(kind)
    acknowledged = sum(r["acknowledged"] for r in results)
    if acknowledged != notes or stored["visits"] != notes or stored["problems"] != notes * PROBLEMS_PER_NOTE:
        detail = [r.get("statuses") or r.get("report") for r in results][:2]
        raise SystemExit(f"{label}: {acknowledged:,} acknowledged, stored {stored}, of {notes:,} notes: {detail}")
    started = min(r["started"] for r in results)
    return Scenario(
        key, label, len(specs), notes,
        seconds=max(r["pushed_at"] for r in results) - started,
        latencies=[t for r in results for t in r["push_seconds"]],
        batch=1 if key.startswith("naive") else BATCH,
        total_seconds=max(r["ended"] for r in results) - started,
        server=server_mem,
        client_peak_mb=max(r["peak_mb"] for r in results),
        client_idle_mb=max(r["idle_mb"] for r in results),
        stored=stored,
        load=(load0, load1),
        server_cpu=push_cpu,
        server_cpu_total=total_cpu,
        client_cpu=sum(r["cpu"] for r in results),
        replayed=sum(r.get("replayed", 0) for r in results),
    )  # fmt: skip


# --- pull cost --------------------------------------------------------------------------------


def prepare_pull_db(kind: str, rows: int) -> str:
    """A database with `rows` visits and problems (1:3), each numbered in change_log (cached)."""
    size = dataset.Size(rows // 4, rows - rows // 4)
    load_kw: dict[str, Any] = {"search": False, "change_log": True}
    if kind == "postgresql":
        name = f"bench_sync_pull_{rows}"
        try:
            if stored_counts(dataset.postgres_url(name))["change_log"] == rows:
                return dataset.postgres_url(name)
        except Exception:  # noqa: BLE001 - missing or broken: build it
            pass
        # Built under this run's own name, then renamed: never drops a database another run is filling.
        dataset.prepare_postgresql(size, name=f"{name}_{RUN_ID}", **load_kw)
        with psycopg.connect(dataset.libpq(), autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            conn.execute(f'ALTER DATABASE "{name}_{RUN_ID}" RENAME TO "{name}"')
        return dataset.postgres_url(name)
    cache = dataset.RESULTS / f"sync-pull-v{PULL_VERSION}-{rows}.db"
    if not cache.exists():
        building = _work(f"pull-{rows}.building")
        _say(f"building {cache.name} (cached for later runs)")
        dataset.load(f"sqlite:///{building}", size, **load_kw)
        building.rename(cache)
    work = _work(f"pull-{rows}.db")
    for old in dataset.RESULTS.glob(work.name + "*"):
        old.unlink()
    shutil.copyfile(cache, work)
    return f"sqlite:///{work}"


def _pull_cursor(url: str, cadre_id: str) -> tuple[int, list[str]]:
    """The change number PULL_LIMIT changes behind the head among those this cadre receives; the portfolio."""
    engine = db.make_engine(url)
    uid = uuid.UUID(cadre_id)
    try:
        with Session(engine) as s:
            portfolio = list(s.scalars(select(PortfolioEntry.target_id).where(PortfolioEntry.user_id == uid)))
            c = ChangeLogEntry
            visible = or_(c.scope == "all", c.owner_id == uid, and_(c.scope == "target", c.target_id.in_(portfolio)))
            cursor = s.scalar(
                select(c.change_no).where(visible).order_by(c.change_no.desc()).offset(PULL_LIMIT).limit(1)
            )
    finally:
        engine.dispose()
    if cursor is None:
        raise SystemExit(f"cadre {cadre_id} receives fewer than {PULL_LIMIT + 1} changes: use more --pull-rows")
    return int(cursor), [str(t) for t in portfolio]


def run_pulls(kind: str, sizes: list[int], spec: DeviceSpec, reps: int) -> list[dict[str, Any]]:
    """Time POST /sync/pull of one page of PULL_LIMIT changes near the head, `reps` times at each size.

    One gunicorn per size, all up at once, and the pulls taken in turn (A, B, A, B …), so that
    a change in the machine's load weighs on every size alike.
    """
    from client_sync.version import __version__

    setups = []
    for rows in sizes:
        url = prepare_pull_db(kind, rows)
        token = add_devices(url, [spec])[spec.device_id]
        cursor, portfolio = _pull_cursor(url, spec.cadre_id)
        headers = {"Authorization": f"Bearer {token}", "X-Client-Protocol": str(PROTOCOL_VERSION),
                   "X-Client-Version": __version__}  # fmt: skip
        body = {"cursor": str(cursor), "limit": PULL_LIMIT, "targets": portfolio}
        setups.append((rows, url, cursor, headers, body, stored_counts(url)))
    servers = [Gunicorn(url, dataset.RESULTS / f"gunicorn-sync-{kind}-pull-{rows}.log") for rows, url, *_ in setups]
    session = requests.Session()
    timings: list[list[float]] = [[] for _ in setups]
    load0 = _load1()
    try:
        for server in servers:
            server.wait_ready()
        for i in range(reps + 5):  # 5 to warm up: the token's first use, each worker's caches
            for (rows, _url, _cursor, headers, body, _counts), server, times in zip(
                setups, servers, timings, strict=True
            ):
                t = time.perf_counter()
                response = session.post(server.base + PULL_PATH, json=body, headers=headers, timeout=(5, 60))
                elapsed = time.perf_counter() - t
                if response.status_code != 200 or len(response.json()["changes"]) != PULL_LIMIT:
                    raise SystemExit(f"pull at {rows:,} rows answered {response.status_code}: {response.text[:300]}")
                if i >= 5:
                    times.append(elapsed)
    finally:
        for server in servers:
            server.stop()
    if kind == "sqlite":
        for old in dataset.RESULTS.glob(_work("pull-*").name):
            old.unlink()
    load = (load0, _load1())
    return [
        {
            "rows": counts["change_log"],
            "records": counts["visits"] + counts["problems"],
            "cursor": cursor,
            "n": len(times),
            "p50_ms": round(percentile(times, 50) * 1000, 2),
            "p95_ms": round(percentile(times, 95) * 1000, 2),
            "load": load,
        }
        for (_rows, _url, cursor, _h, _b, counts), times in zip(setups, timings, strict=True)
    ]


# --- the run ----------------------------------------------------------------------------------


def run(kind: str, *, notes: int, devices: int, backlog: int, pull_rows: list[int], pull_reps: int) -> dict[str, Any]:
    started = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    load_start = os.getloadavg()
    _say(f"[{kind}] template database (directory only)")
    template = prepare_template(kind)
    d = read_directory(template)
    homes = dataset.RESULTS / f"sync-homes-v{HOMES_VERSION}-{d.fingerprint}"
    one = device_specs(d, homes, "one", notes, 1)
    many = device_specs(d, homes, "many", notes, devices)
    big = device_specs(d, homes, "backlog", backlog, 1) if backlog else []
    build_homes([one, many, big], d)
    tokens = add_devices(template, one + many + big)
    settings = durability(template)
    note_bytes = len(json.dumps(outbox_notes(one[0].home)[0], ensure_ascii=False).encode())
    work = _work("homes")
    scenarios: list[Scenario] = []

    def step(label: str, make: Callable[[], Scenario]) -> None:
        _say(f"[{kind}] {label}")
        s = make()
        scenarios.append(s)
        extra = f", whole sync {s.total_seconds:.1f} s" if s.total_seconds and s.batch > 1 else ""
        _say(f"  {s.notes:,} notes in {s.seconds:.1f} s = {s.rate:.0f} notes/s{extra}; load {s.load}")

    def http(key: str, label: str, specs: list[DeviceSpec]) -> Callable[[], Scenario]:
        return lambda: over_http(kind, template, tokens, work, key, label, specs)

    try:
        step("ceiling", lambda: run_ceiling(fresh_copy(kind, template), one[0]))
        drop_copy(kind)
        step("naive, 1 client", http("naive1", "naive: POST per note", one))
        step(f"naive, {devices} clients", http("naiveN", "naive: POST per note", many))
        step("batch, 1 device", http("batch1", "batch: sync_until_done", one))
        step(f"batch, {devices} devices", http("batchN", "batch: sync_until_done", many))
        if big:
            step(f"backlog, 1 device with {backlog:,} notes", http("backlog", "backlog: sync_until_done", big))
    finally:
        drop_copy(kind)
        drop_template(kind)
    pulls = []
    if pull_rows:
        _say(f"[{kind}] pull {PULL_LIMIT} changes with {' and '.join(f'{r:,}' for r in pull_rows)} rows in change_log")
        pulls = run_pulls(kind, pull_rows, DeviceSpec("pull", 0, 0, *d.cadres[0], str(uuid.uuid4()), ""), pull_reps)
        for p in pulls:
            _say(f"  {p['rows']:,} rows: p50 {p['p50_ms']:.1f} ms, p95 {p['p95_ms']:.1f} ms")
    return {
        "database": kind,
        "started": started,
        "cpus": os.cpu_count(),
        "load_start": [round(x, 2) for x in load_start],
        "load_end": [round(x, 2) for x in os.getloadavg()],
        "durability": settings,
        "workers": 2,
        "note_bytes": note_bytes,
        "scenarios": [s.summary() for s in scenarios],
        "pulls": pulls,
        "targets": targets(scenarios, pulls, devices),
    }


def targets(scenarios: list[Scenario], pulls: list[dict[str, Any]], devices: int) -> list[dict[str, Any]]:
    by = {s.key: s for s in scenarios}
    out = []
    ceiling = by["ceiling"].rate
    for n, batch, naive in ((1, by["batch1"], by["naive1"]), (devices, by["batchN"], by["naiveN"])):
        ratio = batch.rate / ceiling
        out.append({"target": f"batch, {n} device(s) >= {CEILING_RATIO}x ceiling", "value": round(ratio, 2),
                    "pass": ratio >= CEILING_RATIO})  # fmt: skip
        ratio = batch.rate / naive.rate
        out.append({"target": f"batch, {n} device(s) >= {NAIVE_RATIO:.0f}x naive with {n} client(s)",
                    "value": round(ratio, 1), "pass": ratio >= NAIVE_RATIO})  # fmt: skip
    if "backlog" in by:
        peak = by["backlog"].client_peak_mb or 0.0
        out.append({"target": f"{by['backlog'].notes:,}-note backlog: client peak RSS < {BACKLOG_MB:.0f} MB",
                    "value": peak, "pass": peak < BACKLOG_MB})  # fmt: skip
    if len(pulls) >= 2:
        small, large = pulls[0], pulls[-1]
        ratio = large["p50_ms"] / small["p50_ms"]
        out.append({"target": f"pull {PULL_LIMIT}: p50 at {large['rows']:,} rows <= {PULL_RATIO}x at {small['rows']:,}",
                    "value": round(ratio, 3), "pass": ratio <= PULL_RATIO})  # fmt: skip
    for n, batch in ((1, by["batch1"]), (devices, by["batchN"])):
        odk = ODK[1] if n == 1 else ODK[8]
        aim = f"aim: batch, {n} device(s) >= {ODK_AIM}x ODK Central ({odk:.0f}/s) = {ODK_AIM * odk:,.0f}/s"
        out.append({"target": aim, "value": round(batch.rate, 1), "pass": batch.rate >= ODK_AIM * odk})
    return out


def _fmt(v: float | None, spec: str = ".1f") -> str:
    return "-" if v is None else format(v, spec)


def report(result: dict[str, Any]) -> Iterator[str]:
    by = {s["key"]: s for s in result["scenarios"]}
    ceiling = by["ceiling"]["notes_per_s"]
    yield (f"Issue 3 offline sync benchmark: {result['database']} ({result['durability']}), gunicorn -w "
           f"{result['workers']}, {result['cpus']} CPUs; a note is {result['note_bytes']:,} bytes of JSON "
           f"(about {SUMMARY_BYTES:,} bytes of summary and {PROBLEMS_PER_NOTE} problems)")  # fmt: skip
    yield (f"load average (1 min) {result['load_start'][0]:.1f} at the start, {result['load_end'][0]:.1f} at the end; "
           "each scenario's before/after in the JSON")  # fmt: skip
    yield (f"{'scenario':<34} {'clients':>7} {'notes':>7} {'seconds':>8} {'notes/s':>8} {'p95 ms':>8} {'srv CPU':>8} "
           f"{'cli CPU':>8} {'server MB':>9} {'client MB':>9} {'x ceiling':>9} {'x naive':>7}")  # fmt: skip
    for s in result["scenarios"]:
        naive = by.get("naive1" if s["clients"] == 1 else "naiveN", {}).get("notes_per_s")
        x_naive = s["notes_per_s"] / naive if naive and s["key"].startswith("batch") else None
        per = "batch" if s["batch"] > 1 else "POST"
        yield (f"{s['label']:<34} {s['clients']:>7} {s['notes']:>7,} {s['seconds']:>8.1f} {s['notes_per_s']:>8.0f} "
               f"{_fmt(s['p95_ms'], '.0f'):>8} {_fmt(s['server_cpu_ms_per_note'], '.2f'):>8} "
               f"{_fmt(s['client_cpu_ms_per_note'], '.2f'):>8} {_fmt(s.get('server_peak_mb')):>9} "
               f"{_fmt(s['client_peak_mb']):>9} {s['notes_per_s'] / ceiling:>9.2f} {_fmt(x_naive):>7}"
               f"  (p95 per {per})")  # fmt: skip
    yield "  srv CPU: CPU ms per note of gunicorn's processes until the last note was acknowledged"
    yield "  (ceiling: of the inserting process); cli CPU: of the clients, whole sync; PostgreSQL's not counted"
    for s in result["scenarios"]:
        if s["total_seconds"] and s["batch"] > 1:
            yield (f"  {s['key']}: the whole sync (push, then the pull that brings the notes back) took "
                   f"{s['total_seconds']:.1f} s = {s['notes'] / s['total_seconds']:.0f} notes/s; "
                   f"{s['requests']} pushes, {s['replayed']} changes answered again after a resend")  # fmt: skip
    for p in result["pulls"]:
        yield (f"pull {PULL_LIMIT} changes, {p['rows']:>9,} rows in change_log: p50 {p['p50_ms']:7.1f} ms, "
               f"p95 {p['p95_ms']:7.1f} ms ({p['n']} pulls)")  # fmt: skip
    for t in result["targets"]:
        yield f"{t['target']:<78} {t['value']:>9g}  {verdict(t['pass'])}"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.sync", description=__doc__.splitlines()[0])
    parser.add_argument("--db", choices=["sqlite", "postgresql"], required=True)
    parser.add_argument("--notes", type=int, default=10_000, help="notes synced, from 1 device and from --devices")
    parser.add_argument("--devices", type=int, default=20, help="devices syncing at once (one process each)")
    parser.add_argument("--backlog", type=int, default=50_000, help="notes of the one-device backlog run (0: skip)")
    parser.add_argument("--pull-rows", default="10000,1000000", help="change_log sizes of the pull timing ('': skip)")
    parser.add_argument("--pull-reps", type=int, default=100, help="timed pulls at each size")
    parser.add_argument("--json", type=Path, help="also write the results to this file")
    args = parser.parse_args(argv)
    pull_rows = [int(x) for x in args.pull_rows.split(",") if x.strip()]
    result = run(args.db, notes=args.notes, devices=args.devices, backlog=args.backlog, pull_rows=pull_rows,
                 pull_reps=args.pull_reps)  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps(result, ensure_ascii=False, indent=2), encoding="utf-8")
    print("\n".join(report(result)))


if __name__ == "__main__":
    main()
