"""search index per kind (PostgreSQL)

One partial GIN index per kind of record instead of one over all entries: a search for visits
no longer reads the entries of the problems that hold the word (用工 is in 18,000 problems and
in no visit summary), and each insert still updates one index. SQLite is unchanged: its FTS5
table cannot be split by a column. Measured in docs/benchmarks.md (issue 2).

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-25 16:50:00.000000
"""

from __future__ import annotations

from alembic import op


revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None

KINDS = ('visit', 'problem')


def upgrade() -> None:
    if op.get_bind().dialect.name != 'postgresql':
        return
    for kind in KINDS:
        op.execute(f"CREATE INDEX ix_search_entries_{kind}_tsv ON search_entries USING gin (tsv) WHERE kind = '{kind}'")
    op.execute('DROP INDEX ix_search_entries_tsv')


def downgrade() -> None:
    if op.get_bind().dialect.name != 'postgresql':
        return
    op.execute('CREATE INDEX ix_search_entries_tsv ON search_entries USING gin (tsv)')
    for kind in KINDS:
        op.execute(f'DROP INDEX ix_search_entries_{kind}_tsv')
