"""One client process of bench/sync.py: a device running Client.sync_until_done(), or the naive
design posting its notes one by one. It imports only the device side (client_sync, requests), so
its memory is a device's, not the benchmark's.

    python -m bench.sync_client sync HOME
    python -m bench.sync_client post HOME BASE_URL TOKEN

Protocol with the parent: the process prepares, prints "ready", waits for a line on stdin (the
start, given to every client at once), works, then prints one JSON object with its figures.
Times are on time.monotonic(), which all processes of the machine share.
"""

from __future__ import annotations

import json
import os
import sqlite3
import sys
import time
from pathlib import Path
from typing import Any

import requests

PUSH_PATH = "/api/v1/sync/push"
PULL_PATH = "/api/v1/sync/pull"


def status_kb(pid: int, key: str) -> int:
    """A VmRSS / VmHWM … line of /proc/<pid>/status, in KB (0 if the process is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def peak_rss_mb() -> float:
    """This process's peak resident memory (VmHWM: ru_maxrss would keep the parent's across fork and exec)."""
    return round(status_kb(os.getpid(), "VmHWM") / 1024, 1)


def outbox_notes(home: str) -> list[dict[str, Any]]:
    """The visit.create payloads of a device's outbox, in seq order, as a POST /visits body."""
    conn = sqlite3.connect(f"file:{Path(home) / 'client.db'}?mode=ro", uri=True)
    try:
        rows = conn.execute("SELECT record_id, payload FROM outbox WHERE kind = 'visit.create' ORDER BY seq").fetchall()
    finally:
        conn.close()
    return [{**json.loads(payload), "id": record_id} for record_id, payload in rows]


class TimedSession(requests.Session):
    """Records how long each push and pull request took (the body read included)."""

    def __init__(self) -> None:
        super().__init__()
        self.pushes: list[tuple[float, float]] = []  # (started, seconds)
        self.pulls: list[float] = []

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        started = time.monotonic()
        response = super().send(request, **kwargs)
        seconds = time.monotonic() - started
        path = (request.url or "").split("?")[0]
        if request.method == "POST" and path.endswith(PUSH_PATH):
            self.pushes.append((started, seconds))
        elif request.method == "POST" and path.endswith(PULL_PATH):
            self.pulls.append(seconds)
        return response


def _ready() -> None:
    print("ready", flush=True)
    sys.stdin.readline()  # the start


def sync_device(home: str) -> dict[str, Any]:
    """One device: Client.sync_until_done() with every push and pull timed."""
    from client_sync import Client

    session = TimedSession()
    # A longer read timeout than a phone's default 30 s: 20 devices on 2 workers queue for minutes on a
    # loaded machine, and a timed-out push is sent again (answered as a replay), which is work measured twice.
    client = Client(home, session=session, timeout=(5.0, 300.0))
    idle_mb = peak_rss_mb()
    _ready()
    started, cpu = time.monotonic(), time.process_time()
    report = client.sync_until_done(max_rounds=20)
    ended, cpu = time.monotonic(), time.process_time() - cpu
    acknowledged = client.store.scalar("SELECT count(*) FROM outbox WHERE status = 'acknowledged'")
    pending = client.store.scalar("SELECT count(*) FROM outbox WHERE status IN ('queued', 'sent')")
    client.close()
    return {
        "started": started,
        "pushed_at": max((s + t for s, t in session.pushes), default=started),
        "ended": ended,
        "cpu": cpu,
        "push_seconds": [t for _, t in session.pushes],
        "pull_seconds": session.pulls,
        "acknowledged": int(acknowledged),
        "replayed": sum(lane.counts.get("replayed", 0) for lane in report.lanes),
        "pending": int(pending),
        "done": report.done,
        "report": report.as_dict(),
        "idle_mb": idle_mb,
        "peak_mb": peak_rss_mb(),
    }


def post_notes(home: str, base: str, token: str) -> dict[str, Any]:
    """The naive client: one POST /api/v1/visits per note, on one keep-alive session."""
    notes = outbox_notes(home)
    session = requests.Session()
    headers = {"Authorization": f"Bearer {token}"}
    idle_mb = peak_rss_mb()
    _ready()
    started, cpu = time.monotonic(), time.process_time()
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    for note in notes:
        t = time.monotonic()
        response = session.post(base + "/api/v1/visits", json=note, headers=headers, timeout=(5, 60))
        latencies.append(time.monotonic() - t)
        statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
    ended, cpu = time.monotonic(), time.process_time() - cpu
    return {
        "started": started,
        "pushed_at": ended,
        "ended": ended,
        "cpu": cpu,
        "push_seconds": latencies,
        "pull_seconds": [],
        "acknowledged": statuses.get(201, 0),
        "statuses": {str(k): v for k, v in statuses.items()},
        "idle_mb": idle_mb,
        "peak_mb": peak_rss_mb(),
    }


def main(argv: list[str]) -> None:
    work, args = argv[0], argv[1:]
    result = sync_device(*args) if work == "sync" else post_notes(*args)
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
