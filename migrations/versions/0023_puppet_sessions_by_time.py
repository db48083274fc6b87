"""A business's puppet sessions indexed by start time: the dashboard's support access log reads its
latest ten instead of sorting every session the business ever had

Revision ID: 0023_puppet_sessions_by_time
Revises: 0022_drift_contacts_id_order
Create Date: 2026-12-03 15:00:00.000000

The (business, started) index also serves every lookup by business alone, so it replaces the
business index.
"""
from alembic import op

# revision identifiers, used by Alembic.
revision = '0023_puppet_sessions_by_time'
down_revision = '0022_drift_contacts_id_order'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('puppet_sessions', schema=None) as batch_op:
        batch_op.create_index('ix_puppet_sessions_business_started', ['business_id', 'started_at'], unique=False)
        batch_op.drop_index('ix_puppet_sessions_business_id')


def downgrade():
    with op.batch_alter_table('puppet_sessions', schema=None) as batch_op:
        batch_op.create_index('ix_puppet_sessions_business_id', ['business_id'], unique=False)
        batch_op.drop_index('ix_puppet_sessions_business_started')
