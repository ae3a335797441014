"""add accounts.note (ALTER TABLE: waits for every open transaction that touched accounts)

Revision ID: l0000002
Revises: l0000001
"""
import sqlalchemy as sa
from alembic import op

revision = "l0000002"
down_revision = "l0000001"
branch_labels = None
depends_on = None


def upgrade():
    op.add_column("accounts", sa.Column("note", sa.Text))


def downgrade():
    op.drop_column("accounts", "note")
