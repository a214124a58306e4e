"""Full-text search over visit summaries and problem descriptions (CJK bigrams, both databases)."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    Select,
    delete,
    event,
    false,
    func,
    insert,
    literal,
    literal_column,
    or_,
    select,
    text,
)
from sqlalchemy.orm import Mapper, Session

from server.db.models import SearchEntry
from server.domain.search import index_tokens, query_plan
from server.services.pagination import Page, paginate


def index(session: Session, kind: str, record_id: uuid.UUID, *texts: str | None) -> None:
    """Create or refresh the search entry of one record."""
    tokens = index_tokens(*texts)
    entry = session.scalar(select(SearchEntry).where(SearchEntry.kind == kind, SearchEntry.record_id == record_id))
    if entry is None:
        session.add(SearchEntry(kind=kind, record_id=record_id, tokens=tokens))
    elif entry.tokens != tokens:
        entry.tokens = tokens


def entry(kind: str, record_id: uuid.UUID, *texts: str | None) -> dict[str, Any]:
    """The columns of a new search entry, for `add_entries`."""
    return {"kind": kind, "record_id": record_id, "tokens": index_tokens(*texts)}


# SQLite keeps one FTS5 table per kind, search_fts_visit and search_fts_problem, each over a view of
# search_entries of its kind (migration 0009). They hear of new entries from the app, not from a
# trigger, which made indexing cost twice as much (migration 0008); UPDATE and DELETE still go
# through triggers, which hand FTS5 the old tokens.
FTS_TABLES = {"visit": "search_fts_visit", "problem": "search_fts_problem"}


def _fts_insert(kind: str) -> str:
    return f"INSERT INTO {FTS_TABLES[kind]}(rowid, tokens) VALUES (?, ?)"


def add_entries(session: Session, rows: list[dict[str, Any]]) -> None:
    """Insert new search entries (see `entry`) with one statement, and index them."""
    if not rows:
        return
    conn = session.connection()
    if conn.dialect.name != "sqlite":
        conn.execute(insert(SearchEntry), rows)  # the tsvector is a generated column
        return
    # Ids given here, so that both INSERTs run as prepared statements (a RETURNING of many rows
    # is a new multi-row statement for SQLite to parse each time). Safe: a writer's transaction
    # holds SQLite's one write lock from its BEGIN IMMEDIATE, so no other writer takes ids meanwhile.
    first = (conn.scalar(select(func.max(SearchEntry.id))) or 0) + 1
    numbered = [row | {"id": i} for i, row in enumerate(rows, start=first)]
    conn.execute(insert(SearchEntry), numbered)
    for kind in FTS_TABLES:
        of_kind = [(row["id"], row["tokens"]) for row in numbered if row["kind"] == kind]
        if of_kind:
            conn.exec_driver_sql(_fts_insert(kind), of_kind)


@event.listens_for(SearchEntry, "after_insert")
def _index_inserted(_mapper: Mapper[SearchEntry], connection: Connection, entry: SearchEntry) -> None:
    """An entry inserted through the ORM (`index`, the demo data) is indexed as it is flushed."""
    if connection.dialect.name == "sqlite":
        connection.exec_driver_sql(_fts_insert(entry.kind), (entry.id, entry.tokens))


def unindex(session: Session, kind: str, record_ids: list[uuid.UUID]) -> None:
    if record_ids:
        session.execute(delete(SearchEntry).where(SearchEntry.kind == kind, SearchEntry.record_id.in_(record_ids)))


# A word with at most this many matches is fetched from the index and its rows sorted; a more
# common one is found by walking the list newest first and probing each row (see page()).
FEW_MATCHES = 2000


def _entry_match(session: Session, kind: str, phrases: list[str]) -> ColumnElement[bool]:
    """A clause on search_entries of `kind`: the entry holds every phrase."""
    if session.get_bind().dialect.name == "sqlite":
        return SearchEntry.id.in_(_fts_rowids(kind, phrases))
    tsq: Any = func.phraseto_tsquery("simple", phrases[0])
    for p in phrases[1:]:
        tsq = tsq.op("&&")(func.phraseto_tsquery("simple", p))
    return literal_column("search_entries.tsv").op("@@")(tsq)


def _fts_query(phrases: list[str]) -> str:
    # Phrases hold only CJK characters, [0-9a-z] and spaces (server/domain/search.py): no quoting needed.
    return " AND ".join(f'"{p}"' for p in phrases)


def _fts_rowids(kind: str, phrases: list[str]) -> Any:
    table = FTS_TABLES[kind]
    rowids = text(f"SELECT rowid FROM {table} WHERE {table} MATCH :fts").bindparams(fts=_fts_query(phrases))
    return rowids.columns(literal_column("rowid"))


def _first_matches(session: Session, kind: str, phrases: list[str]) -> Any:
    """A subquery: the ids of up to FEW_MATCHES + 1 records of `kind` that hold every phrase."""
    if session.get_bind().dialect.name == "sqlite":
        # Driven from the kind's full-text index (CROSS JOIN fixes the order): without statistics
        # SQLite would otherwise walk every entry of the kind and look each one up in the matches.
        table = FTS_TABLES[kind]
        return (
            text(
                f"SELECT search_entries.record_id FROM {table} CROSS JOIN search_entries "
                f"ON search_entries.id = {table}.rowid WHERE {table} MATCH :fts LIMIT :n"
            )
            .bindparams(fts=_fts_query(phrases), n=FEW_MATCHES + 1)
            .columns(record_id=SearchEntry.record_id.type)
        )
    # The kind written into the SQL, not bound: only then may PostgreSQL use the partial index
    # of that kind (migration 0006) in a prepared statement's generic plan too.
    return (
        select(SearchEntry.record_id)
        .where(SearchEntry.kind == literal(kind, literal_execute=True), _entry_match(session, kind, phrases))
        .limit(FEW_MATCHES + 1)
    )


def _candidates(session: Session, kind: str, phrases: list[str], first: Any) -> Any:
    """What page() counts to choose its plan: on PostgreSQL, entries holding every bigram of the
    phrases (at most FEW_MATCHES + 1), which the GIN index answers without reading the rows, where
    checking that a phrase's bigrams stand side by side means reading every candidate row. At
    least as many as the matches, so a count under FEW_MATCHES still means few matches. On
    SQLite FTS5 answers phrases from its index: the matches themselves."""
    if session.get_bind().dialect.name == "sqlite":
        return first.subquery()
    every_bigram = literal_column("search_entries.tsv").op("@@")(func.plainto_tsquery("simple", " ".join(phrases)))
    return (
        select(literal_column("1"))
        .select_from(SearchEntry)
        .where(SearchEntry.kind == literal(kind, literal_execute=True), every_bigram)
        .limit(FEW_MATCHES + 1)
        .subquery()
    )


def page(
    session: Session,
    query: Select[Any],
    *,
    kind: str,
    id_column: Any,
    text_columns: list[Any],
    q: str,
    keys: list[Any],
    cursor: str | None,
    limit: int,
) -> Page[Any]:
    """The newest-first page of the rows of `query` whose texts (`text_columns`, the texts their
    search entry indexes) contain every term of `q`.

    Neither database can tell how common a word is among the rows a list asks for, and the two
    cases want opposite plans, so the index is asked first (counting at most FEW_MATCHES + 1):
    - a rare word (a firm's name): its few rows are fetched by id and sorted;
    - a common word (融资 is in a tenth of all problems): the list is walked newest first and
      each row is probed against the index; a page takes a few hundred probes.
    Either way the cost stays near a page's worth, where one plan for both is linear in the table.
    """
    phrases, singles = query_plan(q)
    # A lone character is not in the bigram index: scan the indexed texts for it (slower, but rare).
    clauses: list[ColumnElement[bool]] = [
        or_(*(column.contains(char, autoescape=True) for column in text_columns)) for char in singles
    ]
    if phrases:
        first = _first_matches(session, kind, phrases)
        # Counted in the database: the ids themselves are only needed there.
        found = session.scalar(select(func.count()).select_from(_candidates(session, kind, phrases, first))) or 0
        if found <= FEW_MATCHES:
            clauses.append(id_column.in_(first) if found else false())
        else:
            entry = select(SearchEntry.id).where(
                SearchEntry.kind == kind, SearchEntry.record_id == id_column, _entry_match(session, kind, phrases)
            )
            # OFFSET 0 keeps PostgreSQL from turning the probe into a join driven by the index,
            # which its estimate of a phrase's frequency (far too low for common words) would pick.
            clauses.append(entry.offset(0).exists())
    if not clauses:  # nothing searchable in the query (only punctuation): match nothing
        clauses.append(false())
    return paginate(session, query.where(*clauses), keys, cursor=cursor, limit=limit, descending=True)
