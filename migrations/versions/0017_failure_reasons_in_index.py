"""The error at the end of the (branch, state …) indexes: the dashboard's failure reasons from the index alone

Revision ID: 0017_failure_reasons_in_index
Revises: 0016_drift_indexes
Create Date: 2026-12-02 17:50:00.000000

Failure reasons are bounded to 500 characters from now on (SyncedRecordMixin.mark_failed), so
an index entry always fits PostgreSQL's limit; longer ones already stored are cut the same way first.
"""
import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = '0017_failure_reasons_in_index'
down_revision = '0016_drift_indexes'
branch_labels = None
depends_on = None

LAST = {'contacts': 'kind', 'invoices': 'status'}


def upgrade():
    for table, last in LAST.items():
        op.execute(sa.text(f"UPDATE {table} SET sync_error = substr(sync_error, 1, 499) || '…' "
                           "WHERE length(sync_error) > 500"))
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_index(f'ix_{table}_branch_sync')
            batch_op.create_index(f'ix_{table}_branch_sync',
                                  ['branch_id', 'sync_state', 'deleted_at', last, 'sync_error'], unique=False)


def downgrade():
    for table, last in LAST.items():
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_index(f'ix_{table}_branch_sync')
            batch_op.create_index(f'ix_{table}_branch_sync', ['branch_id', 'sync_state', 'deleted_at', last],
                                  unique=False)
