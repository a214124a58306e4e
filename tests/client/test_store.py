"""The device's store: forward migrations that keep unsent changes, and survival of SIGKILL."""

from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import pytest

from client_sync import StoreError, UsageError, store
from client_sync.store import SCHEMA_VERSION, Store
from tests.client.conftest import make_client, write_note

ROOT = Path(__file__).resolve().parents[2]


def test_a_new_store_has_the_latest_schema_and_a_device_id(tmp_path):
    s = Store(tmp_path / "client.db")
    assert s.user_version == SCHEMA_VERSION
    assert uuid.UUID(s.device_id)
    assert s.get("next_seq") == 1
    assert s.scalar("PRAGMA journal_mode") == "wal"
    assert s.scalar("PRAGMA synchronous") == 2  # FULL
    device = s.device_id
    s.close()
    assert Store(tmp_path / "client.db").device_id == device  # made once, kept


def _v1_with_unsent_changes(path: Path) -> list[int]:
    """A database as the first release left it: notes written offline and never sent."""
    s = Store(path, migrate_to=1)
    assert s.user_version == 1
    with s.transaction() as db:
        for seq in (1, 2, 3):
            note_id = str(uuid.uuid4())
            payload = {
                "id": note_id,
                "campaign_id": str(uuid.uuid4()),
                "target_id": str(uuid.uuid4()),
                "visited_at": "2026-11-20T10:30:00+08:00",
                "service_categories": ["research"],
                "summary": f"第{seq}条离线走访记录",
                "problems": [],
                "attachments": [],
            }
            db.execute(
                "INSERT INTO outbox (seq, kind, record_id, note_id, payload, status, attempts, created_at, updated_at)"
                " VALUES (?, 'visit.create', ?, ?, ?, ?, 0, '2026-11-20', '2026-11-20')",
                [seq, note_id, note_id, json.dumps(payload), "sent" if seq == 3 else "queued"],
            )
            db.execute("INSERT INTO notes VALUES (?, ?, 0, '2026-11-20', '2026-11-20')", [note_id, json.dumps(payload)])
            db.execute("INSERT INTO records VALUES (?, 'visit', ?, 1, NULL)", [note_id, note_id])
        s.put(db, next_seq=4)
    s.close()
    return [1, 2, 3]


def test_an_older_schema_with_unsent_changes_migrates_and_sends_them(tmp_path, fake, sleeps):
    app, server = fake
    home = tmp_path / "home"
    seqs = _v1_with_unsent_changes(home / "client.db")
    client = make_client(home, server.url, sleeps)
    assert client.store.user_version == SCHEMA_VERSION
    assert [r["seq"] for r in client.store.rows("SELECT seq FROM outbox ORDER BY seq")] == seqs
    columns = {r["name"] for r in client.store.rows("PRAGMA table_info(outbox)")}
    assert {"result", "conflict_id", "resolution"} <= columns
    client.login("cadre", "pw")
    report = client.sync()
    assert report.done, report.as_dict()
    assert [c["seq"] for c in app.applied] == seqs  # the same seqs, never renumbered
    assert client.status()["counts"]["acknowledged"] == 3
    client.close()


def test_a_migration_that_would_lose_unsent_changes_is_rolled_back(tmp_path, monkeypatch):
    path = tmp_path / "client.db"
    _v1_with_unsent_changes(path)

    def careless(conn: sqlite3.Connection) -> None:
        conn.execute("DELETE FROM outbox WHERE seq = 2")
        conn.execute("ALTER TABLE outbox ADD COLUMN result TEXT")

    monkeypatch.setattr(store, "MIGRATIONS", [store.MIGRATIONS[0], careless])
    with pytest.raises(StoreError, match="lose unsent"):
        Store(path)
    raw = sqlite3.connect(path)
    assert raw.execute("PRAGMA user_version").fetchone()[0] == 1
    assert raw.execute("SELECT count(*) FROM outbox").fetchone()[0] == 3
    assert "result" not in {r[1] for r in raw.execute("PRAGMA table_info(outbox)")}


def test_a_store_from_a_newer_app_is_refused_untouched(tmp_path):
    path = tmp_path / "client.db"
    Store(path).close()
    raw = sqlite3.connect(path)
    raw.execute("PRAGMA user_version = 99")
    raw.commit()
    raw.close()
    with pytest.raises(StoreError, match="schema 99"):
        Store(path)
    assert sqlite3.connect(path).execute("PRAGMA user_version").fetchone()[0] == 99


def test_a_failed_write_leaves_nothing_behind(tmp_path, sleeps):
    from client_sync import local, notes

    client = make_client(tmp_path / "home", None, sleeps)
    note_id = write_note(client)
    before = client.store.get("next_seq")
    again = notes.new_note(
        note_id=note_id, target_id=str(uuid.uuid4()), campaign_id=str(uuid.uuid4()), summary="同一编号的另一条记录",
        service_categories=["research"],
    )  # fmt: skip
    with pytest.raises(UsageError):
        local.add_note(client.store, again, [])
    assert client.store.get("next_seq") == before
    assert client.store.scalar("SELECT count(*) FROM outbox") == before - 1
    assert client.note(note_id)["summary"] != "同一编号的另一条记录"


WRITER = textwrap.dedent(
    """
    import random, sys, uuid
    sys.path.insert(0, {root!r})
    from client_sync import Client
    home, photo = sys.argv[1], sys.argv[2]
    rng = random.Random()
    with Client(home) as c:
        notes = [n["id"] for n in c.notes()]
        print("ready", flush=True)
        while True:
            roll = rng.random()
            if roll < 0.5 or not notes:
                problems = [f"融资:第{{i}}个问题" for i in range(rng.randint(0, 3))]
                n = c.add_note(target_id=str(uuid.uuid4()), campaign_id=str(uuid.uuid4()), summary="走访" * 50,
                               service_categories=["research"], problems=problems)
                notes.append(n["id"])
            elif roll < 0.8:
                c.edit_note(rng.choice(notes), summary="改过的走访情况" * rng.randint(1, 20))
            elif roll < 0.9:
                c.add_problem(rng.choice(notes), "labor", "招工难")
            else:
                c.attach(rng.choice(notes), photo)
    """
)


def _check_consistent(home: Path) -> int:
    """Every invariant a half-done write would break; returns how many changes the outbox holds."""
    raw = sqlite3.connect(home / "client.db")
    assert raw.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    raw.close()
    s = Store(home / "client.db")
    seqs = [r["seq"] for r in s.rows("SELECT seq FROM outbox ORDER BY seq")]
    assert seqs == list(range(1, len(seqs) + 1))  # no gap, no duplicate
    assert s.get("next_seq") == len(seqs) + 1  # the seq was taken in the same transaction
    notes = {r["id"]: json.loads(r["data"]) for r in s.rows("SELECT id, data FROM notes")}
    creates = s.rows("SELECT record_id FROM outbox WHERE kind = 'visit.create'")
    assert sorted(r["record_id"] for r in creates) == sorted(notes)
    for note_id, data in notes.items():
        updates = s.scalar("SELECT count(*) FROM outbox WHERE kind = 'visit.update' AND record_id = ?", [note_id])
        assert s.scalar("SELECT version FROM records WHERE id = ?", [note_id]) == 1 + updates
        added = s.scalar("SELECT count(*) FROM outbox WHERE kind = 'problem.create' AND note_id = ?", [note_id])
        created = s.rows("SELECT payload FROM outbox WHERE kind = 'visit.create' AND record_id = ?", [note_id])
        assert len(data["problems"]) == len(json.loads(created[0]["payload"])["problems"]) + added
    for f in s.rows("SELECT sha256, path FROM files"):
        assert hashlib.sha256(Path(f["path"]).read_bytes()).hexdigest() == f["sha256"]
    for r in s.rows("SELECT payload FROM outbox WHERE kind = 'attachment.add'"):
        assert s.scalar("SELECT count(*) FROM files WHERE sha256 = ?", [json.loads(r["payload"])["sha256"]]) == 1
    s.close()
    return len(seqs)


@pytest.mark.slow
def test_writes_survive_sigkill_at_any_moment(tmp_path):
    home = tmp_path / "home"
    photo = tmp_path / "photo.jpg"
    photo.write_bytes(os.urandom(300_000))
    script = tmp_path / "writer.py"
    script.write_text(WRITER.format(root=str(ROOT)))
    rng = random.Random(3)
    counts = []
    for _ in range(6):
        with subprocess.Popen([sys.executable, str(script), str(home), str(photo)], stdout=subprocess.PIPE) as proc:
            assert proc.stdout is not None and proc.stdout.readline().strip() == b"ready"
            time.sleep(rng.uniform(0.2, 0.8))
            proc.send_signal(signal.SIGKILL)
        counts.append(_check_consistent(home))
    assert counts == sorted(counts) and counts[-1] > counts[0] > 0  # it kept writing, and nothing was lost
