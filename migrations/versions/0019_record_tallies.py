"""Record tallies: each branch's counts of contacts and invoices per sync state, and of failure reasons, kept by triggers

Revision ID: 0019_record_tallies
Revises: 0018_latest_failed_jobs_index
Create Date: 2026-12-03 08:00:00.000000

"""
import sqlalchemy as sa
from alembic import op

from portal.models.tallies import backfill_sql, drop_ddl, trigger_ddl

# revision identifiers, used by Alembic.
revision = '0019_record_tallies'
down_revision = '0018_latest_failed_jobs_index'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        'record_tallies',
        sa.Column('branch_id', sa.Integer(), nullable=False),
        sa.Column('record', sa.String(length=10), nullable=False),
        sa.Column('category', sa.String(length=20), nullable=False),
        sa.Column('sync_state', sa.String(length=20), nullable=False),
        sa.Column('deleted', sa.Boolean(), nullable=False),
        sa.Column('in_sage', sa.Boolean(), nullable=False),
        sa.Column('n', sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint('branch_id', 'record', 'category', 'sync_state', 'deleted', 'in_sage'),
    )
    op.create_table(
        'failure_tallies',
        sa.Column('branch_id', sa.Integer(), nullable=False),
        sa.Column('record', sa.String(length=10), nullable=False),
        sa.Column('category', sa.String(length=20), nullable=False),
        sa.Column('reason', sa.Text(), nullable=False),
        sa.Column('n', sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint('branch_id', 'record', 'category', 'reason'),
    )
    dialect = op.get_bind().dialect.name
    for statement in trigger_ddl(dialect) + backfill_sql():
        op.execute(statement)


def downgrade():
    for statement in drop_ddl(op.get_bind().dialect.name):
        op.execute(statement)
    op.drop_table('failure_tallies')
    op.drop_table('record_tallies')
