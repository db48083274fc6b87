"""Drift: what Sage showed about an invoice outside the portal; when each branch last looked

Revision ID: 0012_drift
Revises: 0011_notifications
Create Date: 2026-12-02 06:50:00.000000

"""
import sqlalchemy as sa
from alembic import op

import portal.models.base

# revision identifiers, used by Alembic.
revision = '0012_drift'
down_revision = '0011_notifications'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('invoices', schema=None) as batch_op:
        batch_op.add_column(sa.Column('sage_note', sa.Text(), nullable=True))
    with op.batch_alter_table('connections', schema=None) as batch_op:
        batch_op.add_column(sa.Column('drift_checked_at', portal.models.base.UTCDateTime(timezone=True), nullable=True))


def downgrade():
    with op.batch_alter_table('connections', schema=None) as batch_op:
        batch_op.drop_column('drift_checked_at')
    with op.batch_alter_table('invoices', schema=None) as batch_op:
        batch_op.drop_column('sage_note')
