"""`make bench`: every benchmark on SQLite and on PostgreSQL, then one table of the figures.

    python -m bench.run_all [--visits N --problems N --reps N --seconds S] [--notes N --devices D --backlog N]
                            [--bench foundation|sync] [--db sqlite|postgresql]

Each benchmark and database runs in a process of its own (bench/foundation.py, bench/sync.py);
the full results are kept in bench/results/<benchmark>-<db>.json. docs/benchmarks.md says how
to read them.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

from bench import dataset
from bench.foundation import ROOT, verdict

DATABASES = ("sqlite", "postgresql")
BENCHMARKS = ("foundation", "sync")


def table(results: dict[str, dict[str, Any]]) -> Iterator[str]:
    """The figures of every database side by side: p50 / p95 in ms, and the verdicts."""
    dbs = [db for db in DATABASES if db in results]
    first = results[dbs[0]]
    header = f"{'measure':<42}" + "".join(f" {db + ' p50/p95 ms':>24}" for db in dbs) + f" {'target':>9}  verdict"
    yield header
    for i, q in enumerate(first["queries"]):
        cells = "".join(
            f" {results[db]['queries'][i]['p50_ms']:>11.1f} / {results[db]['queries'][i]['p95_ms']:>8.1f}" for db in dbs
        )
        target = f"<{q['target_p95_ms']:.0f} ms" if q["target_p95_ms"] else ""
        verdicts = "/".join(verdict(results[db]["queries"][i]["pass"]) for db in dbs) if q["target_p95_ms"] else ""
        yield f"{q['label']:<42}{cells} {target:>9}  {verdicts}"
    for name, key in (
        ("GET /version on gunicorn, requests/s", "ceiling"),
        ("GET /auth/me on gunicorn, requests/s", "auth"),
        ("POST /visits on gunicorn, requests/s", "post"),
    ):
        cells = "".join(f" {results[db]['throughput'][key]['rps']:>24.1f}" for db in dbs)
        yield f"{name:<42}{cells}"
    cells = "".join(f" {results[db]['throughput']['ratio']:>24.3f}" for db in dbs)
    verdicts = "/".join(verdict(results[db]["throughput"]["pass"]) for db in dbs)
    yield f"{'POST / ceiling':<42}{cells} {'>=0.5':>9}  {verdicts}"
    loads = ", ".join(f"{db} {max(results[db]['load_average'].values()):.2f}" for db in dbs)
    yield f"highest 1-minute load average during the runs ({first['cpus']} CPUs): {loads}"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.run_all", description=__doc__.splitlines()[0])
    parser.add_argument("--visits", type=int, default=dataset.DEFAULT_VISITS)
    parser.add_argument("--problems", type=int, default=dataset.DEFAULT_PROBLEMS)
    parser.add_argument("--reps", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--notes", type=int, default=10_000, help="bench.sync: notes synced")
    parser.add_argument("--devices", type=int, default=20, help="bench.sync: devices syncing at once")
    parser.add_argument("--backlog", type=int, default=50_000, help="bench.sync: notes of the backlog run")
    parser.add_argument("--db", choices=DATABASES, action="append", help="only this database (repeatable)")
    parser.add_argument("--bench", choices=BENCHMARKS, action="append", help="only this benchmark (repeatable)")
    args = parser.parse_args(argv)
    benchmarks = args.bench or BENCHMARKS
    if "foundation" in benchmarks:
        foundation(args)
    if "sync" in benchmarks:
        for db in args.db or DATABASES:
            out = dataset.RESULTS / f"sync-{db}.json"
            cmd = [sys.executable, "-m", "bench.sync", "--db", db, "--json", str(out), "--notes", str(args.notes),
                   "--devices", str(args.devices), "--backlog", str(args.backlog)]  # fmt: skip
            print(f"== {' '.join(cmd[1:])}", flush=True)
            subprocess.run(cmd, cwd=ROOT, check=True)  # it prints its table


def foundation(args: argparse.Namespace) -> None:
    results: dict[str, dict[str, Any]] = {}
    for db in args.db or DATABASES:
        out = dataset.RESULTS / f"foundation-{db}.json"
        dataset.RESULTS.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, "-m", "bench.foundation", "--db", db, "--json", str(out),
               "--visits", str(args.visits), "--problems", str(args.problems),
               "--reps", str(args.reps), "--seconds", str(args.seconds)]  # fmt: skip
        print(f"== {' '.join(cmd[1:])}", flush=True)
        subprocess.run(cmd, cwd=ROOT, check=True)
        results[db] = json.loads(out.read_text(encoding="utf-8"))
    print()
    print("\n".join(table(results)))


if __name__ == "__main__":
    main()
