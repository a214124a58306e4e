"""Full-text search over visit summaries and problem descriptions (CJK bigrams, both databases)."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import ColumnElement, and_, delete, false, func, literal_column, select, text
from sqlalchemy.orm import Session

from server.db.models import SearchEntry
from server.domain.search import index_tokens, query_plan


def index(session: Session, kind: str, record_id: uuid.UUID, *texts: str | None) -> None:
    """Create or refresh the search entry of one record."""
    tokens = index_tokens(*texts)
    entry = session.scalar(select(SearchEntry).where(SearchEntry.kind == kind, SearchEntry.record_id == record_id))
    if entry is None:
        session.add(SearchEntry(kind=kind, record_id=record_id, tokens=tokens))
    elif entry.tokens != tokens:
        entry.tokens = tokens


def unindex(session: Session, kind: str, record_ids: list[uuid.UUID]) -> None:
    if record_ids:
        session.execute(delete(SearchEntry).where(SearchEntry.kind == kind, SearchEntry.record_id.in_(record_ids)))


def matches(session: Session, kind: str, id_column: Any, query: str, text_column: Any) -> ColumnElement[bool]:
    """A WHERE clause: the row's text contains every term of `query`."""
    phrases, singles = query_plan(query)
    clauses: list[ColumnElement[bool]] = []
    if phrases:
        if session.get_bind().dialect.name == "sqlite":
            fts = " AND ".join(f'"{p}"' for p in phrases)
            rowids = text("SELECT rowid FROM search_fts WHERE search_fts MATCH :fts").bindparams(fts=fts)
            entry_match: ColumnElement[bool] = SearchEntry.id.in_(rowids.columns(literal_column("rowid")))
        else:
            tsq: Any = func.phraseto_tsquery("simple", phrases[0])
            for p in phrases[1:]:
                tsq = tsq.op("&&")(func.phraseto_tsquery("simple", p))
            entry_match = literal_column("search_entries.tsv").op("@@")(tsq)
        sub = select(SearchEntry.record_id).where(SearchEntry.kind == kind, entry_match)
        clauses.append(id_column.in_(sub))
    # A lone character is not in the bigram index: scan for it (slower, but rare).
    clauses.extend(text_column.contains(char, autoescape=True) for char in singles)
    if not clauses:  # nothing searchable in the query (only punctuation): match nothing
        return false()
    return and_(*clauses)
