"""Indexes for the pages' latest jobs of any kind (newest first) and the count of voidable invoices

Revision ID: 0014_latest_jobs_index
Revises: 0013_page_indexes
Create Date: 2026-12-02 17:15:00.000000

"""
from alembic import op

# revision identifiers, used by Alembic.
revision = '0014_latest_jobs_index'
down_revision = '0013_page_indexes'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.create_index('ix_jobs_branch_created', ['branch_id', 'created_at'], unique=False)
    with op.batch_alter_table('invoices', schema=None) as batch_op:
        batch_op.create_index('ix_invoices_branch_voidable', ['branch_id', 'status', 'sage_id'], unique=False)


def downgrade():
    with op.batch_alter_table('invoices', schema=None) as batch_op:
        batch_op.drop_index('ix_invoices_branch_voidable')
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.drop_index('ix_jobs_branch_created')
