"""bins fill level unique

A unique index over duplicate values: fails on the copy's real rows (tests/test_rehearse_copy.py).

Revision ID: c1a0000000b2
Revises: f7a8b9c0d1e2
"""
from alembic import op
import sqlalchemy as sa

revision = "c1a0000000b2"
down_revision = "f7a8b9c0d1e2"
branch_labels = None
depends_on = None


def upgrade():
    op.create_index("uq_bins_fill_level", "bins", ["fill_level"], unique=True)


def downgrade():
    op.drop_index("uq_bins_fill_level", table_name="bins")
