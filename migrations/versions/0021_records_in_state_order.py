"""(branch, sync state, id) indexes: the pages' waiting-or-failed lists read a state at a time in id order

Revision ID: 0021_records_in_state_order
Revises: 0020_puppet_changes_index
Create Date: 2026-12-03 09:30:00.000000

"""
from alembic import op

# revision identifiers, used by Alembic.
revision = '0021_records_in_state_order'
down_revision = '0020_puppet_changes_index'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('contacts', schema=None) as batch_op:
        batch_op.create_index('ix_contacts_branch_state_id', ['branch_id', 'sync_state', 'id'], unique=False)
    with op.batch_alter_table('invoices', schema=None) as batch_op:
        batch_op.create_index('ix_invoices_branch_state_id', ['branch_id', 'sync_state', 'id'], unique=False)


def downgrade():
    with op.batch_alter_table('invoices', schema=None) as batch_op:
        batch_op.drop_index('ix_invoices_branch_state_id')
    with op.batch_alter_table('contacts', schema=None) as batch_op:
        batch_op.drop_index('ix_contacts_branch_state_id')
