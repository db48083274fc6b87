"""Indexes for the branch pages: counts per sync state from the index alone; voidable invoices in order

Revision ID: 0013_page_indexes
Revises: 0012_drift
Create Date: 2026-12-02 17:05:00.000000

"""
from alembic import op

# revision identifiers, used by Alembic.
revision = '0013_page_indexes'
down_revision = '0012_drift'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('contacts', schema=None) as batch_op:
        batch_op.drop_index('ix_contacts_branch_sync')
        batch_op.create_index('ix_contacts_branch_sync', ['branch_id', 'sync_state', 'deleted_at', 'kind'],
                              unique=False)
    with op.batch_alter_table('invoices', schema=None) as batch_op:
        batch_op.drop_index('ix_invoices_branch_sync')
        batch_op.create_index('ix_invoices_branch_sync', ['branch_id', 'sync_state', 'deleted_at', 'status'],
                              unique=False)
        batch_op.create_index('ix_invoices_branch_issued', ['branch_id', 'issued_on', 'id'], unique=False)


def downgrade():
    with op.batch_alter_table('invoices', schema=None) as batch_op:
        batch_op.drop_index('ix_invoices_branch_issued')
        batch_op.drop_index('ix_invoices_branch_sync')
        batch_op.create_index('ix_invoices_branch_sync', ['branch_id', 'sync_state'], unique=False)
    with op.batch_alter_table('contacts', schema=None) as batch_op:
        batch_op.drop_index('ix_contacts_branch_sync')
        batch_op.create_index('ix_contacts_branch_sync', ['branch_id', 'sync_state'], unique=False)
