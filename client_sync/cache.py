"""What the device pulled: each page applied with its cursor in one transaction.

The cache is generic by entity (target, campaign, department, portfolio_entry, visit, problem,
attachment, follow-up, conflict …). Rebuilding it (a 410 from the server) never touches the
outbox, the notes written on the device or their files.
"""

from __future__ import annotations

from typing import Any

import sqlite_utils

from client_sync.errors import ProtocolError
from client_sync.store import UNSENT_SQL, Store, dumps, loads, now_iso

# Entities that belong to a target's history: dropped when the target leaves the portfolio.
TARGET_HISTORY = ("visit", "problem", "attachment")


def complete_targets(store: Store) -> list[str]:
    return [r["target_id"] for r in store.rows("SELECT target_id FROM known_targets ORDER BY target_id")]


def check_page(page: dict[str, Any]) -> None:
    for key in ("changes", "cursor", "has_more"):
        if key not in page:
            raise ProtocolError(f"A pull answer without {key!r}.")
    if not str(page["cursor"]).isdigit():
        raise ProtocolError(f"A pull answer with a cursor that is not a number: {page['cursor']!r}.")
    for change in page["changes"]:
        if not isinstance(change, dict) or change.get("op") not in ("upsert", "delete") or not change.get("id"):
            raise ProtocolError(f"A pulled change the device cannot apply: {str(change)[:200]}")


def _target_of(db: sqlite_utils.Database, entity: str, data: dict[str, Any]) -> str | None:
    if entity == "target":
        return str(data.get("id"))
    if entity == "attachment":
        row = db.execute(
            "SELECT target_id FROM cache WHERE entity = 'visit' AND id = ?", [data.get("visit_id")]
        ).fetchone()
        return None if row is None else row[0]
    value = data.get("target_id")
    return None if value is None else str(value)


def _owner_of(data: dict[str, Any]) -> str | None:
    value = data.get("cadre_id") or data.get("user_id") or data.get("assignee_id")
    return None if value is None else str(value)


def apply_page(store: Store, page: dict[str, Any], user_id: str | None) -> int:
    """Apply one pulled page and store its cursor, all in one transaction; returns the changes applied."""
    check_page(page)
    with store.transaction() as db:
        for change in page["changes"]:
            entity, record_id = str(change["entity"]), str(change["id"])
            if change["op"] == "delete":
                db.execute("DELETE FROM cache WHERE entity = ? AND id = ?", [entity, record_id])
                _server_deleted(store, db, entity, record_id)
                continue
            data = change.get("data") or {}
            db.execute(
                "INSERT INTO cache (entity, id, change_no, target_id, owner_id, data) VALUES (?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (entity, id) DO UPDATE SET change_no = excluded.change_no,"
                " target_id = excluded.target_id, owner_id = excluded.owner_id, data = excluded.data",
                [entity, record_id, int(change.get("change_no") or 0), _target_of(db, entity, data), _owner_of(data),
                 dumps(data)],
            )  # fmt: skip
            _server_changed(store, db, entity, record_id, data)
        now = now_iso()
        for target in page.get("complete_targets") or []:
            db.execute(
                "INSERT OR REPLACE INTO known_targets (target_id, completed_at) VALUES (?, ?)", [str(target), now]
            )
        removed = [str(t) for t in page.get("removed_targets") or []]
        if removed:
            _drop_targets(db, removed, user_id)
        store.put(db, cursor=str(page["cursor"]), backfill=page.get("backfill"), last_pull_at=now)
    return len(page["changes"])


def _drop_targets(db: sqlite_utils.Database, targets: list[str], user_id: str | None) -> None:
    """The portfolio lost these targets: drop what the device may no longer read (its own notes stay)."""
    marks = ",".join("?" * len(targets))
    others = "(owner_id IS NULL OR owner_id != ?)"
    db.execute(
        f"DELETE FROM cache WHERE entity = 'attachment' AND json_extract(data, '$.visit_id') IN"
        f" (SELECT id FROM cache WHERE entity = 'visit' AND target_id IN ({marks}) AND {others})",
        [*targets, user_id],
    )
    db.execute(
        f"DELETE FROM cache WHERE entity IN {TARGET_HISTORY!r} AND target_id IN ({marks}) AND {others}",
        [*targets, user_id],
    )
    db.execute(f"DELETE FROM known_targets WHERE target_id IN ({marks})", targets)


def _has_live_changes(db: sqlite_utils.Database, record_id: str) -> bool:
    row = db.execute(
        f"SELECT 1 FROM outbox WHERE record_id = ? AND status IN {UNSENT_SQL} AND resolution IS NULL LIMIT 1",
        [record_id],
    ).fetchone()
    return row is not None


def _server_changed(store: Store, db: sqlite_utils.Database, entity: str, record_id: str, data: dict[str, Any]) -> None:
    """A record of the device's own notes changed on the server: follow it, unless edits are on their way."""
    if entity == "conflict" and data.get("status") == "resolved":
        db.execute(
            "UPDATE outbox SET resolution = ? WHERE conflict_id = ? AND resolution IS NULL",
            [f"resolved: {data.get('resolution')}", record_id],
        )
        return
    if entity not in ("visit", "problem"):
        return
    row = db.execute("SELECT note_id FROM records WHERE id = ?", [record_id]).fetchone()
    if row is None or _has_live_changes(db, record_id) or (entity == "problem" and _has_live_changes(db, row[0])):
        return
    version = data.get("version")
    db.execute("UPDATE records SET version = ?, server_version = ? WHERE id = ?", [version, version, record_id])
    note = db.execute("SELECT data FROM notes WHERE id = ?", [row[0]]).fetchone()
    if note is None:
        return
    current = loads(note[0])
    if entity == "visit":
        current.update({k: data[k] for k in ("visited_at", "service_categories", "summary", "latitude", "longitude",
                                             "location_text", "target_id", "campaign_id") if k in data})  # fmt: skip
    else:
        current["problems"] = [
            {
                **p,
                "category": data.get("category", p["category"]),
                "description": data.get("description", p["description"]),
            }
            if p["id"] == record_id
            else p
            for p in current.get("problems", [])
        ]
    db.execute("UPDATE notes SET data = ?, updated_at = ? WHERE id = ?", [dumps(current), now_iso(), row[0]])


def _server_deleted(store: Store, db: sqlite_utils.Database, entity: str, record_id: str) -> None:
    if entity == "visit" and not _has_live_changes(db, record_id):
        db.execute("UPDATE records SET version = NULL, server_version = NULL WHERE id = ?", [record_id])
        db.execute("UPDATE notes SET deleted = 1 WHERE id = ?", [record_id])


def reset(store: Store) -> None:
    """Forget everything pulled (the server no longer knows our cursor); the outbox and notes stay."""
    with store.transaction() as db:
        db.execute("DELETE FROM cache")
        db.execute("DELETE FROM known_targets")
        store.put(db, cursor="0", backfill=None)


def entities(store: Store, entity: str) -> list[dict[str, Any]]:
    rows = store.rows("SELECT id, data FROM cache WHERE entity = ? ORDER BY id", [entity])
    return [{"id": r["id"], **loads(r["data"])} for r in rows]
