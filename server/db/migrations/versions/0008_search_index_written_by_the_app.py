"""search index written by the app (SQLite)

SQLite's FTS5 table no longer learns of new search entries from an AFTER INSERT trigger: the
services index what they insert themselves (server/services/search.py: `add_entries` for a bulk
INSERT, a mapper event for an ORM insert). Inside a trigger each row's FTS5 insert runs in a
statement transaction of its own, and FTS5 writes out what it holds in memory at every one, so
indexing a pushed note cost twice what the same rows cost through one prepared statement
(docs/benchmarks.md, issue 3). The UPDATE and DELETE triggers stay: they hand FTS5 the old
tokens, which only the row still holds. PostgreSQL is unchanged (a generated tsvector column).

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-26 09:00:00.000000
"""

from __future__ import annotations

from alembic import op


revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name == 'sqlite':
        op.execute('DROP TRIGGER search_entries_ai')


def downgrade() -> None:
    if op.get_bind().dialect.name == 'sqlite':
        op.execute(
            'CREATE TRIGGER search_entries_ai AFTER INSERT ON search_entries BEGIN '
            'INSERT INTO search_fts(rowid, tokens) VALUES (new.id, new.tokens); END'
        )
