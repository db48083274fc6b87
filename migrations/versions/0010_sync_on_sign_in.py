"""Sage One AUS: send what is waiting when the credentials' owner signs in

Revision ID: 0010_sync_on_sign_in
Revises: 0009_sync_schedules
Create Date: 2026-12-02 06:10:00.000000

"""
import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = '0010_sync_on_sign_in'
down_revision = '0009_sync_schedules'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('connections', schema=None) as batch_op:
        batch_op.add_column(sa.Column('sync_on_sign_in', sa.Boolean(), server_default=sa.false(), nullable=False))


def downgrade():
    with op.batch_alter_table('connections', schema=None) as batch_op:
        batch_op.drop_column('sync_on_sign_in')
