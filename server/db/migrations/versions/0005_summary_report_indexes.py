"""summary report indexes

A covering index that lets the summary report count problems by campaign, category,
department and outcome from index entries alone, and an index that finds whether a target
was visited in a campaign with one probe. Measured in docs/benchmarks.md (issue 2).

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-25 16:00:00.000000
"""

from __future__ import annotations

from alembic import op


revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('problems', schema=None) as batch_op:
        batch_op.create_index(
            'ix_problems_report', ['campaign_id', 'category', 'department_id', 'outcome', 'raised_at'], unique=False
        )
    with op.batch_alter_table('visits', schema=None) as batch_op:
        batch_op.create_index(
            'ix_visits_target_campaign_visited_at', ['target_id', 'campaign_id', 'visited_at'], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table('visits', schema=None) as batch_op:
        batch_op.drop_index('ix_visits_target_campaign_visited_at')
    with op.batch_alter_table('problems', schema=None) as batch_op:
        batch_op.drop_index('ix_problems_report')
