"""A partial (business, occurred) index of events made in puppet sessions: the dashboard's changes by support

Revision ID: 0020_puppet_changes_index
Revises: 0019_record_tallies
Create Date: 2026-12-03 09:00:00.000000

"""
import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = '0020_puppet_changes_index'
down_revision = '0019_record_tallies'
branch_labels = None
depends_on = None

IN_PUPPET_SESSION = sa.text("puppet_session_id IS NOT NULL")


def upgrade():
    with op.batch_alter_table('audit_events', schema=None) as batch_op:
        batch_op.create_index('ix_audit_business_puppet_time', ['business_id', 'occurred_at'], unique=False,
                              sqlite_where=IN_PUPPET_SESSION, postgresql_where=IN_PUPPET_SESSION)


def downgrade():
    with op.batch_alter_table('audit_events', schema=None) as batch_op:
        batch_op.drop_index('ix_audit_business_puppet_time')
