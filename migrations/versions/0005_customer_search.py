"""Support console search text: one narrow row per business, backfilled from the source tables

Revision ID: 0005_customer_search
Revises: 0004_checklist_runs
Create Date: 2026-11-25 14:10:40.343544

"""
from collections import defaultdict

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = '0005_customer_search'
down_revision = '0004_checklist_runs'
branch_labels = None
depends_on = None


def upgrade():
    customer_search = op.create_table('customer_search',
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('business_id', sa.Integer(), autoincrement=False, nullable=False),
    sa.Column('haystack', sa.Text(), nullable=False),
    sa.ForeignKeyConstraint(['business_id'], ['businesses.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('name', 'business_id'),
    sqlite_with_rowid=False
    )
    with op.batch_alter_table('customer_search', schema=None) as batch_op:
        batch_op.create_index('ix_customer_search_business_id', ['business_id'], unique=True)

    _backfill(op.get_bind(), customer_search)


def _backfill(conn, customer_search):
    """The same rows as portal.models.customer_search.rebuild_all, as of this revision."""
    texts = defaultdict(list)
    for business_id, name in conn.execute(sa.text("SELECT business_id, name FROM branches")):
        texts[business_id].append(name)
    for business_id, email in conn.execute(sa.text(
            "SELECT business_id, email FROM users WHERE role = 'customer' AND business_id IS NOT NULL")):
        texts[business_id].append(email)
    for business_id, sage_name, sage_one_name in conn.execute(sa.text(
            "SELECT b.business_id, c.sage_business_name, c.sage_one_company_name "
            "FROM connections c JOIN branches b ON b.id = c.branch_id")):
        texts[business_id].extend(n for n in (sage_name, sage_one_name) if n)
    rows = [
        {"business_id": business_id, "name": name, "haystack": "\n".join(dict.fromkeys(t.lower() for t in [name, *texts[business_id]]))}
        for business_id, name in conn.execute(sa.text("SELECT id, name FROM businesses"))
    ]
    for start in range(0, len(rows), 1000):
        conn.execute(customer_search.insert(), rows[start:start + 1000])


def downgrade():
    with op.batch_alter_table('customer_search', schema=None) as batch_op:
        batch_op.drop_index('ix_customer_search_business_id')

    op.drop_table('customer_search')
