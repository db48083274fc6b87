"""A (branch, status, created) index on jobs: a branch's latest failed jobs without every failed job there is

Revision ID: 0018_latest_failed_jobs_index
Revises: 0017_failure_reasons_in_index
Create Date: 2026-12-02 18:00:00.000000

"""
from alembic import op

# revision identifiers, used by Alembic.
revision = '0018_latest_failed_jobs_index'
down_revision = '0017_failure_reasons_in_index'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.create_index('ix_jobs_branch_status_created', ['branch_id', 'status', 'created_at'], unique=False)


def downgrade():
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.drop_index('ix_jobs_branch_status_created')
