"""search index per kind (SQLite)

What migration 0006 did for PostgreSQL, for SQLite: one FTS5 table per kind of record,
`search_fts_visit` and `search_fts_problem`, each indexing the entries of its kind through a view
of `search_entries` (its external content). A search for visits no longer reads, joins and drops
the entries of the problems that hold the word: 用工 is in 18,500 problems and in no visit
summary, and counting its visit matches walked all 18,500 (25 ms of a visit search's 40). The
app writes new entries into the table of their kind (server/services/search.py); the UPDATE and
DELETE triggers hand each table the old tokens of its own kind.

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-26 10:00:00.000000
"""

from __future__ import annotations

from alembic import op


revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None

KINDS = ('visit', 'problem')


def _triggers(kind: str) -> list[str]:
    table = f'search_fts_{kind}'
    delete = f"INSERT INTO {table}({table}, rowid, tokens) VALUES ('delete', old.id, old.tokens);"
    return [
        f"CREATE TRIGGER search_entries_ad_{kind} AFTER DELETE ON search_entries "
        f"WHEN old.kind = '{kind}' BEGIN {delete} END",
        f"CREATE TRIGGER search_entries_au_{kind} AFTER UPDATE ON search_entries "
        f"WHEN old.kind = '{kind}' BEGIN {delete} "
        f"INSERT INTO {table}(rowid, tokens) VALUES (new.id, new.tokens); END",
    ]


def upgrade() -> None:
    if op.get_bind().dialect.name != 'sqlite':
        return
    op.execute('DROP TRIGGER search_entries_au')
    op.execute('DROP TRIGGER search_entries_ad')
    op.execute('DROP TABLE search_fts')
    for kind in KINDS:
        table = f'search_fts_{kind}'
        op.execute(f"CREATE VIEW search_entries_{kind} AS SELECT id, tokens FROM search_entries WHERE kind = '{kind}'")
        op.execute(
            f"CREATE VIRTUAL TABLE {table} USING fts5("
            f"tokens, content='search_entries_{kind}', content_rowid='id', tokenize='unicode61')"
        )
        op.execute(f"INSERT INTO {table}({table}) VALUES ('rebuild')")
        for statement in _triggers(kind):
            op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name != 'sqlite':
        return
    for kind in KINDS:
        op.execute(f'DROP TRIGGER search_entries_au_{kind}')
        op.execute(f'DROP TRIGGER search_entries_ad_{kind}')
        op.execute(f'DROP TABLE search_fts_{kind}')
        op.execute(f'DROP VIEW search_entries_{kind}')
    op.execute(
        "CREATE VIRTUAL TABLE search_fts USING fts5("
        "tokens, content='search_entries', content_rowid='id', tokenize='unicode61')"
    )
    op.execute("INSERT INTO search_fts(search_fts) VALUES ('rebuild')")
    op.execute(
        "CREATE TRIGGER search_entries_ad AFTER DELETE ON search_entries BEGIN "
        "INSERT INTO search_fts(search_fts, rowid, tokens) VALUES ('delete', old.id, old.tokens); END"
    )
    op.execute(
        "CREATE TRIGGER search_entries_au AFTER UPDATE ON search_entries BEGIN "
        "INSERT INTO search_fts(search_fts, rowid, tokens) VALUES ('delete', old.id, old.tokens); "
        "INSERT INTO search_fts(rowid, tokens) VALUES (new.id, new.tokens); END"
    )
