"""Visit notes and the problems raised in them, as cadres write them."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Select, Text, insert, literal_column, or_, select, union_all
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, selectinload

from schemas.enums import ProblemStatus, Role
from server.db import read_next
from server.db.models import (
    AuditEntry,
    Base,
    Campaign,
    PortfolioEntry,
    Problem,
    Target,
    User,
    Visit,
    VisitAttachment,
)
from server.db.types import utcnow
from server.domain.periods import day_bounds
from server.errors import ApiError, forbidden, invalid, not_found
from server.services import audit, changes, search
from server.services.actors import Actor
from server.services.directory import check_version
from server.services.pagination import Page, paginate

VISIT_FIELDS = (
    "campaign_id", "target_id", "visited_at", "service_categories", "summary",
    "latitude", "longitude", "location_text",
)  # fmt: skip
WRITERS = (Role.cadre, Role.supervisor)


def _visible(query: Select[Any], actor: Actor) -> Select[Any]:
    if actor.reads_everything:
        return query
    if actor.role in WRITERS:
        return query.where(Visit.cadre_id == actor.user_id)
    raise forbidden()


def get_visit(session: Session, actor: Actor, visit_id: uuid.UUID) -> Visit:
    visit = session.scalar(_visible(select(Visit), actor).where(Visit.id == visit_id))
    if visit is None:
        raise not_found("Visit")
    return visit


def _own_visit(session: Session, actor: Actor, visit_id: uuid.UUID) -> Visit:
    visit = get_visit(session, actor, visit_id)
    if visit.cadre_id != actor.user_id:
        raise forbidden("Only the cadre who wrote a visit note may change it.")
    return visit


def _check_refs(session: Session, data: dict[str, Any]) -> None:
    if "campaign_id" in data and session.get(Campaign, data["campaign_id"]) is None:
        raise invalid("campaign_id", "No such campaign.")
    if "target_id" in data:
        target = session.get(Target, data["target_id"])
        if target is None:
            raise invalid("target_id", "No such target.")
        if not target.active:
            raise invalid("target_id", "The target is no longer active.")


def _same_note(visit: Visit, data: Mapping[str, Any]) -> bool:
    mine = {f: getattr(visit, f) for f in VISIT_FIELDS}
    theirs = {f: data.get(f) for f in VISIT_FIELDS}
    theirs["service_categories"] = [c.value for c in data["service_categories"]]
    mine["service_categories"] = list(visit.service_categories)
    problems = [(p.id, p.category, p.description) for p in visit.problems]
    sent = [(p.get("id"), p["category"], p["description"]) for p in data["problems"]]
    same_problems = len(problems) == len(sent) and all(
        (sid is None or sid == pid) and (scat, sdesc) == (pcat, pdesc)
        for (pid, pcat, pdesc), (sid, scat, sdesc) in zip(problems, sent, strict=True)
    )
    # Attachments added later (attachment.add) may follow the note; the note's own must be there.
    stored = {a.id: a.sha256 for a in visit.attachments}
    same_attachments = all(stored.get(a["id"]) == a["sha256"] for a in data.get("attachments", []))
    return mine == theirs and same_problems and same_attachments


def post_visit(session: Session, actor: Actor, data: dict[str, Any]) -> tuple[uuid.UUID, bool, Visit | None]:
    """A visit note POSTed on its own: its id, whether it was stored now (not a retry), and its
    answer: built from the rows just written, or the note as `create_visit` loaded it; None for a
    new note with attachments (read it after the commit).

    The note is built and screened (ids free, target active, campaign known) in a read
    transaction, so that on SQLite the write lock is held only for its INSERTs and the commit,
    not for the screening's queries. A retry of a stored note, or another note with a taken note
    id, is answered there too (200 or 409). Should another request take one of its ids in
    between, the INSERT fails, nothing is kept, and `create_visit` takes it again under the lock:
    it answers for a retry (the same note) or a conflict as before. `session` must be between
    transactions; the caller commits.
    """
    actor.require(*WRITERS)
    data = {**data, "id": data.get("id") or uuid.uuid4()}
    rows = note_rows(actor, data)
    read_next(session)
    admitted = NewNotes(session, [data]).admit(data)
    # An attachment's answer says whether its bytes are there already: that one is read back.
    refs = _answer_refs(session, actor, data) if admitted and not rows.attachments else None
    if not admitted and (stored := _stored_before(session, actor, data)) is not None:
        # A retry (the answer to the first send was lost) is answered from the read transaction,
        # which wrote nothing: it never waits for the write lock.
        session.commit()  # keeps what it loaded (expire_on_commit=False), unlike a rollback
        return stored.id, False, stored
    session.rollback()  # ends the read transaction; it wrote nothing
    if admitted:
        try:
            insert_notes(session, actor, [rows])
        except IntegrityError:
            session.rollback()
        else:
            return data["id"], True, _answer(rows, *refs) if refs else None
    # Loaded whole (problems, attachments, target, cadre) in its transaction: kept after the commit.
    visit, created = create_visit(session, actor, data)
    return visit.id, created, visit


def _answer_refs(session: Session, actor: Actor, data: Mapping[str, Any]) -> tuple[Target, User] | None:
    """The target and cadre a new note's answer names, loaded and taken out of the session (so
    the end of the read transaction leaves them as they are); None if either is gone."""
    target, cadre = session.get(Target, data["target_id"]), session.get(User, actor.user_id)
    if target is None or cadre is None:
        return None
    session.expunge(target)
    session.expunge(cadre)
    return target, cadre


def _answer(rows: NoteRows, target: Target, cadre: User) -> Visit:
    """A new note's answer (VisitSchema) from the rows just written, without reading them back:
    unsaved objects that no session holds, whose columns are the rows' (the rest, None)."""
    visit = Visit(**rows.visit, target=target, cadre=cadre)
    visit.problems = [Problem(**p, target=target) for p in rows.problems]
    return visit


def _stored_before(session: Session, actor: Actor, data: Mapping[str, Any]) -> Visit | None:
    """The note with `data`'s id, loaded whole, if this cadre stored this very note before (a
    retry); None if no note has the id; 409 if another note has it."""
    existing = session.scalars(select(Visit).where(Visit.id == data["id"]).options(*NOTE_LOADS)).one_or_none()
    if existing is None:
        return None
    if existing.cadre_id == actor.user_id and _same_note(existing, data):
        return existing
    raise ApiError(409, "A different visit note with this id exists.", code="id_taken")


def get_note(session: Session, visit_id: uuid.UUID) -> Visit:
    """A visit with everything its answer shows (VisitSchema) loaded (404 if it was withdrawn
    since: a POST reads its answer after its commit)."""
    visit = session.scalars(select(Visit).where(Visit.id == visit_id).options(*NOTE_LOADS)).one_or_none()
    if visit is None:
        raise not_found("Visit")
    return visit


def create_visit(session: Session, actor: Actor, data: dict[str, Any]) -> tuple[Visit, bool]:
    """Record a visit note with its problems. Returns (visit, created).

    A note sent again with the same id and content is the same note (a retry): it is returned
    as it is, never stored twice. The same id with other content is a conflict.
    """
    actor.require(*WRITERS)
    data = {**data, "id": data.get("id") or uuid.uuid4()}
    rows = note_rows(actor, data)  # before the first statement: on SQLite, outside the write lock
    if not NewNotes(session, [data]).admit(data):
        # Not plainly new: say why, or find it is a retry.
        existing = _stored_before(session, actor, data)
        if existing is not None:
            return existing, False
        _check_refs(session, data)
        for model, ids in (
            (Problem, [p["id"] for p in data["problems"] if p.get("id")]),
            (VisitAttachment, [a["id"] for a in data.get("attachments", [])]),
        ):
            if ids and session.scalar(select(model.id).where(model.id.in_(ids)).limit(1)) is not None:
                raise ApiError(409, f"A {model.__name__} with this id exists.", code="id_taken")
        # Left: ids repeated within the note itself, which the INSERT refuses (IntegrityError, 409).
    insert_notes(session, actor, [rows])
    return get_note(session, data["id"]), True


# Everything a visit's answer shows (VisitSchema), loaded with the visit.
NOTE_LOADS = (selectinload(Visit.problems), selectinload(Visit.attachments))


class NewNotes:
    """Which of a batch of validated notes `insert_notes` may store: new ids, an active target, a
    known campaign.

    Everything it needs is read up front, for the whole batch: which of the ids the notes carry
    are taken, which of their targets are active, which campaigns exist. A note it does not admit
    (a retry, a taken id, a reference that fails) is one for `create_visit`, which answers for it.
    """

    def __init__(self, session: Session, notes: list[Mapping[str, Any]]) -> None:
        visits, problems, attachments, self._targets, self._campaigns = _existing(
            session,
            [
                (Visit.id, {n["id"] for n in notes}),
                (Problem.id, {p.get("id") for n in notes for p in n["problems"]} - {None}),
                (VisitAttachment.id, {a["id"] for n in notes for a in n.get("attachments", [])}),
                (Target.id, {n["target_id"] for n in notes}, Target.active),
                (Campaign.id, {n["campaign_id"] for n in notes}),
            ],
        )
        self._taken: set[uuid.UUID] = visits | problems | attachments

    def admit(self, data: Mapping[str, Any]) -> bool:
        """Whether the note may be stored in bulk; if so, its ids count as taken from now on."""
        ids = [
            data.get("id"),
            *(p.get("id") for p in data["problems"]),
            *(a["id"] for a in data.get("attachments", [])),
        ]
        mine = [i for i in ids if i is not None]
        if data.get("id") is None or len(set(mine)) != len(mine) or not self._taken.isdisjoint(mine):
            return False
        if data["target_id"] not in self._targets or data["campaign_id"] not in self._campaigns:
            return False
        self._taken.update(mine)
        return True


# Ids per IN list: a database caps the parameters of one statement (PostgreSQL 65,535; SQLite
# 32,766, or 999 in builds before 3.32), and a batch of 500 notes may carry 25,000 problem ids.
IN_CHUNK = 5000


def _existing(session: Session, asks: list[tuple[Any, ...]]) -> list[set[Any]]:
    """For each ask (column, ids, *where): which of `ids` are in `column`, in rows meeting `where`.

    One statement (a UNION ALL, each part tagged with its ask) for as many asks as IN_CHUNK ids
    allow, so a single note is screened in one round trip, and a big batch in a few.
    """
    statements: list[list[Any]] = [[]]  # each a list of SELECTs, IN_CHUNK ids in all
    room = IN_CHUNK
    for tag, (column, ids, *where) in enumerate(asks):
        wanted = list(ids)
        while wanted:
            if room == 0:
                statements.append([])
                room = IN_CHUNK
            chunk, wanted = wanted[:room], wanted[room:]
            room -= len(chunk)
            statements[-1].append(select(literal_column(str(tag)), column).where(column.in_(chunk), *where))
    found: list[set[Any]] = [set() for _ in asks]
    for parts in filter(None, statements):
        query: Any = union_all(*parts) if len(parts) > 1 else parts[0]
        for tag, value in session.execute(query):
            found[tag].add(value)
    return found


def _visit_row(actor: Actor, data: Mapping[str, Any], now: dt.datetime) -> dict[str, Any]:
    row = {f: data.get(f) for f in VISIT_FIELDS}
    row["service_categories"] = [c.value for c in data["service_categories"]]
    return row | {
        "id": data["id"], "cadre_id": actor.user_id, "device_id": actor.device_id, "version": 1,
        "created_at": now, "updated_at": now,
    }  # fmt: skip


def _problem_row(visit: Mapping[str, Any], p: Mapping[str, Any], position: int, now: dt.datetime) -> dict[str, Any]:
    """A new problem of `visit` (its columns); campaign, target, cadre and time are the visit's."""
    return {
        "id": p.get("id") or uuid.uuid4(),
        "visit_id": visit["id"],
        "position": position,
        "campaign_id": visit["campaign_id"],
        "target_id": visit["target_id"],
        "cadre_id": visit["cadre_id"],
        "raised_at": visit["visited_at"],
        "category": p["category"],
        "description": p["description"],
        "status": ProblemStatus.open,
        "version": 1,
        "created_at": now,
        "updated_at": now,
    }


@dataclass(frozen=True)
class NoteRows:
    """A new note's rows, built from the validated note with no database at hand (`note_rows`), so
    that a request can build them before its write transaction begins: on SQLite, outside the one
    write lock that every writer waits for."""

    data: Mapping[str, Any]  # the validated note (what NewNotes screens)
    visit: dict[str, Any]
    problems: list[dict[str, Any]]
    attachments: list[dict[str, Any]]
    entries: list[dict[str, Any]]  # search entries, with their bigram tokens
    audit: dict[str, Any]


def note_rows(actor: Actor, data: Mapping[str, Any], now: dt.datetime | None = None) -> NoteRows:
    """The rows of a new note (validated, with its id) as `insert_notes` stores them."""
    now = now or utcnow()
    visit = _visit_row(actor, data, now)
    problems = [_problem_row(visit, p, i, now) for i, p in enumerate(data["problems"])]
    attachments = [{**a, "visit_id": visit["id"], "created_at": now} for a in data.get("attachments", [])]
    entries = [search.entry("visit", visit["id"], visit["summary"], visit["location_text"])]
    entries.extend(search.entry("problem", p["id"], p["description"]) for p in problems)
    snapshot = {f: visit[f] for f in VISIT_FIELDS}
    snapshot |= {"problems": [p["id"] for p in problems], "attachments": [a["sha256"] for a in attachments]}
    audit_row = audit.row(actor, "create", "visit", visit["id"], snapshot) | {"at": now}
    return NoteRows(data, visit, problems, attachments, entries, audit_row)


def insert_notes(session: Session, actor: Actor, notes: list[NoteRows]) -> None:
    """Store new visit notes (screened by `NewNotes`) with their problems, attachments, search
    entries, audit entries and change-log numbers: one INSERT per table for all of them, no ORM
    object and no flush per note (a note costs a millisecond, not ten)."""
    actor.require(*WRITERS)
    rows: dict[type[Base], list[dict[str, Any]]] = {
        Visit: [n.visit for n in notes],
        Problem: [p for n in notes for p in n.problems],
        VisitAttachment: [a for n in notes for a in n.attachments],
        AuditEntry: [n.audit for n in notes],
    }
    for n in notes:
        changes.note_rows(session, Visit, [n.visit])
        changes.note_rows(session, Problem, n.problems)
        # An attachment goes to whoever receives its visit (changes._attachment_scope).
        changes.note(session, VisitAttachment, [a["id"] for a in n.attachments], changes.scope_of(Visit, n.visit))
    # Core INSERTs on the session's connection (a tenth cheaper than ORM bulk inserts): what the
    # session still holds goes first, as an ORM statement would have autoflushed it.
    session.flush()
    for model, model_rows in rows.items():
        if model_rows:
            session.connection().execute(insert(model), model_rows)
    search.add_entries(session, [e for n in notes for e in n.entries])


def add_attachment(session: Session, actor: Actor, visit_id: uuid.UUID, data: dict[str, Any]) -> VisitAttachment:
    """Attach a file (by hash) to your own visit; its bytes may arrive later."""
    visit = _own_visit(session, actor, visit_id)
    existing = session.get(VisitAttachment, data["id"])
    if existing is not None:
        if existing.visit_id == visit.id and existing.sha256 == data["sha256"]:
            return existing
        raise ApiError(409, "An attachment with this id exists.", code="id_taken")
    attachment = VisitAttachment(**data)
    visit.attachments.append(attachment)
    session.flush()
    audit.record(session, actor, "create", "attachment", attachment.id, {"visit_id": visit.id, **data})
    return attachment


def _index(session: Session, visit: Visit) -> None:
    search.index(session, "visit", visit.id, visit.summary, visit.location_text)
    for problem in visit.problems:
        search.index(session, "problem", problem.id, problem.description)


def add_problem(session: Session, actor: Actor, visit_id: uuid.UUID, data: dict[str, Any]) -> Problem:
    visit = _own_visit(session, actor, visit_id)
    if data.get("id") and session.get(Problem, data["id"]) is not None:
        raise ApiError(409, "A problem with this id exists.", code="id_taken")
    of_visit = {f: getattr(visit, f) for f in ("id", "campaign_id", "target_id", "cadre_id", "visited_at")}
    problem = Problem(**_problem_row(of_visit, data, len(visit.problems), utcnow()))
    visit.problems.append(problem)
    session.flush()
    search.index(session, "problem", problem.id, problem.description)
    audit.record(
        session,
        actor,
        "create",
        "problem",
        problem.id,
        audit.snapshot(problem, ("visit_id", "category", "description")),
    )
    return problem


def update_visit(session: Session, actor: Actor, visit_id: uuid.UUID, data: dict[str, Any]) -> Visit:
    visit = _own_visit(session, actor, visit_id)
    check_version(visit, data)
    if "service_categories" in data:
        data["service_categories"] = [c.value for c in data["service_categories"]]
    changed = audit.apply(visit, data)
    if "visited_at" in changed:
        for problem in visit.problems:
            problem.raised_at = visit.visited_at
    _index(session, visit)
    audit.record(session, actor, "update", "visit", visit.id, changed)
    return visit


def delete_visit(session: Session, actor: Actor, visit_id: uuid.UUID) -> None:
    """A cadre may withdraw a note until a supervisor has acted on one of its problems."""
    visit = _own_visit(session, actor, visit_id)
    if any(p.outcome is not None or p.department_id is not None for p in visit.problems):
        raise ApiError(
            409, "A supervisor has acted on a problem of this visit; it cannot be deleted.", code="visit_in_use"
        )
    search.unindex(session, "visit", [visit.id])
    search.unindex(session, "problem", [p.id for p in visit.problems])
    audit.record(session, actor, "delete", "visit", visit.id, audit.snapshot(visit, VISIT_FIELDS))
    session.delete(visit)


def list_visits(session: Session, actor: Actor, args: dict[str, Any], *, limit: int) -> Page[Visit]:
    query = _visible(select(Visit), actor).options(selectinload(Visit.problems), selectinload(Visit.attachments))
    query = filter_by_target(query, Visit, args)
    if args.get("campaign"):
        query = query.where(Visit.campaign_id == args["campaign"])
    if args.get("cadre"):
        query = query.where(Visit.cadre_id == args["cadre"])
    if args.get("category"):
        # JSON arrays differ between the databases; the encoded value is the same text in both.
        query = query.where(Visit.service_categories.cast(Text).contains(f'"{args["category"].value}"'))
    query = filter_by_days(query, Visit.visited_at, args)
    keys = [Visit.visited_at, Visit.id]
    if args.get("q"):
        return search.page(
            session, query, kind="visit", id_column=Visit.id, text_columns=[Visit.summary, Visit.location_text],
            q=args["q"],
            keys=keys, cursor=args.get("cursor"), limit=limit,
        )  # fmt: skip
    return paginate(session, query, keys, cursor=args.get("cursor"), limit=limit, descending=True)


def filter_by_target(query: Select[Any], model: Any, args: dict[str, Any]) -> Select[Any]:
    """Target, target kind, park (the park itself and what sits in it) and portfolio filters."""
    if args.get("target"):
        query = query.where(model.target_id == args["target"])
    if args.get("kind") or args.get("park"):
        targets = select(Target.id)
        if args.get("kind"):
            targets = targets.where(Target.kind == args["kind"])
        if args.get("park"):
            targets = targets.where(or_(Target.id == args["park"], Target.park_id == args["park"]))
        query = query.where(model.target_id.in_(targets))
    if args.get("portfolio_of"):
        query = query.where(
            model.target_id.in_(select(PortfolioEntry.target_id).where(PortfolioEntry.user_id == args["portfolio_of"]))
        )
    return query


def filter_by_days(query: Select[Any], column: Any, args: dict[str, Any]) -> Select[Any]:
    start, end = day_bounds(args.get("from_"), args.get("to"))
    if start is not None:
        query = query.where(column >= start)
    if end is not None:
        query = query.where(column < end)
    return query
