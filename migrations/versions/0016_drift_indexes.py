"""Partial indexes for the Sage page's drift panel: contacts deleted in Sage, invoices with a Sage note

Revision ID: 0016_drift_indexes
Revises: 0015_sage_user
Create Date: 2026-12-02 17:45:00.000000

"""
import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = '0016_drift_indexes'
down_revision = '0015_sage_user'
branch_labels = None
depends_on = None

DELETED_IN_SAGE_WHERE = sa.text("sync_error LIKE 'Deleted in Sage%'")
SAGE_NOTE_WHERE = sa.text("sage_note IS NOT NULL")


def upgrade():
    with op.batch_alter_table('contacts', schema=None) as batch_op:
        batch_op.create_index('ix_contacts_deleted_in_sage', ['branch_id'], unique=False,
                              sqlite_where=DELETED_IN_SAGE_WHERE, postgresql_where=DELETED_IN_SAGE_WHERE)
    with op.batch_alter_table('invoices', schema=None) as batch_op:
        batch_op.create_index('ix_invoices_sage_note', ['branch_id', 'id'], unique=False,
                              sqlite_where=SAGE_NOTE_WHERE, postgresql_where=SAGE_NOTE_WHERE)


def downgrade():
    with op.batch_alter_table('invoices', schema=None) as batch_op:
        batch_op.drop_index('ix_invoices_sage_note')
    with op.batch_alter_table('contacts', schema=None) as batch_op:
        batch_op.drop_index('ix_contacts_deleted_in_sage')
