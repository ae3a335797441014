"""users full name required

A NOT NULL over a column that has null rows: fails on the copy's real rows (tests/test_rehearse_copy.py).

Revision ID: c1a0000000a1
Revises: f7a8b9c0d1e2
"""
from alembic import op
import sqlalchemy as sa

revision = "c1a0000000a1"
down_revision = "f7a8b9c0d1e2"
branch_labels = None
depends_on = None


def upgrade():
    op.alter_column("users", "full_name", existing_type=sa.String(200), nullable=False)


def downgrade():
    op.alter_column("users", "full_name", existing_type=sa.String(200), nullable=True)
