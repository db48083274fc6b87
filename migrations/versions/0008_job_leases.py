"""Job leases: a running job renews lease_expires_at; a row whose lease lapsed is dead

Revision ID: 0008_job_leases
Revises: 0007_sage_pacing
Create Date: 2026-12-02 05:40:00.000000

"""
import sqlalchemy as sa
from alembic import op

import portal.models.base

# revision identifiers, used by Alembic.
revision = '0008_job_leases'
down_revision = '0007_sage_pacing'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('lease_expires_at', portal.models.base.UTCDateTime(timezone=True), nullable=True))


def downgrade():
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.drop_column('lease_expires_at')
