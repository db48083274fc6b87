"""Scheduled syncs: how often a branch syncs by itself, when the schedule last ran and what it did

Revision ID: 0009_sync_schedules
Revises: 0008_job_leases
Create Date: 2026-12-02 06:00:00.000000

"""
import sqlalchemy as sa
from alembic import op

import portal.models.base

# revision identifiers, used by Alembic.
revision = '0009_sync_schedules'
down_revision = '0008_job_leases'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('connections', schema=None) as batch_op:
        batch_op.add_column(sa.Column('sync_every', sa.String(length=10), server_default='15m', nullable=False))
        batch_op.add_column(sa.Column('last_scheduled_at', portal.models.base.UTCDateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('schedule_note', sa.Text(), nullable=True))


def downgrade():
    with op.batch_alter_table('connections', schema=None) as batch_op:
        batch_op.drop_column('schedule_note')
        batch_op.drop_column('last_scheduled_at')
        batch_op.drop_column('sync_every')
