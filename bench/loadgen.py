"""A small HTTP load generator: a few concurrent clients on keep-alive connections, loopback only.

Runs in a process of its own so that the server's workers are not slowed by the client's GIL.
Bounded by a request count and a time limit, whichever comes first. Prints one JSON object.

    python -m bench.loadgen --url http://127.0.0.1:8000 --mode version|me|post-visit [--fixtures FILE]

`version` is the app's trivial JSON endpoint (no auth, no database); `me` is GET /api/v1/auth/me
with a cadre's token (authentication, nothing written); `post-visit` posts new visit notes.
"""

from __future__ import annotations

import argparse
import datetime as dt
import http.client
import json
import random
import sys
import threading
import time
import uuid
from typing import Any
from urllib.parse import urlsplit

from bench.stats import percentile
from schemas.enums import ProblemCategory, ServiceCategory
from server.demo import problem_text, visit_summary
from server.domain.periods import SHANGHAI

LOOPBACK = ("127.0.0.1", "localhost", "::1")
TIMEOUT_SECONDS = 30


class Fixtures:
    """What a POST needs: cadre tokens, campaigns and targets (written by bench/foundation.py)."""

    def __init__(self, data: dict[str, Any]) -> None:
        self.tokens: list[str] = data["cadre_tokens"]
        self.campaigns: list[str] = data["campaign_ids"]
        self.targets: list[tuple[str, str]] = [(t[0], t[1]) for t in data["targets"]]


def visit_body(rng: random.Random, fx: Fixtures) -> bytes:
    """A new visit note with a fresh client UUID and 1-3 problems, as a phone would send it."""
    target_id, target_name = rng.choice(fx.targets)
    services = rng.sample(list(ServiceCategory), rng.randint(1, 3))
    visited = dt.datetime.now(SHANGHAI) - dt.timedelta(minutes=rng.randint(5, 600))
    problems = []
    for _ in range(rng.randint(1, 3)):
        category = rng.choice(list(ProblemCategory))
        problems.append(
            {"id": str(uuid.uuid4()), "category": category.value, "description": problem_text(rng, category)}
        )
    body = {
        "id": str(uuid.uuid4()),
        "campaign_id": rng.choice(fx.campaigns),
        "target_id": target_id,
        "visited_at": visited.isoformat(timespec="seconds"),
        "service_categories": [s.value for s in services],
        "summary": visit_summary(rng, target_name, services),
        "location_text": "企业厂区",
        "problems": problems,
    }
    return json.dumps(body, ensure_ascii=False).encode()


class Run:
    def __init__(self, max_requests: int, seconds: float) -> None:
        self.lock = threading.Lock()
        self.issued = 0
        self.max_requests = max_requests
        self.deadline = time.perf_counter() + seconds
        self.latencies: list[float] = []
        self.statuses: dict[int, int] = {}
        self.failures: list[str] = []

    def take(self) -> bool:
        with self.lock:
            if self.issued >= self.max_requests or time.perf_counter() >= self.deadline:
                return False
            self.issued += 1
            return True

    def record(self, status: int, seconds: float) -> None:
        with self.lock:
            self.statuses[status] = self.statuses.get(status, 0) + 1
            self.latencies.append(seconds)


def _client(index: int, host: str, port: int, mode: str, fx: Fixtures | None, run: Run) -> None:
    rng = random.Random(index)
    conn = http.client.HTTPConnection(host, port, timeout=TIMEOUT_SECONDS)
    token = fx.tokens[index % len(fx.tokens)] if fx else None
    try:
        while run.take():
            if mode == "post-visit":
                assert fx is not None
                body = visit_body(rng, fx)
                headers = {"Content-Type": "application/json", "Authorization": f"Bearer {token}"}
                method, path = "POST", "/api/v1/visits"
            elif mode == "me":
                body, headers, method, path = b"", {"Authorization": f"Bearer {token}"}, "GET", "/api/v1/auth/me"
            else:
                body, headers, method, path = b"", {}, "GET", "/api/v1/version"
            started = time.perf_counter()
            try:
                # http.client reconnects by itself when the server closed the connection
                # (gunicorn's sync workers close after every response).
                conn.request(method, path, body=body or None, headers=headers)
                response = conn.getresponse()
                response.read()
            except (OSError, http.client.HTTPException) as e:
                conn.close()
                with run.lock:
                    run.failures.append(f"{type(e).__name__}: {e}")
                continue
            run.record(response.status, time.perf_counter() - started)
    finally:
        conn.close()


def drive(
    url: str, mode: str, *, clients: int, max_requests: int, seconds: float, fx: Fixtures | None
) -> dict[str, Any]:
    parts = urlsplit(url)
    if parts.hostname not in LOOPBACK:
        raise SystemExit(f"refusing to load {parts.hostname}: loopback only")
    host, port = parts.hostname, parts.port or 80
    run = Run(max_requests, seconds)
    threads = [threading.Thread(target=_client, args=(i, host, port, mode, fx, run)) for i in range(clients)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - started
    ok = sum(n for status, n in run.statuses.items() if 200 <= status < 300)
    lat = run.latencies
    return {
        "mode": mode,
        "clients": clients,
        "requests": len(lat),
        "ok": ok,
        "statuses": {str(k): v for k, v in sorted(run.statuses.items())},
        "failures": len(run.failures),
        "first_failure": run.failures[0] if run.failures else None,
        "seconds": round(elapsed, 3),
        "rps": round(ok / elapsed, 1) if elapsed else 0.0,
        "p50_ms": round(percentile(lat, 50) * 1000, 2) if lat else None,
        "p95_ms": round(percentile(lat, 95) * 1000, 2) if lat else None,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.loadgen", description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--mode", choices=["version", "me", "post-visit"], required=True)
    parser.add_argument("--fixtures", help="JSON file with cadre_tokens, campaign_ids, targets (me, post-visit)")
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--max-requests", type=int, default=50_000)
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args(argv)
    fx = None
    if args.mode in ("me", "post-visit"):
        if not args.fixtures:
            parser.error(f"--fixtures is needed for {args.mode}")
        with open(args.fixtures, encoding="utf-8") as f:
            fx = Fixtures(json.load(f))
    result = drive(
        args.url, args.mode, clients=args.clients, max_requests=args.max_requests, seconds=args.seconds, fx=fx
    )
    json.dump(result, sys.stdout)
    print()


if __name__ == "__main__":
    main()
