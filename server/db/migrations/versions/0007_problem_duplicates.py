"""problem duplicates

A problem can be merged into another problem of the same target as its duplicate:
`duplicate_of_id` points at the survivor, with who merged it and when. A partial index finds a
survivor's duplicates; the summary report's covering index gains `duplicate_of_id`, so that
leaving duplicates out still reads index entries only.

SQLite adds the foreign keys inline (ALTER TABLE … ADD COLUMN … REFERENCES): any other way is a
copy of `problems`, whose DROP fails while foreign keys are enforced and referral problems and
follow-ups point at it.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-27 10:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op


revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None

REPORT_COLUMNS = ['campaign_id', 'category', 'department_id', 'outcome', 'raised_at']
MERGED = sa.text('duplicate_of_id IS NOT NULL')


def upgrade() -> None:
    if op.get_bind().dialect.name == 'sqlite':
        op.execute(
            'ALTER TABLE problems ADD COLUMN duplicate_of_id CHAR(32) '
            'CONSTRAINT fk_problems_duplicate_of_id_problems REFERENCES problems (id)'
        )
        op.execute('ALTER TABLE problems ADD COLUMN merged_at DATETIME')
        op.execute(
            'ALTER TABLE problems ADD COLUMN merged_by_id CHAR(32) '
            'CONSTRAINT fk_problems_merged_by_id_users REFERENCES users (id)'
        )
    else:
        op.add_column('problems', sa.Column('duplicate_of_id', sa.Uuid(), nullable=True))
        op.add_column('problems', sa.Column('merged_at', sa.DateTime(timezone=True), nullable=True))
        op.add_column('problems', sa.Column('merged_by_id', sa.Uuid(), nullable=True))
        op.create_foreign_key(
            op.f('fk_problems_duplicate_of_id_problems'), 'problems', 'problems', ['duplicate_of_id'], ['id']
        )
        op.create_foreign_key(op.f('fk_problems_merged_by_id_users'), 'problems', 'users', ['merged_by_id'], ['id'])
    with op.batch_alter_table('problems', schema=None) as batch_op:
        batch_op.create_index(
            'ix_problems_duplicate_of_id', ['duplicate_of_id'], unique=False,
            sqlite_where=MERGED, postgresql_where=MERGED,
        )
        batch_op.drop_index('ix_problems_report')
        batch_op.create_index('ix_problems_report', [*REPORT_COLUMNS, 'duplicate_of_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('problems', schema=None) as batch_op:
        batch_op.drop_index('ix_problems_report')
        batch_op.create_index('ix_problems_report', REPORT_COLUMNS, unique=False)
        batch_op.drop_index('ix_problems_duplicate_of_id')
    if op.get_bind().dialect.name == 'sqlite':
        for column in ('merged_by_id', 'merged_at', 'duplicate_of_id'):
            op.execute(f'ALTER TABLE problems DROP COLUMN {column}')
        return
    op.drop_constraint(op.f('fk_problems_merged_by_id_users'), 'problems', type_='foreignkey')
    op.drop_constraint(op.f('fk_problems_duplicate_of_id_problems'), 'problems', type_='foreignkey')
    for column in ('merged_by_id', 'merged_at', 'duplicate_of_id'):
        op.drop_column('problems', column)
