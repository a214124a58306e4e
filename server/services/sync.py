"""The sync protocol's server side: push (exactly once, never blocked), pull (by commit order).

See docs/sync-protocol.md for the contract. Push applies a batch in one transaction, each
change in a savepoint, and commits the device's last applied seq with the changes.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from marshmallow import Schema, ValidationError
from sqlalchemy import func, insert, select, union_all
from sqlalchemy.exc import DataError, IntegrityError
from sqlalchemy.orm import Session

from schemas.common import scrub
from schemas.enums import Role
from schemas.followups import FollowUpResultSchema
from schemas.sync import (
    AttachmentAddSchema,
    ConflictSchema,
    ProblemCreateSchema,
    ProblemRewordSchema,
    VisitEditSchema,
)
from schemas.targets import CampaignSchema, TargetSchema
from schemas.users import DepartmentSchema
from schemas.visits import AttachmentSchema, ProblemSchema, VisitNoteSchema, VisitSchema
from server.db.models import (
    Attachment,
    Campaign,
    ChangeLogEntry,
    Department,
    Device,
    PortfolioEntry,
    Problem,
    SyncChange,
    SyncConflict,
    SyncCounter,
    Target,
    Visit,
    VisitAttachment,
)
from server.db.types import utcnow
from server.errors import ApiError, forbidden, not_found
from server.services import audit, changes, problems, visits
from server.services.actors import Actor

SYNC_ROLES = (Role.cadre, Role.supervisor)


@dataclass(frozen=True)
class Client:
    """What the device said about itself in the request headers."""

    protocol: int
    version: str
    too_old: bool


# Push --------------------------------------------------------------------------------------


class Conflict(Exception):
    """An edit based on a version that is no longer current."""

    def __init__(self, entity: str, record: Any, snapshot: dict[str, Any]) -> None:
        super().__init__(entity)
        self.entity = entity
        self.record = record
        self.snapshot = snapshot


def _load(schema: Schema, payload: dict[str, Any]) -> dict[str, Any]:
    return schema.load(payload)


def _check_base(entity: str, record: Any, base_version: int, dump: Callable[[Any], dict[str, Any]]) -> None:
    if record.version != base_version:
        raise Conflict(entity, record, dump(record))


# Schemas built once: a marshmallow Schema() deep-copies its fields, which cost a pull of 8,000
# records 60 % of its time when each record built its own.
_VISIT = VisitSchema(exclude=("problems", "attachments"))
_PROBLEM = ProblemSchema()


def _visit_dump(visit: Visit) -> dict[str, Any]:
    return _VISIT.dump(visit)


def _apply(session: Session, actor: Actor, change: dict[str, Any]) -> dict[str, Any]:
    """Apply one change; return its result fields. Raises ApiError, ValidationError or Conflict."""
    kind, record_id, payload = change["kind"], change["record_id"], change["payload"]
    if kind == "visit.create":
        data = _load(VisitNoteSchema(), {**payload, "id": str(record_id)})
        visit, _created = visits.create_visit(session, actor, data)
        return {"version": visit.version}
    if kind == "visit.update":
        data = _load(VisitEditSchema(), payload)
        visit = visits.get_visit(session, actor, record_id)
        _check_base("visit", visit, change["base_version"], _visit_dump)
        visit = visits.update_visit(session, actor, record_id, {**data, "version": visit.version})
        return {"version": visit.version}
    if kind == "visit.delete":
        visit = visits.get_visit(session, actor, record_id)
        _check_base("visit", visit, change["base_version"], _visit_dump)
        visits.delete_visit(session, actor, record_id)
        return {"version": None}
    if kind == "problem.create":
        data = _load(ProblemCreateSchema(), {**payload, "id": str(record_id)})
        visit_id = data.pop("visit_id")
        existing = session.get(Problem, record_id)
        if existing is not None and existing.visit_id == visit_id and existing.description == data["description"]:
            return {"version": existing.version}
        problem = visits.add_problem(session, actor, visit_id, data)
        return {"version": problem.version}
    if kind == "problem.update":
        data = _load(ProblemRewordSchema(), payload)
        problem = problems.get_problem(session, actor, record_id)
        _check_base("problem", problem, change["base_version"], _PROBLEM.dump)
        problem = problems.update_problem(session, actor, record_id, {**data, "version": problem.version})
        return {"version": problem.version}
    if kind == "attachment.add":
        data = _load(AttachmentAddSchema(), {**payload, "id": str(record_id)})
        visits.add_attachment(session, actor, data.pop("visit_id"), data)
        return {"version": None}
    if kind == "followup.complete":
        # Imported here: the follow-ups module registers its serializer with this one.
        from server.services import followups

        data = _load(FollowUpResultSchema(), payload)
        followup = followups.get_followup(session, actor, record_id)
        _check_base("followup", followup, change["base_version"], followups.dump_one)
        followup = followups.complete_followup(session, actor, record_id, {**data, "version": followup.version})
        return {"version": followup.version}
    raise ApiError(422, f"Unknown change kind {kind}.", code="unknown_kind")  # the schema refuses it first


def _rejected(code: str, message: str, errors: Any = None) -> dict[str, Any]:
    return {"status": "rejected", "code": code, "message": message, "errors": errors}


def _apply_one(session: Session, actor: Actor, device: Device, change: dict[str, Any]) -> dict[str, Any]:
    base = {"seq": change["seq"], "record_id": change["record_id"]}
    try:
        with changes.savepoint(session):
            result = _apply(session, actor, change)
        return base | {"status": "applied"} | result
    except ValidationError as e:
        return base | _rejected("validation_error", "The change is invalid.", e.normalized_messages())
    except ApiError as e:
        return base | _rejected(e.code, e.message, e.errors)
    except (IntegrityError, DataError) as e:
        return base | _rejected("integrity_conflict", f"The change conflicts with stored data ({type(e).__name__}).")
    except Conflict as c:
        conflict = SyncConflict(
            device_id=device.id,
            user_id=actor.user_id,
            seq=change["seq"],
            entity=c.entity,
            record_id=change["record_id"],
            base_version=change["base_version"],
            server_version=c.record.version,
            device_payload=change["payload"],
            server_snapshot=audit.jsonable(c.snapshot),
        )
        session.add(conflict)
        session.flush()
        audit.record(session, actor, "conflict", c.entity, change["record_id"], {"conflict_id": conflict.id})
        return base | {
            "status": "conflict",
            "conflict_id": conflict.id,
            "server_version": c.record.version,
            "code": "version_conflict",
            "message": "The record changed on the server; both versions are kept.",
        }


def _prepare(actor: Actor, batch: list[dict[str, Any]]) -> dict[int, visits.NoteRows]:
    """The batch's visit notes that pass validation, with their rows built (by seq).

    Nothing here needs the database, so push() does it before it locks the device's row: on
    SQLite that lock is the one write lock of the whole database, and validating a note and
    cutting its text into search tokens is a third of what storing it costs. Changes the device
    sent before (below its last seq) are prepared too and then not used: rare, and cheap.
    """
    if not actor.has(*visits.WRITERS):
        return {}
    schema, now = VisitNoteSchema(), utcnow()
    ready = {}
    for c in batch:
        if c["kind"] == "visit.create" and (data := _valid(schema, c)) is not None:
            ready[c["seq"]] = visits.note_rows(actor, data, now)
    return ready


def _apply_all(
    session: Session, actor: Actor, device: Device, new: list[dict[str, Any]], ready: dict[int, visits.NoteRows]
) -> list[dict[str, Any]]:
    """Apply the changes in seq order; return each one's result.

    New visit notes, the bulk of any queue, are stored together (visits.insert_notes) in runs of
    consecutive notes that `NewNotes` admits; every other change, and every note it does not admit
    (a retry, a taken id, a target gone, invalid fields), is applied on its own in a savepoint, so
    that it is rejected alone. A run that fails as a whole (another device took one of its ids
    meanwhile) is applied again one change at a time, with the same isolation.
    """
    screen = visits.NewNotes(session, [ready[c["seq"]].data for c in new if c["seq"] in ready])
    results: list[dict[str, Any]] = []
    run: list[tuple[dict[str, Any], visits.NoteRows]] = []

    def store_run() -> None:
        if not run:
            return
        try:
            with changes.savepoint(session):
                visits.insert_notes(session, actor, [rows for _c, rows in run])
        except (IntegrityError, DataError):
            results.extend(_apply_one(session, actor, device, c) for c, _rows in run)
        else:
            results.extend({"seq": c["seq"], "record_id": c["record_id"], "status": "applied", "version": 1}
                           for c, _rows in run)  # fmt: skip
        run.clear()

    for c in new:
        rows = ready.get(c["seq"])
        if rows is not None and screen.admit(rows.data):
            run.append((c, rows))
            continue
        store_run()
        results.append(_apply_one(session, actor, device, c))
    store_run()
    return results


def _valid(schema: Schema, change: dict[str, Any]) -> dict[str, Any] | None:
    """A visit.create's note, validated; None if invalid (_apply_one rejects it with its field errors)."""
    try:
        return schema.load({**change["payload"], "id": str(change["record_id"])})
    except ValidationError:
        return None


def _stored(result: dict[str, Any]) -> dict[str, Any]:
    return scrub({k: audit.jsonable(v) for k, v in result.items() if v is not None})


def push(session: Session, actor: Actor, data: dict[str, Any], client: Client) -> dict[str, Any]:
    """Apply a batch of a device's changes, exactly once each, in seq order."""
    actor.require(*SYNC_ROLES)
    if data["device_id"] != actor.device_id:
        raise ApiError(409, "The batch names another device than the token's.", code="device_mismatch")
    ready = _prepare(actor, data["changes"])
    # Lock the device's row: two pushes from one device (a retry racing the original) queue here.
    device = session.scalar(select(Device).where(Device.id == actor.device_id).with_for_update())
    if device is None:
        raise not_found("Device")
    changes_in = data["changes"]
    expected = device.last_seq + 1
    old = [c for c in changes_in if c["seq"] < expected]
    new = [c for c in changes_in if c["seq"] >= expected]
    if new and new[0]["seq"] != expected:
        raise ApiError(
            409,
            f"Changes are missing before seq {new[0]['seq']}; send from seq {expected}.",
            code="sequence_gap",
            details={"expected_seq": expected},
        )
    results: list[dict[str, Any]] = []
    if old:
        stored = {
            row.seq: row.result
            for row in session.scalars(
                select(SyncChange).where(SyncChange.device_id == device.id, SyncChange.seq.in_([c["seq"] for c in old]))
            )
        }
        for c in old:
            result = stored.get(c["seq"], {"seq": c["seq"], "record_id": str(c["record_id"]), "status": "applied"})
            results.append(result | {"replayed": True})
    applied = _apply_all(session, actor, device, new, ready)
    results.extend(applied)
    now = utcnow()
    if new:
        # One INSERT for the batch's records of what each change came to (the answer to a resend).
        session.execute(
            insert(SyncChange),
            [
                {
                    "device_id": device.id,
                    "seq": c["seq"],
                    "user_id": actor.user_id,
                    "kind": c["kind"],
                    "record_id": c["record_id"],
                    "status": result["status"],
                    "result": _stored(result),
                    "payload": scrub(c["payload"]) if result["status"] != "applied" else None,
                    "received_at": now,
                }
                for c, result in zip(new, applied, strict=True)
            ],
        )
        device.last_seq = new[-1]["seq"]
    device.last_push_at = now
    device.last_seen_at = now
    device.queue_depth = data.get("queue_depth")
    device.protocol_version = client.protocol
    device.app_version = client.version
    return {
        "last_seq": device.last_seq,
        "results": results,
        "upgrade_required": client.too_old,
        "missing_attachments": _missing_attachments(session, new),
    }


def _missing_attachments(session: Session, applied: list[dict[str, Any]]) -> list[str]:
    hashes: set[str] = set()
    for c in applied:
        if c["kind"] == "visit.create":
            hashes.update(a.get("sha256", "") for a in c["payload"].get("attachments") or [])
        elif c["kind"] == "attachment.add":
            hashes.add(c["payload"].get("sha256", ""))
    hashes.discard("")
    if not hashes:
        return []
    have = set(session.scalars(select(Attachment.sha256).where(Attachment.sha256.in_(hashes))))
    return sorted(hashes - have)


# Pull --------------------------------------------------------------------------------------

_SERIALIZERS: dict[str, tuple[type, Callable[[Any], dict[str, Any]]]] = {
    "department": (Department, DepartmentSchema().dump),
    "campaign": (Campaign, CampaignSchema().dump),
    "target": (Target, TargetSchema().dump),
    "portfolio_entry": (
        PortfolioEntry,
        lambda o: {"id": str(o.id), "user_id": str(o.user_id), "target_id": str(o.target_id)},
    ),
    "visit": (Visit, _visit_dump),
    "problem": (Problem, _PROBLEM.dump),
    "attachment": (VisitAttachment, AttachmentSchema().dump),
    "conflict": (SyncConflict, ConflictSchema().dump),
}


def register_serializer(entity: str, model: type, dump: Callable[[Any], dict[str, Any]]) -> None:
    _SERIALIZERS[entity] = (model, dump)


def high_water(session: Session) -> int:
    return int(session.scalar(select(SyncCounter.value).where(SyncCounter.id == 1)) or 0)


# What a pull reads of each change-log row (target_id names the record of a revocation row).
_ROW = (
    ChangeLogEntry.entity,
    ChangeLogEntry.record_id,
    ChangeLogEntry.change_no,
    ChangeLogEntry.op,
    ChangeLogEntry.target_id,
)


def _stream(session: Session, user_id: uuid.UUID, portfolio: list[uuid.UUID], cursor: int, limit: int) -> list[Any]:
    """The next `limit` changes after `cursor` that this user receives, in one statement (one snapshot)."""
    parts = [
        select(*_ROW).where(ChangeLogEntry.scope == "all", ChangeLogEntry.change_no > cursor),
        select(*_ROW).where(ChangeLogEntry.owner_id == user_id, ChangeLogEntry.change_no > cursor),
    ]
    if portfolio:
        parts.append(
            select(*_ROW).where(
                ChangeLogEntry.scope == "target",
                ChangeLogEntry.target_id.in_(portfolio),
                ChangeLogEntry.change_no > cursor,
            )
        )
    # Each part walks its own (key, change_no) index in order and stops after `limit` rows.
    limited = [p.order_by(ChangeLogEntry.change_no).limit(limit).subquery() for p in parts]
    merged = union_all(*(select(*s.c) for s in limited)).subquery()
    rows = session.execute(select(*merged.c).order_by(merged.c.change_no).limit(limit * len(parts))).all()
    seen: set[int] = set()
    out = []
    for row in rows:
        if row.change_no not in seen:
            seen.add(row.change_no)
            out.append(row)
    return out[:limit]


def _backfill(session: Session, target_id: uuid.UUID, cursor: int, after: int, limit: int) -> list[Any]:
    """A target's history up to `cursor`, for a device that just gained it."""
    return list(
        session.execute(
            select(*_ROW)
            .where(
                ChangeLogEntry.scope == "target",
                ChangeLogEntry.target_id == target_id,
                ChangeLogEntry.change_no > after,
                ChangeLogEntry.change_no <= cursor,
                ChangeLogEntry.op == "upsert",
            )
            .order_by(ChangeLogEntry.change_no)
            .limit(limit)
        ).all()
    )


def _materialise(session: Session, rows: list[Any]) -> list[dict[str, Any]]:
    """Current state of each changed record; a record gone since is left out (its tombstone follows)."""
    wanted: dict[str, list[uuid.UUID]] = defaultdict(list)
    for row in rows:
        if row.op == "upsert" and row.entity in _SERIALIZERS:
            wanted[row.entity].append(row.record_id)
    loaded: dict[tuple[str, uuid.UUID], Any] = {}
    for entity, ids in wanted.items():
        model: Any = _SERIALIZERS[entity][0]
        for obj in session.scalars(select(model).where(model.id.in_(ids))).unique():
            loaded[(entity, obj.id)] = obj
    out = []
    for row in rows:
        if row.entity.startswith(changes.REVOKED):
            # A record given to someone else: a tombstone for the user who had it (changes.revoke).
            entity = row.entity.removeprefix(changes.REVOKED)
            out.append(
                {"entity": entity, "id": row.target_id, "op": "delete", "change_no": row.change_no, "data": None}
            )
            continue
        if row.entity not in _SERIALIZERS:
            continue
        if row.op == "delete":
            out.append(
                {"entity": row.entity, "id": row.record_id, "op": "delete", "change_no": row.change_no, "data": None}
            )
            continue
        obj = loaded.get((row.entity, row.record_id))
        if obj is not None:
            data = _SERIALIZERS[row.entity][1](obj)
            out.append(
                {"entity": row.entity, "id": row.record_id, "op": "upsert", "change_no": row.change_no, "data": data}
            )
    return out


def pull(session: Session, actor: Actor, data: dict[str, Any]) -> dict[str, Any]:
    """The changes a device receives after its cursor, back-filling targets it just gained."""
    actor.require(*SYNC_ROLES)
    assert actor.user_id is not None
    cursor = int(data["cursor"])
    limit = data["limit"]
    top = high_water(session)
    if cursor > top:
        raise ApiError(
            410,
            "The cursor is unknown to this server; clear the cache (keep the outbox) and pull from 0.",
            code="cursor_expired",
            details={"high_water": top},
        )
    portfolio = sorted(session.scalars(select(PortfolioEntry.target_id).where(PortfolioEntry.user_id == actor.user_id)))
    known = set(data["targets"])
    gained = [t for t in portfolio if t not in known]
    removed = sorted(known - set(portfolio))
    complete: list[uuid.UUID] = []
    rows: list[Any] = []
    backfill_next = None
    pending = data.get("backfill")
    for target in gained:
        if cursor == 0:  # a first pull streams everything: nothing to back-fill
            complete.append(target)
            continue
        after = int(pending["after"]) if pending and pending["target"] == target else 0
        room = limit - len(rows)
        if room <= 0:
            backfill_next = {"target": target, "after": "0"}
            break
        got = _backfill(session, target, cursor, after, room)
        rows.extend(got)
        if len(got) < room:
            complete.append(target)
        else:
            backfill_next = {"target": target, "after": str(got[-1].change_no)}
            break
    next_cursor = cursor
    has_more = True  # a back-fill page: the stream comes after it
    room = limit - len(rows)
    if backfill_next is None and room > 0:
        streamed = _stream(session, actor.user_id, portfolio, cursor, room)
        rows.extend(streamed)
        if streamed:
            next_cursor = streamed[-1].change_no
        has_more = len(streamed) == room
    return {
        "changes": _materialise(session, rows),
        "cursor": str(next_cursor),
        "has_more": bool(has_more),
        "complete_targets": complete,
        "removed_targets": removed,
        "backfill": backfill_next,
    }


def touch_pull(session: Session, device_id: uuid.UUID, client: Client) -> None:
    device = session.get(Device, device_id)
    if device is not None:
        now = utcnow()
        device.last_pull_at = now
        device.last_seen_at = now
        device.protocol_version = client.protocol
        device.app_version = client.version


# What supervisors see ------------------------------------------------------------------------


def device_status(session: Session, actor: Actor) -> list[dict[str, Any]]:
    """Per device: last contact, queue depth, last seq, rejected and open-conflict counts."""
    from server.db.models import User

    query = select(Device, User.display_name).join(User, User.id == Device.user_id)
    if not actor.reads_everything:
        actor.require(*SYNC_ROLES)
        query = query.where(Device.user_id == actor.user_id)
    rejected = dict(
        session.execute(
            select(SyncChange.device_id, func.count())
            .where(SyncChange.status == "rejected")
            .group_by(SyncChange.device_id)
        ).all()
    )
    conflicts = dict(
        session.execute(
            select(SyncConflict.device_id, func.count())
            .where(SyncConflict.status == "open")
            .group_by(SyncConflict.device_id)
        ).all()
    )
    out = []
    for device, user_name in session.execute(query.order_by(Device.last_seen_at.desc(), Device.id)):
        out.append(
            {
                "id": device.id,
                "user_id": device.user_id,
                "user_name": user_name,
                "name": device.name,
                "app_version": device.app_version,
                "protocol_version": device.protocol_version,
                "last_seen_at": device.last_seen_at,
                "last_push_at": device.last_push_at,
                "last_pull_at": device.last_pull_at,
                "last_seq": device.last_seq,
                "queue_depth": device.queue_depth,
                "rejected": int(rejected.get(device.id, 0)),
                "open_conflicts": int(conflicts.get(device.id, 0)),
                "revoked_at": device.revoked_at,
            }
        )
    return out


def rejections(session: Session, actor: Actor, device_id: uuid.UUID | None = None) -> list[dict[str, Any]]:
    query = select(SyncChange).where(SyncChange.status == "rejected")
    if not actor.reads_everything:
        actor.require(*SYNC_ROLES)
        query = query.where(SyncChange.user_id == actor.user_id)
    if device_id:
        query = query.where(SyncChange.device_id == device_id)
    rows = session.scalars(query.order_by(SyncChange.received_at.desc()).limit(500))
    return [
        {
            "device_id": r.device_id,
            "user_id": r.user_id,
            "seq": r.seq,
            "kind": r.kind,
            "record_id": r.record_id,
            "code": r.result.get("code"),
            "message": r.result.get("message"),
            "errors": r.result.get("errors"),
            "payload": r.payload,
            "received_at": r.received_at,
        }
        for r in rows
    ]


def list_conflicts(session: Session, actor: Actor, status: str | None = "open") -> list[SyncConflict]:
    query = select(SyncConflict)
    if not actor.reads_everything:
        actor.require(*SYNC_ROLES)
        query = query.where(SyncConflict.user_id == actor.user_id)
    if status:
        query = query.where(SyncConflict.status == status)
    return list(session.scalars(query.order_by(SyncConflict.created_at.desc()).limit(500)))


def resolve_conflict(session: Session, actor: Actor, conflict_id: uuid.UUID, resolution: str) -> SyncConflict:
    """keep_server closes it; use_device applies the device's edit on top of the current version."""
    conflict = session.get(SyncConflict, conflict_id)
    if conflict is None or (not actor.reads_everything and conflict.user_id != actor.user_id):
        raise not_found("Conflict")
    if conflict.status != "open":
        raise ApiError(409, "The conflict is already resolved.", code="already_resolved")
    if resolution == "use_device":
        if conflict.entity == "visit":
            visit = session.get(Visit, conflict.record_id)
            if visit is None:
                raise ApiError(409, "The visit no longer exists.", code="record_gone")
            if visit.cadre_id != actor.user_id:
                raise forbidden("Only the cadre who wrote the note can apply the device's version.")
            data = _load(VisitEditSchema(), conflict.device_payload)
            visits.update_visit(session, actor, visit.id, {**data, "version": visit.version})
        elif conflict.entity == "problem":
            problem = problems.get_problem(session, actor, conflict.record_id)
            data = _load(ProblemRewordSchema(), conflict.device_payload)
            problems.update_problem(session, actor, problem.id, {**data, "version": problem.version})
        elif conflict.entity == "followup":
            from server.services import followups

            followup = followups.get_followup(session, actor, conflict.record_id)
            data = _load(FollowUpResultSchema(), conflict.device_payload)
            followups.complete_followup(session, actor, followup.id, {**data, "version": followup.version})
    conflict.status = "resolved"
    conflict.resolution = resolution
    conflict.resolved_by_id = actor.user_id
    conflict.resolved_at = utcnow()
    audit.record(session, actor, "resolve", "conflict", conflict.id, {"resolution": resolution})
    return conflict
