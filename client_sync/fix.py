"""Fixing what the server refused: the change is sent again as a new change with a new seq.

The refused change stays in the outbox (its seq was the server's to record) and is closed
with ``resolution = 'fixed by <seq>'``. A note whose creation was refused is sent again whole
(visit.create with the same id, its later edits, problems and attachments folded in), and
its other open changes are closed with it: they may still be refused on their way, but the
cadre no longer has to act on them.
"""

from __future__ import annotations

from typing import Any

import sqlite_utils

from client_sync import notes
from client_sync.errors import UsageError
from client_sync.local import _save_note, _set_record, _version, load_note
from client_sync.outbox import enqueue
from client_sync.store import Store, loads, now_iso


def refused(store: Store, note_id: str) -> list[dict[str, Any]]:
    """The note's open changes that need the cadre's attention, oldest first."""
    return store.rows(
        "SELECT * FROM outbox WHERE note_id = ? AND status = 'needs_attention' AND resolution IS NULL ORDER BY seq",
        [note_id],
    )


def _close(db: sqlite_utils.Database, seqs: list[int], resolution: str) -> None:
    for seq in seqs:
        db.execute(
            "UPDATE outbox SET resolution = ?, updated_at = ? WHERE seq = ? AND resolution IS NULL",
            [resolution, now_iso(), seq],
        )


def fix(
    store: Store,
    note_id: str,
    *,
    seq: int | None = None,
    edits: dict[str, Any] | None = None,
    problems: list[dict[str, Any]] | None = None,
    payload: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Send a refused change again, corrected: `edits` (note fields), `problems` (replace them) or a whole `payload`.

    Returns ``{"fixed": <old seq>, "seq": <new seq or None>, "kind": …}``.
    """
    edits = edits or {}
    with store.transaction() as db:
        candidates = refused(store, note_id)
        if seq is not None:
            candidates = [c for c in candidates if c["seq"] == seq]
        if not candidates:
            raise UsageError(f"Nothing to fix on note {note_id} (seq {seq}).", zh="这条记录没有需要处理的问题。")
        change = candidates[0]
        note = load_note(store, db, note_id)
        kind = change["kind"]
        if kind == "visit.delete":
            _close(db, [change["seq"]], "dismissed")
            server_version = db.execute("SELECT server_version FROM records WHERE id = ?", [note_id]).fetchone()
            _set_record(db, note_id, "visit", note_id, server_version[0] if server_version else None)
            _save_note(db, note_id, note["data"], deleted=False)
            return {"fixed": change["seq"], "seq": None, "kind": kind}
        if kind == "visit.create":
            new_seq = _recreate(store, db, note, edits, problems, payload)
            open_ = store.rows(
                "SELECT seq FROM outbox WHERE note_id = ? AND resolution IS NULL AND seq < ?"
                " AND status != 'acknowledged'",
                [note_id, new_seq],
            )
            _close(db, [r["seq"] for r in open_], f"fixed by {new_seq}")
            return {"fixed": change["seq"], "seq": new_seq, "kind": kind}
        new_seq = _resend(store, db, note, change, edits, problems, payload)
        _close(db, [change["seq"]], f"fixed by {new_seq}")
        return {"fixed": change["seq"], "seq": new_seq, "kind": kind}


def _recreate(
    store: Store,
    db: sqlite_utils.Database,
    note: dict[str, Any],
    edits: dict[str, Any],
    problems: list[dict[str, Any]] | None,
    payload: dict[str, Any] | None,
) -> int:
    note_id = note["id"]
    if payload is None:
        unknown = set(edits) - set(notes.CREATABLE)
        if unknown:
            raise UsageError(f"Cannot change {', '.join(sorted(unknown))} of a note.", zh="这些内容不能修改。")
        payload = {**note["data"], **edits}
        if "service_categories" in edits:
            payload["service_categories"] = [notes.service_category(c) for c in edits["service_categories"]]
        if problems is not None:
            payload["problems"] = problems
    payload = notes.checked("visit.create", {**payload, "id": note_id})
    old_problems = {p["id"] for p in note["data"].get("problems", [])}
    kept = {p["id"] for p in payload["problems"]}
    for gone in old_problems - kept:
        db.execute("DELETE FROM records WHERE id = ?", [gone])
    _set_record(db, note_id, "visit", note_id, 1)
    for p in payload["problems"]:
        _set_record(db, p["id"], "problem", note_id, 1)
    _save_note(db, note_id, payload)
    return enqueue(store, db, kind="visit.create", record_id=note_id, note_id=note_id, payload=payload)


def _resend(
    store: Store,
    db: sqlite_utils.Database,
    note: dict[str, Any],
    change: dict[str, Any],
    edits: dict[str, Any],
    problems: list[dict[str, Any]] | None,
    payload: dict[str, Any] | None,
) -> int:
    kind, record_id, note_id = change["kind"], change["record_id"], note["id"]
    old = loads(change["payload"])
    if payload is None:
        payload = dict(old)
        if kind == "visit.update":
            payload.update(edits)
        elif kind in ("problem.create", "problem.update") and problems:
            payload.update({k: problems[0][k] for k in ("category", "description")})
        elif edits.get("caption") and kind == "attachment.add":
            payload["caption"] = edits["caption"]
    payload = notes.edit(payload) if kind == "visit.update" else notes.checked(kind, payload)
    base = None
    if kind in ("visit.update", "problem.update"):
        base = _version(db, record_id)
        if base is None:
            raise UsageError(f"The record {record_id} has no version to edit.", zh="这条记录已删除，无法修改。")
        _set_record(db, record_id, "visit" if kind == "visit.update" else "problem", note_id, base + 1)
    data = note["data"]
    if kind == "problem.create":
        data = {**data, "problems": [p for p in data.get("problems", []) if p["id"] != record_id]}
    elif kind == "attachment.add":
        data = {**data, "attachments": [a for a in data.get("attachments", []) if a["id"] != record_id]}
    _save_note(db, note_id, notes.merged(data, kind, record_id, payload))
    return enqueue(store, db, kind=kind, record_id=record_id, note_id=note_id, payload=payload, base_version=base)


def close_conflict(store: Store, conflict_id: str, resolution: str) -> None:
    """The server resolved a conflict (here or on the console): the cadre has nothing left to do."""
    with store.transaction() as db:
        db.execute(
            "UPDATE outbox SET resolution = ?, updated_at = ? WHERE conflict_id = ? AND resolution IS NULL",
            [f"resolved: {resolution}", now_iso(), conflict_id],
        )
