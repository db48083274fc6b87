"""Sage pacing: why a mapping was chosen by default; paused jobs that resume as another RQ job

Revision ID: 0007_sage_pacing
Revises: 0006_password_resets_2fa
Create Date: 2026-12-02 05:30:00.000000

"""
import sqlalchemy as sa
from alembic import op

import portal.models.base

# revision identifiers, used by Alembic.
revision = '0007_sage_pacing'
down_revision = '0006_password_resets_2fa'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('sage_account_mappings', schema=None) as batch_op:
        batch_op.add_column(sa.Column('default_reason', sa.Text(), nullable=True))
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('rq_job_id', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('resume_at', portal.models.base.UTCDateTime(timezone=True), nullable=True))


def downgrade():
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.drop_column('resume_at')
        batch_op.drop_column('rq_job_id')
    with op.batch_alter_table('sage_account_mappings', schema=None) as batch_op:
        batch_op.drop_column('default_reason')
