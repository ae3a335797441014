"""create accounts

Revision ID: l0000001
Revises:
"""
import sqlalchemy as sa
from alembic import op

revision = "l0000001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade():
    op.create_table("accounts", sa.Column("id", sa.Integer, primary_key=True), sa.Column("name", sa.Text))
    op.execute("insert into accounts (name) select 'a' || g from generate_series(1, 100) g")


def downgrade():
    op.drop_table("accounts")
