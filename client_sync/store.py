"""The device's SQLite database (through sqlite-utils): opening, migrations, transactions, state.

Every state change is one transaction (``BEGIN IMMEDIATE`` … ``COMMIT``) on a WAL database
with ``synchronous=FULL``, so the process can be killed at any instruction and the database
holds either the whole change or none of it. Local schema changes migrate forward with
``PRAGMA user_version`` in the same transaction as the change, and a migration that would
lose an unsent change is rolled back.

Tables (see MIGRATIONS for the exact DDL):

- ``state(key, value)``: JSON values: device_id, token, server_url, username, user, cursor,
  backfill, next_seq, needs_login, upgrade_required, last_sync_at.
- ``outbox(seq, kind, record_id, note_id, base_version, payload, status, reason, attempts,
  result, conflict_id, resolution, created_at, updated_at)``: every change the device made, in
  seq order; kept after acknowledgement so a server restored from a backup can be refilled.
- ``notes(id, data, deleted, created_at, updated_at)``: each note written on the device as the
  cadre sees it now (its queued edits applied).
- ``records(id, entity, note_id, version, server_version)``: the version each local record
  will have once its queued changes apply (``version``), and the last one the server confirmed.
- ``cache(entity, id, change_no, target_id, owner_id, data)``: what was pulled.
- ``known_targets(target_id, completed_at)``: targets whose whole history the device holds.
- ``files(sha256, path, filename, content_type, size, status, upload_url, attempts, reason, …)``:
  attachment bytes kept on the device until the server has them.
"""

from __future__ import annotations

import json
import sqlite3
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlite_utils

from client_sync.errors import StoreError

UNSENT = ("queued", "sent")
UNSENT_SQL = "('queued', 'sent')"


def _v1(conn: sqlite3.Connection) -> None:
    """The first release: the notes lane (outbox, notes, versions), the cache and the files."""
    for ddl in (
        "CREATE TABLE state (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
        """CREATE TABLE outbox (
            seq INTEGER PRIMARY KEY,
            kind TEXT NOT NULL,
            record_id TEXT NOT NULL,
            note_id TEXT NOT NULL,
            base_version INTEGER,
            payload TEXT NOT NULL,
            status TEXT NOT NULL DEFAULT 'queued',
            reason TEXT,
            attempts INTEGER NOT NULL DEFAULT 0,
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL
        )""",
        "CREATE INDEX outbox_status_seq ON outbox (status, seq)",
        "CREATE INDEX outbox_note_seq ON outbox (note_id, seq)",
        """CREATE TABLE notes (
            id TEXT PRIMARY KEY,
            data TEXT NOT NULL,
            deleted INTEGER NOT NULL DEFAULT 0,
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL
        )""",
        """CREATE TABLE records (
            id TEXT PRIMARY KEY,
            entity TEXT NOT NULL,
            note_id TEXT NOT NULL,
            version INTEGER,
            server_version INTEGER
        )""",
        """CREATE TABLE cache (
            entity TEXT NOT NULL,
            id TEXT NOT NULL,
            change_no INTEGER NOT NULL,
            target_id TEXT,
            owner_id TEXT,
            data TEXT NOT NULL,
            PRIMARY KEY (entity, id)
        )""",
        "CREATE INDEX cache_target ON cache (target_id)",
        "CREATE TABLE known_targets (target_id TEXT PRIMARY KEY, completed_at TEXT NOT NULL)",
        """CREATE TABLE files (
            sha256 TEXT PRIMARY KEY,
            path TEXT NOT NULL,
            filename TEXT NOT NULL,
            content_type TEXT NOT NULL,
            size INTEGER NOT NULL,
            status TEXT NOT NULL DEFAULT 'pending',
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL
        )""",
    ):
        conn.execute(ddl)


def _v2(conn: sqlite3.Connection) -> None:
    """Resumable uploads (the tus URL survives a killed process) and the server's answers kept."""
    for ddl in (
        "ALTER TABLE outbox ADD COLUMN result TEXT",
        "ALTER TABLE outbox ADD COLUMN conflict_id TEXT",
        "ALTER TABLE outbox ADD COLUMN resolution TEXT",
        "CREATE INDEX outbox_conflict ON outbox (conflict_id) WHERE conflict_id IS NOT NULL",
        "ALTER TABLE files ADD COLUMN upload_url TEXT",
        "ALTER TABLE files ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0",
        "ALTER TABLE files ADD COLUMN reason TEXT",
    ):
        conn.execute(ddl)


# MIGRATIONS[n] takes the database from user_version n to n + 1. Append only; never edit one.
MIGRATIONS: list[Callable[[sqlite3.Connection], None]] = [_v1, _v2]
SCHEMA_VERSION = len(MIGRATIONS)


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), sort_keys=True)


def loads(text: str | None) -> Any:
    return None if text is None else json.loads(text)


class Store:
    """The device's database. One per install; open it, use it, close it."""

    def __init__(self, path: str | Path, *, migrate_to: int = SCHEMA_VERSION) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            conn = sqlite3.connect(str(self.path), timeout=30)
            self.db = sqlite_utils.Database(conn)
            self.db.enable_wal()
            conn.execute("PRAGMA synchronous=FULL")
        except sqlite3.Error as e:
            raise StoreError(f"Cannot open the local database {self.path}: {e}") from e
        self.conn = conn
        self.migrate(migrate_to)

    # Transactions ------------------------------------------------------------------------

    @contextmanager
    def transaction(self) -> Iterator[sqlite_utils.Database]:
        """One atomic state change: BEGIN IMMEDIATE (the write lock up front) … COMMIT."""
        if self.conn.in_transaction:
            raise StoreError("A transaction is already open; state changes are not nested.")
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield self.db
        except BaseException:
            if self.conn.in_transaction:
                self.conn.execute("ROLLBACK")
            raise
        self.conn.execute("COMMIT")

    def close(self) -> None:
        self.conn.close()

    # Migrations --------------------------------------------------------------------------

    @property
    def user_version(self) -> int:
        return int(self.conn.execute("PRAGMA user_version").fetchone()[0])

    def migrate(self, to: int = SCHEMA_VERSION) -> None:
        """Bring the schema forward to version `to`, each step in its own transaction."""
        current = self.user_version
        if current > SCHEMA_VERSION:
            raise StoreError(
                f"The local database has schema {current}; this app knows up to {SCHEMA_VERSION}. Update the app."
            )
        for version in range(current, to):
            with self.transaction():
                unsent = self._unsent_count() if version > 0 else 0
                MIGRATIONS[version](self.conn)
                if self._unsent_count() != unsent:
                    raise StoreError(f"Migration {version + 1} would lose unsent changes; nothing was changed.")
                self.conn.execute(f"PRAGMA user_version = {version + 1}")
            if version == 0:
                self._first_state()

    def _unsent_count(self) -> int:
        row = self.conn.execute(f"SELECT count(*) FROM outbox WHERE status IN {UNSENT_SQL}").fetchone()
        return int(row[0])

    def _first_state(self) -> None:
        with self.transaction() as db:
            for key, value in (("device_id", str(uuid.uuid4())), ("next_seq", 1), ("cursor", "0")):
                db.execute("INSERT OR IGNORE INTO state (key, value) VALUES (?, ?)", [key, dumps(value)])

    # State -------------------------------------------------------------------------------

    def get(self, key: str, default: Any = None) -> Any:
        row = self.conn.execute("SELECT value FROM state WHERE key = ?", [key]).fetchone()
        return default if row is None else loads(row[0])

    def put(self, db: sqlite_utils.Database, **values: Any) -> None:
        """Set state keys inside the caller's transaction."""
        for key, value in values.items():
            db.execute(
                "INSERT INTO state (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                [key, dumps(value)],
            )

    def set(self, **values: Any) -> None:
        """Set state keys in a transaction of their own."""
        with self.transaction() as db:
            self.put(db, **values)

    def rows(self, sql: str, params: Any = ()) -> list[dict[str, Any]]:
        cursor = self.conn.execute(sql, params)
        names = [d[0] for d in cursor.description]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]

    def scalar(self, sql: str, params: Any = ()) -> Any:
        row = self.conn.execute(sql, params).fetchone()
        return None if row is None else row[0]

    @property
    def device_id(self) -> str:
        return str(self.get("device_id"))
