"""Contacts deleted in Sage indexed in id order: the drift panel's list reads that small index
instead of, as SQLite chose while the index was empty, every contact of the branch

Revision ID: 0022_drift_contacts_id_order
Revises: 0021_records_in_state_order
Create Date: 2026-12-03 14:30:00.000000

SQLite keeps no statistics for an empty index, so it judged the (branch, state, id) index of 0021
as good a way to a branch's contacts deleted in Sage as the partial index made for them, and read
all 20,000 contacts of a large branch (20 ms) to find none. With the id in the partial index, the
list's `ORDER BY id` is what only that index gives, and both databases take it.
"""
import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = '0022_drift_contacts_id_order'
down_revision = '0021_records_in_state_order'
branch_labels = None
depends_on = None

DELETED_IN_SAGE_WHERE = sa.text("sync_error LIKE 'Deleted in Sage%'")


def _recreate(columns):
    with op.batch_alter_table('contacts', schema=None) as batch_op:
        batch_op.drop_index('ix_contacts_deleted_in_sage')
        batch_op.create_index('ix_contacts_deleted_in_sage', columns, unique=False,
                              sqlite_where=DELETED_IN_SAGE_WHERE, postgresql_where=DELETED_IN_SAGE_WHERE)


def upgrade():
    _recreate(['branch_id', 'id'])


def downgrade():
    _recreate(['branch_id'])
