"""The Sage user a branch signed in as (shown on its card and page)

Revision ID: 0015_sage_user
Revises: 0014_latest_jobs_index
Create Date: 2026-12-02 17:30:00.000000

"""
import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = '0015_sage_user'
down_revision = '0014_latest_jobs_index'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('connections', schema=None) as batch_op:
        batch_op.add_column(sa.Column('sage_user', sa.String(length=254), nullable=True))


def downgrade():
    with op.batch_alter_table('connections', schema=None) as batch_op:
        batch_op.drop_column('sage_user')
