"""The outbox: changes numbered when written, sent in seq order, answered one by one.

A change's ``status`` is where it is on the wire: ``queued`` (to send), ``sent`` (in a request
whose answer has not arrived), ``acknowledged`` (applied), ``needs_attention`` (refused for
good, with the reason) or ``conflict`` (an edit on a version someone else changed).
``resolution`` closes a change for the cadre without touching its status: fixed by a later
change, or a conflict resolved on the server. Nothing is ever renumbered or deleted, so the
server can always be refilled from any seq it asks for.
"""

from __future__ import annotations

from typing import Any

import sqlite_utils

from client_sync.errors import ProtocolError
from client_sync.store import UNSENT_SQL, Store, dumps, loads, now_iso
from schemas.sync import VERSIONED_KINDS

STATUSES = ("queued", "sent", "acknowledged", "needs_attention", "conflict")
RESULT_STATUS = {"applied": "acknowledged", "rejected": "needs_attention", "conflict": "conflict"}
# A note shows its most pressing change: what the cadre must act on first, then what is still on its way.
SEVERITY = ("needs_attention", "conflict", "queued", "sent", "acknowledged")
CREATES = ("visit.create", "problem.create")


def enqueue(
    store: Store,
    db: sqlite_utils.Database,
    *,
    kind: str,
    record_id: str,
    note_id: str,
    payload: dict[str, Any],
    base_version: int | None = None,
) -> int:
    """Append one change inside the caller's transaction; the seq is taken in that same transaction."""
    seq = int(store.get("next_seq", 1))
    now = now_iso()
    db.table("outbox").insert(
        {
            "seq": seq,
            "kind": kind,
            "record_id": record_id,
            "note_id": note_id,
            "base_version": base_version,
            "payload": dumps(payload),
            "status": "queued",
            "reason": None,
            "attempts": 0,
            "created_at": now,
            "updated_at": now,
        }
    )
    store.put(db, next_seq=seq + 1)
    return seq


def first_unsent(store: Store) -> int | None:
    value = store.scalar(f"SELECT min(seq) FROM outbox WHERE status IN {UNSENT_SQL}")
    return None if value is None else int(value)


def queue_depth(store: Store) -> int:
    return int(store.scalar(f"SELECT count(*) FROM outbox WHERE status IN {UNSENT_SQL}"))


def next_batch(store: Store, *, start: int, limit: int, max_bytes: int) -> list[dict[str, Any]]:
    """Contiguous changes from seq `start`, at most `limit` changes and about `max_bytes`.

    A batch also ends before a second edit of the same record: if the first is refused or
    conflicts, the second is re-based (or shown as a conflict) instead of silently applying
    on a version the cadre never saw.
    """
    rows = store.rows(
        "SELECT seq, kind, record_id, note_id, base_version, payload, status, created_at,"
        " length(CAST(payload AS BLOB)) AS size FROM outbox WHERE seq >= ? ORDER BY seq LIMIT ?",
        [start, limit],
    )
    batch: list[dict[str, Any]] = []
    size = 0
    edited: set[str] = set()
    for row in rows:
        if batch and (row["seq"] != batch[-1]["seq"] + 1 or size + row["size"] > max_bytes):
            break
        if row["kind"] in VERSIONED_KINDS:
            if row["record_id"] in edited:
                break
            edited.add(row["record_id"])
        batch.append(row)
        size += row["size"]
    return batch


def wire(row: dict[str, Any]) -> dict[str, Any]:
    """A change as the push request carries it."""
    change = {"seq": row["seq"], "kind": row["kind"], "record_id": row["record_id"], "payload": loads(row["payload"])}
    if row["base_version"] is not None:
        change["base_version"] = row["base_version"]
    return change


def mark_sent(store: Store, seqs: list[int]) -> None:
    with store.transaction() as db:
        db.execute(
            f"UPDATE outbox SET status = 'sent', attempts = attempts + 1, updated_at = ?"
            f" WHERE seq IN ({','.join('?' * len(seqs))})",
            [now_iso(), *seqs],
        )


def mark_unsent(store: Store, seqs: list[int], reason: dict[str, Any]) -> None:
    """A request failed without an answer: its changes go back to the queue, with why."""
    with store.transaction() as db:
        db.execute(
            f"UPDATE outbox SET status = 'queued', reason = ?, updated_at = ?"
            f" WHERE status = 'sent' AND seq IN ({','.join('?' * len(seqs))})",
            [dumps(reason), now_iso(), *seqs],
        )


def _reason(result: dict[str, Any]) -> dict[str, Any] | None:
    if result["status"] == "applied":
        return None
    keys = ("code", "message", "errors", "conflict_id", "server_version")
    return {k: result.get(k) for k in keys if result.get(k) is not None}


def apply_results(store: Store, batch: list[dict[str, Any]], answer: dict[str, Any]) -> dict[str, int]:
    """Record the server's answer to a batch in one transaction; returns counts by status."""
    results = answer.get("results")
    if not isinstance(results, list) or not all(isinstance(r, dict) and "seq" in r for r in results):
        raise ProtocolError(f"A push answer without results: {str(answer)[:200]}")
    by_seq = {r["seq"]: r for r in results}
    counts = {"acknowledged": 0, "needs_attention": 0, "conflict": 0, "replayed": 0}
    touched: set[str] = set()
    now = now_iso()
    with store.transaction() as db:
        for row in batch:
            result = by_seq.get(row["seq"])
            if result is None:
                continue
            status = RESULT_STATUS.get(str(result.get("status")))
            if status is None:
                raise ProtocolError(f"Unknown result status {result.get('status')!r} for seq {row['seq']}.")
            if result.get("record_id") not in (None, row["record_id"]):
                # The server answered for another change with this seq (e.g. the device's database was
                # restored from an older backup): acknowledging would lose this change silently.
                raise ProtocolError(
                    f"The server's seq {row['seq']} is {result['record_id']}, this device's is {row['record_id']}."
                )
            db.execute(
                "UPDATE outbox SET status = ?, reason = ?, result = ?, conflict_id = ?, updated_at = ? WHERE seq = ?",
                [status, dumps(_reason(result)), dumps(result), result.get("conflict_id"), now, row["seq"]],
            )
            counts[status] += 1
            counts["replayed"] += bool(result.get("replayed"))
            if status == "acknowledged":
                _confirm_versions(db, row, result)
            touched.add(row["record_id"])
        for record_id in touched:
            recompute_versions(store, db, record_id)
        store.put(db, last_push_at=now)
        if "upgrade_required" in answer:
            store.put(db, upgrade_required=bool(answer["upgrade_required"]))
    return counts


def _confirm_versions(db: sqlite_utils.Database, row: dict[str, Any], result: dict[str, Any]) -> None:
    version = result.get("version")
    kind = row["kind"]
    if kind == "visit.delete":
        db.execute("UPDATE records SET server_version = NULL WHERE id = ?", [row["record_id"]])
    elif kind in ("visit.create", "visit.update", "problem.create", "problem.update") and version is not None:
        db.execute("UPDATE records SET server_version = ? WHERE id = ?", [version, row["record_id"]])
    if kind == "visit.create":
        # The note's own problems were created with it, at version 1.
        for p in loads(row["payload"]).get("problems", []):
            db.execute("UPDATE records SET server_version = 1 WHERE id = ? AND server_version IS NULL", [p["id"]])


def _creates(change: dict[str, Any], record_id: str, entity: str) -> bool:
    if change["kind"] == "problem.create" or (change["kind"] == "visit.create" and entity == "visit"):
        return bool(change["record_id"] == record_id)
    if change["kind"] == "visit.create" and entity == "problem":
        return any(p["id"] == record_id for p in loads(change["payload"]).get("problems", []))
    return False


def recompute_versions(store: Store, db: sqlite_utils.Database, record_id: str) -> None:
    """Predict again the versions of a record's queued edits from the last version the server confirmed.

    After a refused edit the server's version did not move, so later edits base one lower; after
    a conflict they base on what the device last saw, and conflict too rather than overwrite.
    """
    record = db.execute("SELECT entity, note_id, server_version FROM records WHERE id = ?", [record_id]).fetchone()
    if record is None:
        return
    entity, note_id, version = record
    live = store.rows(
        f"SELECT seq, kind, record_id, base_version, status, payload FROM outbox WHERE note_id = ?"
        f" AND status IN {UNSENT_SQL} AND resolution IS NULL ORDER BY seq",
        [note_id],
    )
    chain = [
        c
        for c in live
        if _creates(c, record_id, entity) or (c["record_id"] == record_id and c["kind"] in VERSIONED_KINDS)
    ]
    if version is None and not any(_creates(c, record_id, entity) for c in chain):
        return  # nothing confirmed and nothing creating it: keep the bases as written
    for change in chain:
        if _creates(change, record_id, entity):
            version = 1
            continue
        if version is None:
            continue
        if change["status"] == "queued" and change["base_version"] != version:
            db.execute("UPDATE outbox SET base_version = ? WHERE seq = ?", [version, change["seq"]])
        version = None if change["kind"] == "visit.delete" else version + 1
    db.execute("UPDATE records SET version = ? WHERE id = ?", [version, record_id])


def live_changes(store: Store, record_id: str) -> int:
    return int(
        store.scalar(
            f"SELECT count(*) FROM outbox WHERE record_id = ? AND status IN {UNSENT_SQL} AND resolution IS NULL",
            [record_id],
        )
    )


def note_status(changes: list[dict[str, Any]]) -> tuple[str, dict[str, Any] | None]:
    """A note's status and the change behind it: its most pressing open change."""
    open_ = [c for c in changes if c.get("resolution") is None]
    if not open_:
        return "acknowledged", None
    worst = min(open_, key=lambda c: (SEVERITY.index(c["status"]), c["seq"]))
    return worst["status"], worst
