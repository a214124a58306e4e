"""Visit notes and the problems raised in them, as cadres write them."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import Select, Text, or_, select
from sqlalchemy.orm import Session, selectinload

from schemas.enums import Role
from server.db.models import Campaign, PortfolioEntry, Problem, Target, Visit, VisitAttachment
from server.domain.periods import day_bounds
from server.errors import ApiError, forbidden, invalid, not_found
from server.services import audit, search
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


def _same_note(visit: Visit, data: dict[str, Any]) -> bool:
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


def create_visit(session: Session, actor: Actor, data: dict[str, Any]) -> tuple[Visit, bool]:
    """Record a visit note with its problems. Returns (visit, created).

    A note sent again with the same id and content is the same note (a retry): it is returned
    as it is, never stored twice. The same id with other content is a conflict.
    """
    actor.require(*WRITERS)
    visit_id = data.get("id") or uuid.uuid4()
    existing = session.get(Visit, visit_id)
    if existing is not None:
        if existing.cadre_id == actor.user_id and _same_note(existing, data):
            return existing, False
        raise ApiError(409, "A different visit note with this id exists.", code="id_taken")
    _check_refs(session, data)
    problems = data.pop("problems")
    attachments = data.pop("attachments", [])
    # One query for all the problem ids, before anything is pending (no flush per problem).
    ids = [p["id"] for p in problems if p.get("id")]
    if ids and session.scalar(select(Problem.id).where(Problem.id.in_(ids)).limit(1)) is not None:
        raise ApiError(409, "A problem with this id exists.", code="id_taken")
    data["service_categories"] = [c.value for c in data["service_categories"]]
    # An empty attachments list, so that reading it after the flush needs no lazy load.
    visit = Visit(**{**data, "id": visit_id}, cadre_id=actor.user_id, device_id=actor.device_id, attachments=[])
    session.add(visit)
    for position, p in enumerate(problems):
        _add_problem(visit, p, position)
    for a in attachments:
        _check_attachment_id(session, a["id"])
        visit.attachments.append(VisitAttachment(**a))
    session.flush()
    _index(session, visit, new=True)
    audit.record(
        session, actor, "create", "visit", visit.id,
        audit.snapshot(visit, VISIT_FIELDS)
        | {"problems": [str(p.id) for p in visit.problems], "attachments": [a.sha256 for a in visit.attachments]},
    )  # fmt: skip
    # The response names the cadre and the target: load them in this transaction, not in a second
    # one after the commit (on SQLite a second wait for the write lock).
    session.refresh(visit, ["cadre", "target"])
    return visit, True


def _check_attachment_id(session: Session, attachment_id: uuid.UUID) -> None:
    if session.get(VisitAttachment, attachment_id) is not None:
        raise ApiError(409, "An attachment with this id exists.", code="id_taken")


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


def _add_problem(visit: Visit, p: dict[str, Any], position: int) -> Problem:
    problem = Problem(
        id=p.get("id") or uuid.uuid4(),
        position=position,
        campaign_id=visit.campaign_id,
        target_id=visit.target_id,
        cadre_id=visit.cadre_id,
        raised_at=visit.visited_at,
        category=p["category"],
        description=p["description"],
    )
    visit.problems.append(problem)
    return problem


def _index(session: Session, visit: Visit, *, new: bool = False) -> None:
    """Index the visit and its problems; `new`: all were just created here, so none has an entry yet."""
    put = search.add if new else search.index
    put(session, "visit", visit.id, visit.summary, visit.location_text)
    for problem in visit.problems:
        put(session, "problem", problem.id, problem.description)


def add_problem(session: Session, actor: Actor, visit_id: uuid.UUID, data: dict[str, Any]) -> Problem:
    visit = _own_visit(session, actor, visit_id)
    if data.get("id") and session.get(Problem, data["id"]) is not None:
        raise ApiError(409, "A problem with this id exists.", code="id_taken")
    problem = _add_problem(visit, data, len(visit.problems))
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
    changes = audit.apply(visit, data)
    if "visited_at" in changes:
        for problem in visit.problems:
            problem.raised_at = visit.visited_at
    _index(session, visit)
    audit.record(session, actor, "update", "visit", visit.id, changes)
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
            session, query, kind="visit", id_column=Visit.id, text_column=Visit.summary, q=args["q"],
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
