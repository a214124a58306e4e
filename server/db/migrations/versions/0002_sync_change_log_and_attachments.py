"""sync, change log and attachments

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25 15:34:26.541512
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op


revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('change_log',
    sa.Column('entity', sa.String(length=24), nullable=False),
    sa.Column('record_id', sa.Uuid(), nullable=False),
    sa.Column('change_no', sa.BigInteger(), nullable=False),
    sa.Column('op', sa.String(length=8), nullable=False),
    sa.Column('scope', sa.String(length=8), nullable=False),
    sa.Column('owner_id', sa.Uuid(), nullable=True),
    sa.Column('target_id', sa.Uuid(), nullable=True),
    sa.Column('changed_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('entity', 'record_id', name=op.f('pk_change_log')),
    sa.UniqueConstraint('change_no', name=op.f('uq_change_log_change_no'))
    )
    with op.batch_alter_table('change_log', schema=None) as batch_op:
        batch_op.create_index('ix_change_log_owner_change_no', ['owner_id', 'change_no'], unique=False)
        batch_op.create_index('ix_change_log_scope_change_no', ['scope', 'change_no'], unique=False)
        batch_op.create_index('ix_change_log_target_change_no', ['target_id', 'change_no'], unique=False)

    op.create_table('sync_counter',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('value', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_sync_counter'))
    )
    op.create_table('attachments',
    sa.Column('sha256', sa.String(length=64), nullable=False),
    sa.Column('size', sa.BigInteger(), nullable=False),
    sa.Column('content_type', sa.String(length=100), nullable=False),
    sa.Column('stored_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('uploaded_by_id', sa.Uuid(), nullable=True),
    sa.ForeignKeyConstraint(['uploaded_by_id'], ['users.id'], name=op.f('fk_attachments_uploaded_by_id_users')),
    sa.PrimaryKeyConstraint('sha256', name=op.f('pk_attachments'))
    )
    op.create_table('uploads',
    sa.Column('id', sa.String(length=32), nullable=False),
    sa.Column('sha256', sa.String(length=64), nullable=True),
    sa.Column('length', sa.BigInteger(), nullable=False),
    sa.Column('offset', sa.BigInteger(), nullable=False),
    sa.Column('filename', sa.String(length=200), nullable=True),
    sa.Column('content_type', sa.String(length=100), nullable=True),
    sa.Column('user_id', sa.Uuid(), nullable=False),
    sa.Column('device_id', sa.Uuid(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('completed_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_uploads_user_id_users')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_uploads'))
    )
    op.create_table('sync_changes',
    sa.Column('device_id', sa.Uuid(), nullable=False),
    sa.Column('seq', sa.BigInteger(), nullable=False),
    sa.Column('user_id', sa.Uuid(), nullable=False),
    sa.Column('kind', sa.String(length=24), nullable=False),
    sa.Column('record_id', sa.Uuid(), nullable=False),
    sa.Column('status', sa.String(length=12), nullable=False),
    sa.Column('result', sa.JSON(), nullable=False),
    sa.Column('payload', sa.JSON(none_as_null=True), nullable=True),
    sa.Column('received_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['device_id'], ['devices.id'], name=op.f('fk_sync_changes_device_id_devices')),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_sync_changes_user_id_users')),
    sa.PrimaryKeyConstraint('device_id', 'seq', name=op.f('pk_sync_changes'))
    )
    with op.batch_alter_table('sync_changes', schema=None) as batch_op:
        batch_op.create_index('ix_sync_changes_status_received', ['status', 'received_at'], unique=False)

    op.create_table('sync_conflicts',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('device_id', sa.Uuid(), nullable=False),
    sa.Column('user_id', sa.Uuid(), nullable=False),
    sa.Column('seq', sa.BigInteger(), nullable=False),
    sa.Column('entity', sa.String(length=24), nullable=False),
    sa.Column('record_id', sa.Uuid(), nullable=False),
    sa.Column('base_version', sa.Integer(), nullable=False),
    sa.Column('server_version', sa.Integer(), nullable=False),
    sa.Column('device_payload', sa.JSON(), nullable=False),
    sa.Column('server_snapshot', sa.JSON(), nullable=False),
    sa.Column('status', sa.String(length=12), nullable=False),
    sa.Column('resolution', sa.String(length=16), nullable=True),
    sa.Column('resolved_by_id', sa.Uuid(), nullable=True),
    sa.Column('resolved_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['device_id'], ['devices.id'], name=op.f('fk_sync_conflicts_device_id_devices')),
    sa.ForeignKeyConstraint(['resolved_by_id'], ['users.id'], name=op.f('fk_sync_conflicts_resolved_by_id_users')),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_sync_conflicts_user_id_users')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_sync_conflicts'))
    )
    with op.batch_alter_table('sync_conflicts', schema=None) as batch_op:
        batch_op.create_index('ix_sync_conflicts_status_created', ['status', 'created_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_sync_conflicts_user_id'), ['user_id'], unique=False)

    op.create_table('visit_attachments',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('visit_id', sa.Uuid(), nullable=False),
    sa.Column('sha256', sa.String(length=64), nullable=False),
    sa.Column('filename', sa.String(length=200), nullable=False),
    sa.Column('content_type', sa.String(length=100), nullable=False),
    sa.Column('size', sa.BigInteger(), nullable=False),
    sa.Column('caption', sa.String(length=500), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['visit_id'], ['visits.id'], name=op.f('fk_visit_attachments_visit_id_visits'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_visit_attachments'))
    )
    with op.batch_alter_table('visit_attachments', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_visit_attachments_sha256'), ['sha256'], unique=False)
        batch_op.create_index(batch_op.f('ix_visit_attachments_visit_id'), ['visit_id'], unique=False)

    with op.batch_alter_table('devices', schema=None) as batch_op:
        batch_op.add_column(sa.Column('last_seq', sa.BigInteger(), nullable=False, server_default='0'))
        batch_op.add_column(sa.Column('queue_depth', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('protocol_version', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('last_push_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('last_pull_at', sa.DateTime(timezone=True), nullable=True))

    op.execute("INSERT INTO sync_counter (id, value) VALUES (1, 0)")
    _number_existing_records()


# entity, table, scope, owner column, target column: as server/services/changes.py records them.
EXISTING = [
    ("department", "departments", "'all'", "NULL", "NULL"),
    ("campaign", "campaigns", "'all'", "NULL", "NULL"),
    ("target", "targets", "'all'", "NULL", "id"),
    ("portfolio_entry", "portfolio_entries", "'owner'", "user_id", "target_id"),
    ("visit", "visits", "'target'", "cadre_id", "target_id"),
    ("problem", "problems", "'target'", "cadre_id", "target_id"),
]


def _number_existing_records() -> None:
    """Give every record that exists before sync a change number, so a first pull sees it."""
    for entity, table, scope, owner, target in EXISTING:
        op.execute(
            "INSERT INTO change_log (entity, record_id, change_no, op, scope, owner_id, target_id, changed_at) "
            f"SELECT '{entity}', id, (SELECT value FROM sync_counter WHERE id = 1) + row_number() OVER (ORDER BY id), "
            f"'upsert', {scope}, {owner}, {target}, CURRENT_TIMESTAMP FROM {table}"
        )
        op.execute(f"UPDATE sync_counter SET value = (SELECT coalesce(max(change_no), 0) FROM change_log) WHERE id = 1")



def downgrade() -> None:
    with op.batch_alter_table('devices', schema=None) as batch_op:
        batch_op.drop_column('last_pull_at')
        batch_op.drop_column('last_push_at')
        batch_op.drop_column('protocol_version')
        batch_op.drop_column('queue_depth')
        batch_op.drop_column('last_seq')

    with op.batch_alter_table('visit_attachments', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_visit_attachments_visit_id'))
        batch_op.drop_index(batch_op.f('ix_visit_attachments_sha256'))

    op.drop_table('visit_attachments')
    with op.batch_alter_table('sync_conflicts', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_sync_conflicts_user_id'))
        batch_op.drop_index('ix_sync_conflicts_status_created')

    op.drop_table('sync_conflicts')
    with op.batch_alter_table('sync_changes', schema=None) as batch_op:
        batch_op.drop_index('ix_sync_changes_status_received')

    op.drop_table('sync_changes')
    op.drop_table('uploads')
    op.drop_table('attachments')
    op.drop_table('sync_counter')
    with op.batch_alter_table('change_log', schema=None) as batch_op:
        batch_op.drop_index('ix_change_log_target_change_no')
        batch_op.drop_index('ix_change_log_scope_change_no')
        batch_op.drop_index('ix_change_log_owner_change_no')

    op.drop_table('change_log')
