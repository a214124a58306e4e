"""What a cadre does offline: write, edit, delete and fix notes, attach files.

Each operation is checked with the shared schema first, then written in one transaction: the
note as the cadre now sees it, the predicted versions and the change in the outbox (with its
seq) together, or nothing.
"""

from __future__ import annotations

import hashlib
import mimetypes
import os
import uuid
from pathlib import Path
from typing import Any

import sqlite_utils

from client_sync import notes
from client_sync.errors import UsageError
from client_sync.outbox import enqueue
from client_sync.store import Store, dumps, loads, now_iso

CHUNK = 1024 * 1024


def keep_file(files_dir: Path, source: str | Path, content_type: str | None = None) -> dict[str, Any]:
    """Copy a photo or file into the device's store, named by its SHA-256 (durable before any reference)."""
    source = Path(source)
    if not source.is_file():
        raise UsageError(f"No such file: {source}", zh=f"找不到文件：{source}")
    files_dir.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    partial = files_dir / f".{uuid.uuid4().hex}.part"
    size = 0
    try:
        with open(source, "rb") as src, open(partial, "wb") as dst:
            while chunk := src.read(CHUNK):
                digest.update(chunk)
                dst.write(chunk)
                size += len(chunk)
            dst.flush()
            os.fsync(dst.fileno())
        final = files_dir / digest.hexdigest()
        os.replace(partial, final)
    finally:
        partial.unlink(missing_ok=True)
    dir_fd = os.open(files_dir, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    return {
        "sha256": digest.hexdigest(),
        "path": str(final),
        "filename": source.name[-200:],
        "content_type": content_type or mimetypes.guess_type(source.name)[0] or "application/octet-stream",
        "size": size,
    }


def attachment_ref(file: dict[str, Any], caption: str | None = None) -> dict[str, Any]:
    keys = ("sha256", "filename", "content_type", "size")
    return {"id": str(uuid.uuid4()), **{k: file[k] for k in keys}, "caption": caption}


def _insert_file(db: sqlite_utils.Database, file: dict[str, Any]) -> None:
    now = now_iso()
    db.execute(
        "INSERT OR IGNORE INTO files (sha256, path, filename, content_type, size, status, created_at, updated_at)"
        " VALUES (?, ?, ?, ?, ?, 'pending', ?, ?)",
        [file["sha256"], file["path"], file["filename"], file["content_type"], file["size"], now, now],
    )


def _set_record(db: sqlite_utils.Database, record_id: str, entity: str, note_id: str, version: int | None) -> None:
    db.execute(
        "INSERT INTO records (id, entity, note_id, version) VALUES (?, ?, ?, ?)"
        " ON CONFLICT (id) DO UPDATE SET version = excluded.version",
        [record_id, entity, note_id, version],
    )


def _save_note(db: sqlite_utils.Database, note_id: str, data: dict[str, Any], *, deleted: bool = False) -> None:
    now = now_iso()
    db.execute(
        "INSERT INTO notes (id, data, deleted, created_at, updated_at) VALUES (?, ?, ?, ?, ?)"
        " ON CONFLICT (id) DO UPDATE SET data = excluded.data, deleted = excluded.deleted,"
        " updated_at = excluded.updated_at",
        [note_id, dumps(data), int(deleted), now, now],
    )


def find_note_id(store: Store, text: str) -> str:
    """A note id from its full id or a unique prefix (notes written here, or your own pulled ones)."""
    text = text.strip().lower()
    if len(text) < 4:
        raise UsageError("Give at least the first 4 characters of the note id.", zh="请至少输入记录编号的前 4 位。")
    user_id = (store.get("user") or {}).get("id")
    found = {
        r["id"]
        for r in store.rows(
            "SELECT id FROM notes WHERE id LIKE ? UNION SELECT id FROM cache WHERE entity = 'visit' AND id LIKE ?"
            " AND owner_id = ?",
            [text + "%", text + "%", user_id],
        )
    }
    if not found:
        raise UsageError(f"No note {text}.", zh=f"没有编号为 {text} 的记录。")
    if len(found) > 1:
        raise UsageError(
            f"{text} matches {len(found)} notes; give more characters.",
            zh=f"{text} 对应 {len(found)} 条记录，请多输入几位。",
        )
    return found.pop()


def load_note(store: Store, db: sqlite_utils.Database, note_id: str) -> dict[str, Any]:
    """The note row (``data`` decoded), made from the cache if it was written on another device."""
    rows = store.rows("SELECT * FROM notes WHERE id = ?", [note_id])
    if rows:
        return rows[0] | {"data": loads(rows[0]["data"])}
    user_id = (store.get("user") or {}).get("id")
    cached = store.rows("SELECT data FROM cache WHERE entity = 'visit' AND id = ? AND owner_id = ?", [note_id, user_id])
    if not cached:
        raise UsageError(f"No note {note_id}.", zh=f"没有编号为 {note_id} 的记录。")
    visit = loads(cached[0]["data"])
    problems = [
        loads(r["data"])
        for r in store.rows(
            "SELECT data FROM cache WHERE entity = 'problem' AND json_extract(data, '$.visit_id') = ?", [note_id]
        )
    ]
    attachments = [
        loads(r["data"])
        for r in store.rows(
            "SELECT data FROM cache WHERE entity = 'attachment' AND json_extract(data, '$.visit_id') = ?", [note_id]
        )
    ]
    data = {k: visit.get(k) for k in ("id", "campaign_id", "target_id", *notes.EDITABLE)}
    data["problems"] = [{k: p[k] for k in ("id", "category", "description")} for p in problems]
    data["attachments"] = [
        {k: a.get(k) for k in ("id", "sha256", "filename", "content_type", "size", "caption")} for a in attachments
    ]
    _save_note(db, note_id, data)
    add = "INSERT OR REPLACE INTO records (id, entity, note_id, version, server_version) VALUES (?, ?, ?, ?, ?)"
    db.execute(add, [note_id, "visit", note_id, visit.get("version"), visit.get("version")])
    for p in problems:
        db.execute(add, [p["id"], "problem", note_id, p.get("version"), p.get("version")])
    return {"id": note_id, "data": data, "deleted": 0}


def _version(db: sqlite_utils.Database, record_id: str) -> int | None:
    row = db.execute("SELECT version FROM records WHERE id = ?", [record_id]).fetchone()
    return None if row is None else row[0]


def _live_note(store: Store, db: sqlite_utils.Database, note_id: str) -> dict[str, Any]:
    note = load_note(store, db, note_id)
    if note["deleted"]:
        raise UsageError(f"The note {note_id} was deleted.", zh="这条记录已删除。")
    return note


def add_note(store: Store, payload: dict[str, Any], files: list[dict[str, Any]]) -> int:
    """Queue a new note (visit.create) with its problems and attachment references."""
    note_id = payload["id"]
    with store.transaction() as db:
        if db.execute("SELECT 1 FROM notes WHERE id = ?", [note_id]).fetchone():
            raise UsageError(f"A note {note_id} exists already.", zh="这条记录已存在。")
        _save_note(db, note_id, payload)
        _set_record(db, note_id, "visit", note_id, 1)
        for p in payload["problems"]:
            _set_record(db, p["id"], "problem", note_id, 1)
        for f in files:
            _insert_file(db, f)
        return enqueue(store, db, kind="visit.create", record_id=note_id, note_id=note_id, payload=payload)


def edit_note(store: Store, note_id: str, fields: dict[str, Any]) -> int:
    """Queue an edit (visit.update) based on the version the note will have by then."""
    payload = notes.edit(fields)
    with store.transaction() as db:
        note = _live_note(store, db, note_id)
        base = _version(db, note_id)
        if base is None:
            raise UsageError(f"The note {note_id} has no version to edit.", zh="这条记录已删除，无法修改。")
        seq = enqueue(
            store, db, kind="visit.update", record_id=note_id, note_id=note_id, payload=payload, base_version=base
        )
        _set_record(db, note_id, "visit", note_id, base + 1)
        _save_note(db, note_id, notes.merged(note["data"], "visit.update", note_id, payload))
        return seq


def add_problem(store: Store, note_id: str, category: str, description: str) -> tuple[str, int]:
    """Queue a problem raised after the note was written (problem.create)."""
    problem = notes.problem(category, description)
    payload = notes.checked("problem.create", {**problem, "visit_id": note_id})
    with store.transaction() as db:
        note = _live_note(store, db, note_id)
        seq = enqueue(store, db, kind="problem.create", record_id=problem["id"], note_id=note_id, payload=payload)
        _set_record(db, problem["id"], "problem", note_id, 1)
        _save_note(db, note_id, notes.merged(note["data"], "problem.create", problem["id"], payload))
        return problem["id"], seq


def attach(store: Store, note_id: str, file: dict[str, Any], caption: str | None = None) -> tuple[dict[str, Any], int]:
    """Queue a reference to a kept file (attachment.add); the bytes go up in the uploads lane."""
    ref = attachment_ref(file, caption)
    payload = notes.checked("attachment.add", {**ref, "visit_id": note_id})
    with store.transaction() as db:
        note = _live_note(store, db, note_id)
        _insert_file(db, file)
        seq = enqueue(store, db, kind="attachment.add", record_id=ref["id"], note_id=note_id, payload=payload)
        _save_note(db, note_id, notes.merged(note["data"], "attachment.add", ref["id"], payload))
        return ref, seq


def delete_note(store: Store, note_id: str) -> int:
    with store.transaction() as db:
        note = _live_note(store, db, note_id)
        base = _version(db, note_id)
        if base is None:
            raise UsageError(f"The note {note_id} has no version to delete.", zh="这条记录已删除。")
        seq = enqueue(store, db, kind="visit.delete", record_id=note_id, note_id=note_id, payload={}, base_version=base)
        _set_record(db, note_id, "visit", note_id, None)
        _save_note(db, note_id, note["data"], deleted=True)
        return seq
