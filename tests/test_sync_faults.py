"""2,000 notes through the real server and the real device library, under faults.

Whatever happens — the server SIGKILLed at random moments, the device process killed mid-sync,
a network that drops, delays and resets connections (also after the server committed), every
push sent twice, the device clock a day off — the server ends with exactly the notes the
device wrote, each once, byte-identical.
"""

from __future__ import annotations

import datetime as dt
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import requests
from sqlalchemy import func, select

from client_sync import Client
from client_sync.transport import Backoff
from server import db
from server.db.models import Problem, Visit
from tests.factories import PASSWORD
from tests.fault_proxy import FaultProxy, Faults
from tests.servers import ROOT, ServerProcess

pytestmark = pytest.mark.slow

NOTES = int(os.environ.get("FAULT_NOTES", "2000"))
TEXT = "走访企业，了解生产经营情况，企业反映融资难融资贵、招工难、人才住房紧张等问题。"


def write_notes(client: Client, world: Any, n: int, *, skew: dt.timedelta = dt.timedelta(0)) -> dict[str, str]:
    """n notes written offline; returns {note id: summary}."""
    written = {}
    base = dt.datetime(2026, 11, 20, 9, 0, tzinfo=dt.UTC) + skew
    for i in range(n):
        summary = f"第{i:04d}号记录：{TEXT}{'详' * (i % 7)}"
        note = client.add_note(
            target_id=str(world.firm),
            campaign_id=str(world.campaign),
            summary=summary,
            service_categories=["research", "financial_support"],
            visited_at=(base + dt.timedelta(minutes=i)).isoformat(),
            problems=[{"category": "financing", "description": f"融资难 {i}"}, f"用工:招工难 {i}"],
        )
        written[note["id"]] = summary
    return written


def device(tmp_path: Path, url: str, **kw: Any) -> Client:
    client = Client(tmp_path / "phone", server_url=url, timeout=5, retries=2, backoff=Backoff(base=0.05, cap=0.5), **kw)
    client.login("cadre", PASSWORD)
    report = client.sync()  # first pull: targets and campaigns for offline work
    assert report.ok, report.as_dict()
    return client


def server_notes(app: Any) -> dict[str, tuple[str, int]]:
    with app.app_context(), db.read_session(app) as s:
        visits = {str(v.id): v.summary for v in s.scalars(select(Visit))}
        problems: dict[str, int] = {}
        for p in s.scalars(select(Problem)):
            problems[str(p.visit_id)] = problems.get(str(p.visit_id), 0) + 1
    return {vid: (summary, problems.get(vid, 0)) for vid, summary in visits.items()}


def assert_exactly(app: Any, written: dict[str, str]) -> None:
    stored = server_notes(app)
    assert set(stored) == set(written), (len(stored), len(written))
    for note_id, summary in written.items():
        assert stored[note_id] == (summary, 2), note_id


def finish(client: Client) -> None:
    report = client.sync_until_done(max_rounds=100)
    assert report.done, report.as_dict()
    assert client.status()["queue_depth"] == 0


def stored_count(app: Any) -> int:
    with app.app_context(), db.read_session(app) as s:
        return int(s.scalar(select(func.count()).select_from(Visit)) or 0)


def test_server_killed_at_random_moments(app, world, db_url, tmp_path):
    """SIGKILL whenever the server has stored another random share of the notes (not on a timer)."""
    server = ServerProcess(db_url, tmp_path / "srv").start()
    client = device(tmp_path, server.url)
    written = write_notes(client, world, NOTES)
    rng = random.Random(7)
    batch = max(10, NOTES // 20)
    # Kill points spread over the sync, at least two batches apart, so each is crossed on its own.
    points = sorted(rng.sample(range(batch, NOTES - batch, 2 * batch), 6))
    done = threading.Event()
    kills = 0

    def killer() -> None:
        nonlocal kills
        for point in points:
            while not done.is_set() and stored_count(app) < point:
                time.sleep(0.01)
            if done.is_set():
                return
            server.kill()
            kills += 1
            time.sleep(rng.uniform(0, 0.3))  # the device sees refused connections meanwhile
            server.start()

    thread = threading.Thread(target=killer)
    thread.start()
    try:
        deadline = time.monotonic() + 600
        while (thread.is_alive() or client.status()["queue_depth"]) and time.monotonic() < deadline:
            client.sync_until_done(max_rounds=5, batch_size=batch)
        done.set()
        thread.join()
        finish(client)
    finally:
        done.set()
        thread.join()
        server.stop()
        client.close()
    assert kills == len(points)
    assert_exactly(app, written)


def test_device_killed_mid_sync_many_times(app, world, db_url, tmp_path):
    server = ServerProcess(db_url, tmp_path / "srv").start()
    client = device(tmp_path, server.url)
    written = write_notes(client, world, NOTES)
    client.close()
    rng = random.Random(11)
    try:
        for _ in range(8):
            proc = subprocess.Popen(
                [sys.executable, "-m", "client_sync", "--home", str(tmp_path / "phone"), "sync", "--json"],
                cwd=ROOT,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            time.sleep(rng.uniform(0.3, 1.5))
            proc.send_signal(signal.SIGKILL)
            proc.wait()
        with Client(tmp_path / "phone") as again:
            finish(again)
    finally:
        server.stop()
    assert_exactly(app, written)


def test_network_drops_delays_and_resets(app, world, db_url, tmp_path):
    server = ServerProcess(db_url, tmp_path / "srv", workers=2).start()
    faults = Faults(reset_before=0.08, drop_answer=0.15, delay=0.1, max_delay=0.2, seed=3)
    try:
        with FaultProxy(server.port, faults) as proxy:
            client = device(tmp_path, proxy.url)
            written = write_notes(client, world, NOTES)
            for _ in range(40):
                client.sync_until_done(max_rounds=10, batch_size=100)
                if not client.status()["queue_depth"]:
                    break
            finish(client)
            client.close()
    finally:
        server.stop()
    assert faults.counts["drop_answer"] > 0 and faults.counts["reset_before"] > 0
    assert_exactly(app, written)


class TwiceSession(requests.Session):
    """Sends every push twice, over the real network: the second answer is the one the device sees."""

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        if request.method == "POST" and (request.url or "").endswith("/api/v1/sync/push"):
            super().send(request.copy(), **kwargs)
        return super().send(request, **kwargs)


@pytest.mark.parametrize("skew_days", [-1, 1])
def test_every_push_replayed_and_the_clock_a_day_off(app, world, db_url, tmp_path, skew_days):
    server = ServerProcess(db_url, tmp_path / "srv").start()
    try:
        client = device(tmp_path, server.url, session=TwiceSession())
        written = write_notes(client, world, max(NOTES // 4, 50), skew=dt.timedelta(days=skew_days))
        finish(client)
        finish(client)  # a second sync is a no-op
        client.close()
    finally:
        server.stop()
    assert_exactly(app, written)
